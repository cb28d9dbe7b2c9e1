"""The call model's data: the domain events it publishes, call snapshots, and its live objects.

``ctid.calls`` holds the logic; this module holds what it works on.  The
events and snapshots are frozen and small, so an event can be queued, logged or sent
to another process without holding on to the model's live objects.  A
subscriber that wants more than an event carries asks the model for
:meth:`ctid.calls.CallModel.snapshot` while handling it (a call that just
ended is still readable during its :class:`CallEnded`).

Every call that is announced with :class:`CallStarted` later gets exactly one
of :class:`CallEnded` (its last leg hung up, or it vanished while ctid was
disconnected) or :class:`CallsMerged` (its last leg was re-linked into
another call).

:class:`Channel`, :class:`Bridge` and :class:`Call` are the model's live,
mutable objects (``__slots__``, they are many); read them, never change them
from outside ``ctid.calls``.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class CallState(StrEnum):
    """Where a call stands; the transitions are in ``ctid.calls.TRANSITIONS``.

    ``ringing`` means "not (or no longer) talking to anyone": alerting, in the
    IVR, parked in ``ctid-wait`` or between two deliveries.
    """

    RINGING = "ringing"
    QUEUED = "queued"
    CONNECTED = "connected"
    HELD = "held"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class HoldInterval:
    """One period during which at least one leg of the call was on hold."""

    start: float
    end: float | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer seen on a call (``kind`` is ``"blind"`` or ``"attended"``)."""

    kind: str
    at: float
    uniqueid: str
    target: str | None
    result: str | None


@dataclass(frozen=True, slots=True)
class Recording:
    """One MixMonitor run on one leg; ``filename`` from ``MIXMONITOR_FILENAME`` when known."""

    uniqueid: str
    started_at: float
    stopped_at: float | None = None
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    """A call frozen at one moment, for subscribers and APIs."""

    call_id: str
    state: CallState
    ani: str | None
    dnis: str | None
    started_at: float
    answered_at: float | None
    ended_at: float | None
    hangup_cause: int | None
    hangup_cause_txt: str | None
    legs: tuple[str, ...]
    queue: str | None
    abandoned: bool
    conference: str | None
    dtmf: str
    holds: tuple[HoldInterval, ...]
    transfers: tuple[Transfer, ...]
    recordings: tuple[Recording, ...]

    @property
    def held_seconds(self) -> float:
        """Total time on hold over the closed intervals."""
        return sum(h.end - h.start for h in self.holds if h.end is not None)


class CallEvent:
    """Base class of everything :class:`ctid.calls.CallModel` publishes."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class CallStarted(CallEvent):
    """A new call: ``ani`` is the caller's number, ``dnis`` the number dialled (either may be None)."""

    call_id: str
    ani: str | None
    dnis: str | None
    at: float


@dataclass(frozen=True, slots=True)
class CallAnswered(CallEvent):
    """The call is connected to a party for the first time (two Up legs share a bridge)."""

    call_id: str
    at: float


@dataclass(frozen=True, slots=True)
class CallEnded(CallEvent):
    """The last leg hung up.  ``cause`` is a Q.850 code, None when it ended while we were disconnected."""

    call_id: str
    at: float
    cause: int | None
    duration: float


@dataclass(frozen=True, slots=True)
class LegAdded(CallEvent):
    """A channel (``channel`` is its name) became part of the call."""

    call_id: str
    uniqueid: str
    channel: str


@dataclass(frozen=True, slots=True)
class LegRemoved(CallEvent):
    """A channel left the call: hung up (``cause``), re-linked elsewhere or vanished (``cause`` None)."""

    call_id: str
    uniqueid: str
    cause: int | None


@dataclass(frozen=True, slots=True)
class CallsMerged(CallEvent):
    """The last leg of ``old_call_id`` moved to ``new_call_id``; the old call is gone."""

    old_call_id: str
    new_call_id: str


@dataclass(frozen=True, slots=True)
class CallHeld(CallEvent):
    """A leg was put on hold (SIP hold: the AMI ``Hold`` event)."""

    call_id: str
    uniqueid: str


@dataclass(frozen=True, slots=True)
class CallRetrieved(CallEvent):
    """A held leg was taken off hold."""

    call_id: str
    uniqueid: str


@dataclass(frozen=True, slots=True)
class DigitsReceived(CallEvent):
    """A DTMF digit was received on a leg (one event per digit, at its end)."""

    call_id: str
    uniqueid: str
    digit: str


