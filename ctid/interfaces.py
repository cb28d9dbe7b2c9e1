"""The seams between ctid's domain and the outside world (zope.interface).

The domain (``ctid``) depends only on these; ``ctid.adapters`` implements them.
Every method returning a Deferred says what it fires with; all of them fail
with :class:`PBXError` (or a subclass) when the switch refuses, times out or
the link is down.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class PBXError(Exception):
    """The switch refused an action, did not answer in time, or is unreachable."""


class IPBX(Interface):
    """Call control on a telephone switch (Asterisk over AMI, or the simulator)."""

    connected = Attribute("True while the switch link is up and logged in.")

    def originate(channel, context=None, exten=None, priority=1, application=None, data=None,
                  caller_id=None, timeout=30.0, variables=None, channel_id=None):
        """Place a call from ``channel`` to a dialplan target or an application.

        Always asynchronous on the switch.  Fires with the ``Uniqueid`` the
        new channel will have (``channel_id`` when given) once the switch has
        queued it; the outcome arrives later as call-model events.
        """

    def redirect(channel, context, exten, priority=1, extra_channel=None, extra_context=None, extra_exten=None):
        """Send ``channel`` (and ``extra_channel`` with it) to ``exten@context``.  Fires with None.

        ``extra_context``/``extra_exten`` send ``extra_channel`` elsewhere
        (priority 1) in the same action.
        """

    def hangup(channel, cause=None):
        """Hang up ``channel`` with an optional Q.850 ``cause``.  Fires with None."""

    def blind_transfer(channel, exten, context):
        """Blind-transfer the party bridged with ``channel`` to ``exten@context``.  Fires with None."""

    def attended_transfer(channel, exten, context):
        """Start an attended transfer from ``channel`` (the transferer) to ``exten@context``.  Fires with None."""

    def bridge(channel1, channel2):
        """Bridge two existing channels together.  Fires with None."""

    def kick_from_conference(conference, channel):
        """Remove ``channel`` (a channel name, or ``all``) from the ConfBridge ``conference``.  Fires with None."""

    def start_recording(channel, filename, options=""):
        """Start MixMonitor on ``channel`` into ``filename``.  Fires with the MixMonitor id (may be None)."""

    def stop_recording(channel, mixmonitor_id=None):
        """Stop MixMonitor on ``channel``.  Fires with None."""

    def mute_recording(channel, muted, direction="both"):
        """Mute (or unmute) the recording of ``channel`` in ``direction``.  Fires with None."""

    def spy(spier_channel, target_uniqueid, mode, caller_id=None):
        """Originate ``spier_channel`` into ChanSpy on the channel ``target_uniqueid``.

        ``mode`` is ``"listen"``, ``"whisper"`` or ``"barge"``.  Fires with the
        Uniqueid of the supervisor's new channel.
        """

    def spy_mode(spier_channel, mode):
        """Switch the ChanSpy running on ``spier_channel`` (started by :meth:`spy`) to ``mode``.

        As if the supervisor keyed 4 (listen), 5 (whisper) or 6 (barge): ChanSpy
        option ``d``, AMI ``PlayDTMF`` with ``Receive``.  Fires with None.
        """

    def answer(channel):
        """Ask the phone ringing on ``channel`` to answer (SIP NOTIFY ``Event: talk``).  Fires with None.

        Only phones set up for remote answer (auto-answer) obey; the outcome
        arrives as call-model events.
        """

    def send_dtmf(channel, digits, duration_ms=None):
        """Play ``digits`` to ``channel``.  Fires with None."""

    def set_variable(channel, name, value):
        """Set a channel variable (``channel`` None sets a global).  Fires with None."""

    def get_variable(channel, name):
        """Fires with the variable's value, or None when unset."""


class IDirectory(Interface):
    """Checks credentials and describes agents, supervisors, admins and leaders.

    Every method returns a Deferred; it fails with :class:`ctid.directory.DirectoryError`
    when the directory cannot be reached or does not answer in time.
    """

    def authenticate(agent_id, password):
        """Fires with the :class:`ctid.directory.Identity` of ``agent_id`` when ``password`` is right.

        Fails with ``AuthenticationError("bad_credentials")`` for an unknown
        id or a wrong password alike (same message, similar time), and with
        ``AuthenticationError("disabled")`` for a disabled account given its
        right password.
        """

    def lookup(agent_id):
        """Fires with the :class:`ctid.directory.Identity` of ``agent_id`` (enabled or not), or None when unknown."""


class IDirectoryAdmin(Interface):
    """Changes to a directory ctid itself administers (the database one; not LDAP)."""

    def add_skill_group(name, description=""):
        """Create (or re-describe) a skill group.  Fires with None."""

    def add_agent(agent_id, name, password=None, roles=("agent",), skills=None, city=None, manages=(),
                  enabled=True, replace=False):
        """Create an agent (replace an existing one when ``replace``).  Fires with None.

        Fails with ValueError for an unknown role or skill group, a level
        outside 1..9, or an existing ``agent_id`` without ``replace``.
        """

    def set_password(agent_id, password):
        """Store a new salted hash of ``password``.  Fires with None; LookupError for an unknown agent."""

    def set_enabled(agent_id, enabled):
        """Enable or disable an account.  Fires with None; LookupError for an unknown agent."""


class ICustomerDirectory(Interface):
    """Finds the calling customer for the screen pop (AG-2): profile, masked accounts, recent contacts.

    Every method returns a Deferred; it fails with
    :class:`ctid.customers.CustomerDirectoryError` when the directory cannot be
    reached.  The call path must not wait on it unbounded: the screen pop
    applies a timeout (``d.addTimeout(seconds, reactor)``) and pops the call
    without a profile when the lookup is late, failed or found no one.
    """

    def lookup(caller=None, account_last4=None, customer_id=None, account_number=None):
        """Fires with the :class:`ctid.customers.CustomerProfile` of the calling customer, or None.

        Tried in this order, the first that identifies one customer wins:
        ``customer_id`` (identified by the IVR), ``account_number`` (the full
        card or account number keyed in the IVR: matched through a keyed hash,
        never stored or logged), ``caller`` (the caller's number, normalised to
        the national form).  ``account_last4`` narrows the customers sharing
        the caller's number; on its own it identifies no one.  A number shared
        by several customers and not narrowed to one fires None, as does
        malformed input.  The profile carries the customer's recent contacts.
        """

    def recent_contacts(customer_id, limit=5):
        """Fires with a list of the customer's last ``limit`` :class:`ctid.customers.Contact`, newest first.

        An unknown customer has none (an empty list).
        """
