"""The AMI actions as methods: ``login``, ``originate``, ``redirect``, ….

:class:`AMIActions` is a mixin of :class:`ctid.protocols.ami.AMIProtocol`.
Each method only turns its arguments into headers (leaving out the ones that
are None), hands them to the protocol's ``sendAction`` (``_send`` for an
Originate that waits for its ``OriginateResponse``) and picks the part of the
:class:`~ctid.protocols.ami.ActionResult` the caller wants.  Correlation,
timeouts and the keepalive stay in :mod:`ctid.protocols.ami`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from .amiwire import Message

if TYPE_CHECKING:
    from .ami import ActionResult, Headers

__all__ = ["AMIActions"]

_response = attrgetter("response")
_events = attrgetter("events")


def _present(*pairs: tuple[str, object]) -> list[tuple[str, object]]:
    """Header pairs without the ones whose value is None."""
    return [(key, value) for key, value in pairs if value is not None]


class AMIActions:
    """Starpy-style helpers for the common actions, mixed into the AMI protocol.

    The class using it provides ``sendAction``, ``action_timeout`` and the
    hooks declared below (``_logged_in`` runs once Login succeeded).
    """

    if TYPE_CHECKING:
        action_timeout: float

        def sendAction(self, action: str, headers: Headers = (),
                       timeout: float | None = None) -> Deferred[ActionResult]: ...

        def _send(self, action: str, headers: Headers, timeout: float | None,
                  until_originate: bool) -> Deferred[Any]: ...

        def _logged_in(self) -> None: ...

        def _stop_keepalive(self) -> None: ...

    # -- session ---------------------------------------------------------------

    def login(self, username: str, secret: str, md5: bool = True, events: str | None = "on") -> Deferred[Message]:
        """Log in (MD5 challenge by default); fires with the Login response.

        Starts the keepalive ping on success.  ``events`` is the Login
        ``Events`` mask (``on``, ``off`` or a class list; None omits it).
        """
        return Deferred.fromCoroutine(self._login(username, secret, md5, events))

    async def _login(self, username: str, secret: str, md5: bool, events: str | None) -> Message:
        headers: list[tuple[str, object]] = [("Username", username)]
        if md5:
            challenge = await self.sendAction("Challenge", [("AuthType", "MD5")])
            text = (challenge.response.get("Challenge") or "") + secret
            headers += [("AuthType", "MD5"), ("Key", hashlib.md5(text.encode(), usedforsecurity=False).hexdigest())]
        else:
            headers.append(("Secret", secret))
        headers += _present(("Events", events))
        result = await self.sendAction("Login", headers)
        self._logged_in()
        return result.response

    def logoff(self) -> Deferred[Message]:
        """Say goodbye; Asterisk then closes the connection."""
        self._stop_keepalive()
        return self.sendAction("Logoff").addCallback(_response)

    def ping(self) -> Deferred[Message]:
        """Ping; fires with the response (``Ping: Pong``, ``Timestamp``)."""
        return self.sendAction("Ping").addCallback(_response)

    def events(self, mask: str) -> Deferred[Message]:
        """Set the session event mask (``on``, ``off`` or a class list).

        With ``broken_events_action=yes`` Asterisk never answers mask ``on``;
        the Deferred then fails with :class:`~ctid.protocols.ami.ActionTimeout`.
        """
        return self.sendAction("Events", [("EventMask", mask)]).addCallback(_response)

    def action(self, name: str, **headers: object) -> Deferred[ActionResult]:
        """Any action by name; None-valued headers are left out."""
        return self.sendAction(name, _present(*headers.items()))

    # -- queries -----------------------------------------------------------------

    def command(self, cmd: str) -> Deferred[list[str]]:
        """Run a CLI command; fires with its output lines (14+ ``Output:`` or legacy body)."""
        return self.sendAction("Command", [("Command", cmd)]).addCallback(
            lambda r: r.response.getall("Output") or list(r.response.body))

    def coreShowChannels(self) -> Deferred[list[Message]]:
        """Every active channel, as ``CoreShowChannel`` events."""
        return self.sendAction("CoreShowChannels").addCallback(_events)

    def bridgeList(self, bridge_type: str | None = None) -> Deferred[list[Message]]:
        """Every bridge, as ``BridgeListItem`` events."""
        return self.sendAction("BridgeList", _present(("BridgeType", bridge_type))).addCallback(_events)

    def status(self, channel: str | None = None) -> Deferred[list[Message]]:
        """Channel status, as ``Status`` events (all channels when ``channel`` is None)."""
        return self.sendAction("Status", _present(("Channel", channel))).addCallback(_events)

    def getVar(self, variable: str, channel: str | None = None) -> Deferred[str | None]:
        """A channel (or global) variable; Asterisk reports unset as ``""``."""
        return self.sendAction("Getvar", _present(("Variable", variable), ("Channel", channel))).addCallback(
            lambda r: r.response.get("Value"))

    def setVar(self, variable: str, value: str, channel: str | None = None) -> Deferred[Message]:
        """Set a channel (or global) variable."""
        headers = _present(("Variable", variable), ("Value", value), ("Channel", channel))
        return self.sendAction("Setvar", headers).addCallback(_response)

    # -- call control ------------------------------------------------------------

    def originate(self, channel: str, context: str | None = None, exten: str | None = None,
                  priority: int | str | None = None, application: str | None = None,
                  data: str | None = None, timeout: int = 30000, callerid: str | None = None,
                  variables: Mapping[str, object] | None = None, account: str | None = None,
                  channel_id: str | None = None, other_channel_id: str | None = None,
                  wait: bool = False) -> Deferred[Any]:
        """Originate asynchronously (``Async: true``); ``timeout`` is in ms.

        ``wait=False`` fires with the :class:`~ctid.protocols.ami.ActionResult` once queued;
        ``wait=True`` fires with the ``OriginateResponse`` event (fails with
        :class:`~ctid.protocols.ami.AMIError` when its Response is Failure).
        """
        headers = _present(("Channel", channel), ("Context", context), ("Exten", exten),
                           ("Priority", priority), ("Application", application), ("Data", data),
                           ("Timeout", timeout), ("CallerID", callerid), ("Account", account),
                           ("ChannelId", channel_id), ("OtherChannelId", other_channel_id))
        headers += [("Variable", f"{name}={value}") for name, value in (variables or {}).items()]
        headers.append(("Async", "true"))
        if not wait:
            return self.sendAction("Originate", headers)
        budget = self.action_timeout + (timeout / 1000 if timeout else 0)
        return self._send("Originate", headers, budget, until_originate=True)

    def redirect(self, channel: str, context: str, exten: str, priority: int | str = 1,
                 extra_channel: str | None = None, extra_context: str | None = None,
                 extra_exten: str | None = None, extra_priority: int | str | None = None) -> Deferred[Message]:
        """Send ``channel`` (and ``extra_channel``) to ``exten@context``."""
        headers = _present(("Channel", channel), ("Context", context), ("Exten", exten),
                           ("Priority", priority), ("ExtraChannel", extra_channel),
                           ("ExtraContext", extra_context), ("ExtraExten", extra_exten),
                           ("ExtraPriority", extra_priority))
        return self.sendAction("Redirect", headers).addCallback(_response)

    def hangup(self, channel: str, cause: int | None = None) -> Deferred[Message]:
        """Hang up ``channel`` with an optional Q.850 ``cause``."""
        return self.sendAction("Hangup", _present(("Channel", channel), ("Cause", cause))).addCallback(_response)

    def confbridgeKick(self, conference: str, channel: str) -> Deferred[Message]:
        """Kick ``channel`` (a channel name, ``all`` or ``participants``) out of ConfBridge ``conference``."""
        headers = [("Conference", conference), ("Channel", channel)]
        return self.sendAction("ConfbridgeKick", headers).addCallback(_response)

    def atxfer(self, channel: str, exten: str, context: str | None = None) -> Deferred[Message]:
        """Start an attended transfer from ``channel`` (needs the atxfer feature)."""
        headers = _present(("Channel", channel), ("Exten", exten), ("Context", context))
        return self.sendAction("Atxfer", headers).addCallback(_response)

    def blindTransfer(self, channel: str, exten: str, context: str | None = None) -> Deferred[Message]:
        """Blind-transfer the party bridged with ``channel``."""
        headers = _present(("Channel", channel), ("Exten", exten), ("Context", context))
        return self.sendAction("BlindTransfer", headers).addCallback(_response)

    def bridge(self, channel1: str, channel2: str, tone: str | None = None) -> Deferred[Message]:
        """Bridge two existing channels (``tone``: no/Channel1/Channel2/Both)."""
        headers = _present(("Channel1", channel1), ("Channel2", channel2), ("Tone", tone))
        return self.sendAction("Bridge", headers).addCallback(_response)

    def mixMonitor(self, channel: str, file: str, options: str | None = None) -> Deferred[str | None]:
        """Start recording; fires with the MixMonitorID (only given with option ``i(VAR)``)."""
        headers = _present(("Channel", channel), ("File", file), ("Options", options))
        return self.sendAction("MixMonitor", headers).addCallback(lambda r: r.response.get("MixMonitorID"))

    def stopMixMonitor(self, channel: str, mixmonitor_id: str | None = None) -> Deferred[Message]:
        """Stop recording ``channel`` (one MixMonitor by id, or the only one)."""
        headers = _present(("Channel", channel), ("MixMonitorID", mixmonitor_id))
        return self.sendAction("StopMixMonitor", headers).addCallback(_response)

    def mixMonitorMute(self, channel: str, direction: str = "both", state: bool = True) -> Deferred[Message]:
        """Mute (``state`` True) or unmute a recording in ``direction`` (read/write/both)."""
        headers = [("Channel", channel), ("Direction", direction), ("State", "1" if state else "0")]
        return self.sendAction("MixMonitorMute", headers).addCallback(_response)

    def playDTMF(self, channel: str, digit: str, duration: int | None = None,
                 receive: bool = False) -> Deferred[Message]:
        """Play ``digit`` to ``channel`` (``receive``: as if the channel had sent it)."""
        headers = _present(("Channel", channel), ("Digit", digit), ("Duration", duration),
                           ("Receive", "true" if receive else None))
        return self.sendAction("PlayDTMF", headers).addCallback(_response)

    def pjsipNotify(self, channel: str, variables: Mapping[str, object]) -> Deferred[Message]:
        """Send a SIP NOTIFY inside ``channel``'s dialog, one header per variable (e.g. ``Event: talk``)."""
        headers = [("Channel", channel), *((("Variable", f"{name}={value}") for name, value in variables.items()))]
        return self.sendAction("PJSIPNotify", headers).addCallback(_response)

    def userEvent(self, name: str, **headers: object) -> Deferred[Message]:
        """Broadcast ``UserEvent: name`` with extra headers."""
        return self.sendAction("UserEvent", [("UserEvent", name), *_present(*headers.items())]).addCallback(_response)