@dataclass(frozen=True, slots=True)
class CallTransferred(CallEvent):
    """A blind or attended transfer finished (``result`` as Asterisk reports it, e.g. ``Success``).

    ``uniqueid`` is the transferer's leg; ``target`` is ``exten@context`` for a
    blind transfer and the transfer target's channel (or the destination
    application) for an attended one; ``other_call_id`` is the consultation
    call of an attended transfer when it is a different call.
    """

    call_id: str
    kind: str
    uniqueid: str
    target: str | None
    result: str | None
    other_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingStarted(CallEvent):
    """MixMonitor started on a leg."""

    call_id: str
    uniqueid: str
    filename: str | None


@dataclass(frozen=True, slots=True)
class RecordingStopped(CallEvent):
    """MixMonitor stopped on a leg."""

    call_id: str
    uniqueid: str
    filename: str | None


@dataclass(frozen=True, slots=True)
class VariableSet(CallEvent):
    """A kept channel variable (``CTID_*`` or a configured name) was set on a leg of an announced call."""

    call_id: str
    uniqueid: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class DeliveryFailed(CallEvent):
    """The ``ctid-deliver`` dialplan could not reach the agent (``UserEvent: CtidDeliveryFailed``)."""

    call_id: str
    uniqueid: str
    dialstatus: str | None


@dataclass(frozen=True, slots=True)
class QueueJoined(CallEvent):
    """A leg entered an Asterisk queue (app_queue) at ``position``."""

    call_id: str
    uniqueid: str
    queue: str | None
    position: int | None


@dataclass(frozen=True, slots=True)
class QueueLeft(CallEvent):
    """A leg left an Asterisk queue: to an agent or a timeout, or ``abandoned`` (caller hung up)."""

    call_id: str
    uniqueid: str
    queue: str | None
    abandoned: bool


@dataclass(frozen=True, slots=True)
class ConferenceJoined(CallEvent):
    """A leg joined a ConfBridge conference."""

    call_id: str
    uniqueid: str
    conference: str | None


@dataclass(frozen=True, slots=True)
class ConferenceLeft(CallEvent):
    """A leg left a ConfBridge conference."""

    call_id: str
    uniqueid: str
    conference: str | None


@dataclass(frozen=True, slots=True)
class OriginateFailed(CallEvent):
    """An ``Originate`` failed (``reason`` 0 not created, 1 hung up, 3 no answer, 5 busy, 8 congestion).

    ``call_id`` is None when the channel never became part of a known call.
    """

    call_id: str | None
    uniqueid: str | None
    channel: str | None
    reason: int | None


# -- the live objects of the model ---------------------------------------------

UP = 6


class Channel:
    """One live channel (a leg), keyed on its Uniqueid.

    ``context``/``exten`` are as at creation (``Newexten`` is not followed, it
    is too chatty); ``state`` is the AMI ChannelState number (6 is Up);
    ``answered_at`` is when this leg went Up; ``dtmf`` the digits it received outside ctid's IVR
    (``in_ivr``: the leg ran an AGI command and has not been bridged since — its keys stay private).
    """

    __slots__ = ("uniqueid", "linkedid", "name", "state", "state_desc", "caller_num", "caller_name",
                 "connected_num", "connected_name", "context", "exten", "created_at", "answered_at",
                 "hungup_at", "cause", "cause_txt", "bridge_id", "on_hold", "moh", "recording",
                 "variables", "dtmf", "dial_status", "conference", "in_ivr")

    def __init__(self, uniqueid: str, linkedid: str, name: str, state: int | None, state_desc: str | None,
                 caller_num: str | None, caller_name: str | None, connected_num: str | None,
                 connected_name: str | None, context: str | None, exten: str | None, created_at: float):
        self.uniqueid = uniqueid
        self.linkedid = linkedid
        self.name = name
        self.state = state
        self.state_desc = state_desc
        self.caller_num = caller_num
        self.caller_name = caller_name
        self.connected_num = connected_num
        self.connected_name = connected_name
        self.context = context
        self.exten = exten
        self.created_at = created_at
        self.answered_at: float | None = created_at if state == UP else None
        self.hungup_at: float | None = None
        self.cause: int | None = None
        self.cause_txt: str | None = None
        self.bridge_id: str | None = None
        self.on_hold = False
        self.moh = False
        self.recording = False
        self.variables: dict[str, str] = {}
        self.dtmf = ""
        self.dial_status: str | None = None
        self.conference: str | None = None
        self.in_ivr = False

    def __repr__(self) -> str:
        return f"<Channel {self.name} {self.uniqueid} call={self.linkedid} state={self.state}>"


class Bridge:
    """One live bridge: ``type`` is the v-table name (``basic``, ``base``, ``holding``…)."""

    __slots__ = ("id", "type", "technology", "channels")

    def __init__(self, bridge_id: str, type: str | None = None, technology: str | None = None):
        self.id = bridge_id
        self.type = type
        self.technology = technology
        #: Uniqueids of the member channels, in order of entry (a dict used as an ordered set).
        self.channels: dict[str, None] = {}

    @property
    def talking(self) -> bool:
        """True when parties can talk in it: two members or more, and not a holding (parking) bridge."""
        return len(self.channels) > 1 and self.technology != "holding_bridge"

    def __repr__(self) -> str:
        return f"<Bridge {self.id} {self.type} {list(self.channels)}>"


class Call:
    """One call: the live channels sharing a Linkedid, and what happened to it.

    ``channels`` holds the live legs, ``legs`` every Uniqueid that was ever
    part of the call, ``origin`` the origin leg's Uniqueid.  See the module
    docstring for the ANI, DNIS and answered rules.
    """

    __slots__ = ("linkedid", "started_at", "channels", "legs", "origin", "announced", "ani", "dnis", "state",
                 "answered_at", "ended_at", "hangup_cause", "hangup_cause_txt", "holds", "on_hold", "transfers",
                 "recordings", "dtmf", "queue", "abandoned", "conference")

    def __init__(self, linkedid: str, started_at: float):
        self.linkedid = linkedid
        self.started_at = started_at
        self.channels: dict[str, Channel] = {}
        self.legs: list[str] = []
        self.origin: str | None = None
        self.announced = False
        self.ani: str | None = None
        self.dnis: str | None = None
        self.state = CallState.RINGING
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.hangup_cause: int | None = None
        self.hangup_cause_txt: str | None = None
        self.holds: list[HoldInterval] = []
        self.on_hold = False
        self.transfers: list[Transfer] = []
        self.recordings: list[Recording] = []
        self.dtmf = ""
        self.queue: str | None = None
        self.abandoned = False
        self.conference: str | None = None

    @property
    def call_id(self) -> str:
        """The call's identity: the Linkedid its legs share."""
        return self.linkedid

    def snapshot(self) -> CallSnapshot:
        """A frozen copy of this call."""
        return CallSnapshot(
            self.linkedid, self.state, self.ani, self.dnis, self.started_at, self.answered_at, self.ended_at,
            self.hangup_cause, self.hangup_cause_txt, tuple(self.channels), self.queue, self.abandoned,
            self.conference, self.dtmf, tuple(self.holds), tuple(self.transfers), tuple(self.recordings),
        )

    def __repr__(self) -> str:
        return f"<Call {self.linkedid} {self.state.value} ani={self.ani} dnis={self.dnis} legs={list(self.channels)}>"


def known(number: str | None) -> str | None:
    """``number`` unless it is empty or Asterisk's ``<unknown>``."""
    return number if number and number != "<unknown>" else None


def to_int(value: str | None) -> int | None:
    """An AMI number field as int, None when absent or not a number."""
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


#: ChannelStateDesc for each ChannelState (ast_state2str), so the text need not be read off the wire.
STATE_DESCS = ("Down", "Rsrvd", "OffHook", "Dialing", "Ring", "Ringing", "Up", "Busy", "Dialing Offhook",
               "Pre-ring", "Unknown")


def state_desc(state: int | None, event: Any, key: str = "ChannelStateDesc") -> str | None:
    """The description of ``state``: from the table when standard, else read from ``event``."""
    if state is not None and 0 <= state < len(STATE_DESCS):
        return STATE_DESCS[state]
    return event.get(key)


def c_unescape(value: str | None) -> str | None:
    """Undo Asterisk's C escaping of caller/connected names (``\\t``, ``\\"``…)."""
    if value is None or "\\" not in value:
        return value
    try:
        return codecs.decode(value.encode("latin-1", "backslashreplace"), "unicode_escape")
    except UnicodeDecodeError:
        return value


def duration_seconds(value: str | None) -> float:
    """``CoreShowChannel`` Duration ``HH:MM:SS`` (hours may pass 24) in seconds; 0 if malformed."""
    try:
        hours, minutes, seconds = (value or "").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    except ValueError:
        return 0.0


def oldest_linkedid(linkedids: Iterable[str]) -> str | None:
    """The oldest of Asterisk Linkedids (``[system-]epoch.seq``); None if any is not in that form."""
    best: tuple[int, int] | None = None
    oldest = None
    for linkedid in linkedids:
        epoch, _, seq = linkedid.rpartition("-")[2].partition(".")
        if not (epoch.isdigit() and seq.isdigit()):
            return None
        key = (int(epoch), int(seq))
        if best is None or key < best:
            best, oldest = key, linkedid
    return oldest
