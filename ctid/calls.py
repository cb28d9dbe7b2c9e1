"""The call model (SW-3): AMI events in, calls and domain events out.

Pure domain code: no sockets, no reactor, time from an injected clock.  One
**call** is the set of channels sharing a Linkedid.  Asterisk re-links channels
to the oldest Linkedid in a basic bridge, so a channel can move from one call
to another mid-call; every event that carries a channel block is checked and
the channel re-parented when its Linkedid differs (see :class:`CallsMerged`).

Rules chosen here (the AMI has no single answer for them):

* **Origin leg** of a call: the channel whose Uniqueid equals the Linkedid
  (the caller, or the ``;1`` half of an originated Local channel); the first
  channel seen when that one is unknown.
* **ANI**: the origin leg's caller number, ``<unknown>`` and empty ignored.
  Taken when the call is announced and, if still unknown then, the first time
  the origin leg gets one; it never changes afterwards.
* **DNIS**: the origin leg's ``Exten`` when it was created (``s`` and empty
  mean "none").  After a :meth:`CallModel.rebuild` it is the current ``Exten``.
* **Announcement**: :class:`CallStarted` is held back while the origin leg has
  no caller number and only quiet events (Newchannel, NewCallerid,
  NewConnectedLine, VarSet, LocalBridge, LocalOptimization*) arrived, so an
  originated call is announced with the number set right after creation.  The
  legs created meanwhile follow as :class:`LegAdded`.
* **Answered**: the first time two Up channels share a bridge (a party is
  talking to the call).  An IVR or the ``ctid-wait`` holding context answering
  the channel is not "answered"; each :class:`Channel` keeps its own
  ``answered_at`` for that.
* **Hang-up cause** of a call: the first non-zero cause among its legs, else
  the last leg's cause.
* Events for an unknown Uniqueid create the channel from their snapshot block,
  except ``Hangup`` (nothing to end).  ``MusicOnHold*`` is not hold (queues and
  ``ctid-wait`` play music); hold is the SIP ``Hold``/``Unhold``.  ``VarSet`` is
  kept only for ``CTID_*`` names and the configured set.  A DTMF digit counts
  at its ``DTMFEnd`` (Received); ``DTMFBegin`` can repeat and is ignored.
* Bridges with ``holding_bridge`` technology (parking) never connect calls;
  only ``basic`` bridges re-link their members (Asterisk does the same).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from twisted.logger import Logger

from ctid.callevents import (
    UP,
    Bridge,
    Call,
    CallAnswered,
    CallEnded,
    CallEvent,
    CallHeld,
    CallRetrieved,
    CallsMerged,
    CallSnapshot,
    CallStarted,
    CallState,
    CallTransferred,
    Channel,
    ConferenceJoined,
    ConferenceLeft,
    DeliveryFailed,
    DigitsReceived,
    HoldInterval,
    LegAdded,
    LegRemoved,
    OriginateFailed,
    QueueJoined,
    QueueLeft,
    Recording,
    RecordingStarted,
    RecordingStopped,
    Transfer,
    c_unescape,
    duration_seconds,
    known,
    oldest_linkedid,
    state_desc,
    to_int,
)
from ctid.calllog import CallLogger

__all__ = ["Bridge", "Call", "CallLogger", "CallModel", "CallState", "Channel", "TRANSITIONS"]

DTMF_KEEP = 128
VARIABLE_PREFIX = "CTID_"
DEFAULT_VARIABLES = frozenset({"MIXMONITOR_FILENAME"})

_R, _Q, _C, _H, _E = CallState.RINGING, CallState.QUEUED, CallState.CONNECTED, CallState.HELD, CallState.ENDED
#: The call state machine: (state, trigger) -> new state.  Pairs not listed leave the state alone.
#: Triggers: ``queue_join``/``queue_leave`` (app_queue), ``bridged`` (two Up legs share a talking
#: bridge), ``unbridged`` (no leg shares one any more), ``hold``/``retrieve`` (first leg held, last
#: leg retrieved), ``end`` (last leg gone or merged into another call).
TRANSITIONS: dict[tuple[CallState, str], CallState] = {
    (_R, "queue_join"): _Q,
    (_R, "bridged"): _C,
    (_Q, "queue_leave"): _R,
    (_Q, "bridged"): _C,
    (_C, "hold"): _H,
    (_C, "unbridged"): _R,
    (_C, "queue_join"): _Q,
    (_H, "retrieve"): _C,
    (_H, "unbridged"): _R,
    (_H, "queue_join"): _Q,
    (_R, "end"): _E,
    (_Q, "end"): _E,
    (_C, "end"): _E,
    (_H, "end"): _E,
}

_FIELDS = ("Uniqueid", "Linkedid", "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum",
           "CallerIDName", "ConnectedLineNum", "ConnectedLineName", "Context", "Exten")
_ROLES = ("", "Dest", "Transferer", "Transferee", "OrigTransferer", "SecondTransferer", "TransferTarget",
          "LocalOne", "LocalTwo")
#: The snapshot header names for each role prefix, built once.
KEYS = {role: tuple(role + name for name in _FIELDS) for role in _ROLES}
_PLAIN = KEYS[""]


class AMIEvent(Protocol):
    """What the model reads from an AMI event (``ctid.protocols.amiwire.Message`` fits)."""

    @property
    def event(self) -> str | None: ...

    def get(self, key: str, default: str | None = None) -> str | None: ...


class Clock(Protocol):
    """The part of ``IReactorTime`` the model uses."""

    def seconds(self) -> float: ...


Subscriber = Callable[[CallEvent], object]
Trace = Callable[[str, CallState, str, CallState], object]


class CallModel:
    """Live calls, channels and bridges of one switch, kept from its AMI events.

    ``clock`` gives the time (``IReactorTime``); ``variables`` names channel
    variables to keep besides ``CTID_*``; ``trace(call_id, old, trigger, new)``
    is called on every state change when given.  The model only logs
    failures; :class:`ctid.calllog.CallLogger` tells the story of each call.
    """

    log = Logger()

    def __init__(self, clock: Clock, variables: Iterable[str] = (), trace: Trace | None = None):
        self._clock = clock
        self._variables = DEFAULT_VARIABLES | frozenset(variables)
        self._trace = trace
        self._subscribers: tuple[Subscriber, ...] = ()
        self._names: dict[str, str] = {}
        #: Live calls by call id (the Linkedid).  Ended calls are dropped.
        self.calls: dict[str, Call] = {}
        #: Live channels by Uniqueid.
        self.channels: dict[str, Channel] = {}
        #: Live bridges by BridgeUniqueid.
        self.bridges: dict[str, Bridge] = {}
        self._handlers: dict[str, Callable[[AMIEvent], None]] = {
            "Newchannel": self._on_quiet,
            "NewCallerid": self._on_callerid,
            "NewConnectedLine": self._on_connected_line,
            "Newstate": self._on_newstate,
            "DialBegin": self._on_dial_begin,
            "DialState": self._on_dial_status,
            "DialEnd": self._on_dial_status,
            "BridgeCreate": self._on_bridge_create,
            "BridgeEnter": self._on_bridge_enter,
            "BridgeLeave": self._on_bridge_leave,
            "BridgeDestroy": self._on_bridge_destroy,
            "BridgeMerge": self._on_bridge_merge,
            "Hold": self._on_hold,
            "Unhold": self._on_unhold,
            "MusicOnHoldStart": self._on_moh_start,
            "MusicOnHoldStop": self._on_moh_stop,
            "Hangup": self._on_hangup,
            "VarSet": self._on_varset,
            "DTMFEnd": self._on_dtmf_end,
            "BlindTransfer": self._on_blind_transfer,
            "AttendedTransfer": self._on_attended_transfer,
            "LocalBridge": self._on_local,
            "LocalOptimizationBegin": self._on_local,
            "LocalOptimizationEnd": self._on_local,
            "MixMonitorStart": self._on_mixmonitor_start,
            "MixMonitorStop": self._on_mixmonitor_stop,
            "ConfbridgeJoin": self._on_confbridge_join,
            "ConfbridgeLeave": self._on_confbridge_leave,
            "QueueCallerJoin": self._on_queue_join,
            "QueueCallerLeave": self._on_queue_leave,
            "QueueCallerAbandon": self._on_queue_abandon,
            "UserEvent": self._on_user_event,
            "OriginateResponse": self._on_originate_response,
        }

    # -- subscribers and queries ------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(event)`` synchronously for every domain event from now on."""
        self._subscribers += (subscriber,)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber`` (no error if it was not subscribed)."""
        self._subscribers = tuple(s for s in self._subscribers if s != subscriber)

    def call_of(self, uniqueid: str) -> Call | None:
        """The live call holding channel ``uniqueid``, if any."""
        channel = self.channels.get(uniqueid)
        return None if channel is None else self.calls.get(channel.linkedid)

    def find_channel(self, name: str) -> Channel | None:
        """The live channel named ``name`` (e.g. ``PJSIP/1001-00000002``), if any."""
        uniqueid = self._names.get(name)
        return None if uniqueid is None else self.channels.get(uniqueid)

    def active_calls(self) -> list[Call]:
        """Every live call, oldest first."""
        return sorted(self.calls.values(), key=lambda call: call.started_at)

    def snapshot(self, call_id: str) -> CallSnapshot | None:
        """A frozen copy of call ``call_id`` (readable during its own ``CallEnded``)."""
        call = self.calls.get(call_id)
        return None if call is None else call.snapshot()

    # -- applying AMI events --------------------------------------------------

    def apply(self, event: AMIEvent) -> None:
        """Update the model from one AMI event; unknown events cost one dict lookup.

        A malformed event is logged and skipped; it never raises.
        """
        handler = self._handlers.get(event.event)  # type: ignore[arg-type]
        if handler is None:
            return
        try:
            handler(event)
        except Exception:
            self.log.failure("could not apply AMI event {name}", name=event.event)

    def _on_quiet(self, event: AMIEvent) -> None:
        channel = self._channel(event)
        if channel is not None:
            self._maybe_announce(self.calls[channel.linkedid])

    def _on_local(self, event: AMIEvent) -> None:
        for role in ("LocalOne", "LocalTwo"):
            channel = self._channel(event, KEYS[role])
            if channel is not None:
                self._maybe_announce(self.calls[channel.linkedid])

    def _on_callerid(self, event: AMIEvent) -> None:
        channel = self._channel(event)
        if channel is None:
            return
        channel.caller_num = event.get("CallerIDNum")
        channel.caller_name = c_unescape(event.get("CallerIDName"))
        call = self.calls[channel.linkedid]
        if call.announced:
            if call.ani is None and call.origin == channel.uniqueid:
                call.ani = known(channel.caller_num)
        else:
            self._maybe_announce(call)

    def _on_connected_line(self, event: AMIEvent) -> None:
        channel = self._channel(event)
        if channel is not None:
            channel.connected_num = event.get("ConnectedLineNum")
            channel.connected_name = c_unescape(event.get("ConnectedLineName"))
            self._maybe_announce(self.calls[channel.linkedid])

    def _on_varset(self, event: AMIEvent) -> None:
        name = event.get("Variable")
        if name is None or not (name.startswith(VARIABLE_PREFIX) or name in self._variables):
            return
        channel = self._channel(event)
        if channel is not None:
            channel.variables[name] = event.get("Value") or ""
            self._maybe_announce(self.calls[channel.linkedid])

    def _on_newstate(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is None:
            return
        channel.state = state = to_int(event.get("ChannelState"))
        channel.state_desc = state_desc(state, event)
        if state == UP and channel.answered_at is None:
            channel.answered_at = self._clock.seconds()
            if channel.bridge_id is not None:
                self._check_bridged(self.bridges.get(channel.bridge_id))

    def _on_dial_begin(self, event: AMIEvent) -> None:
        self._leg(event)
        self._leg(event, KEYS["Dest"])

    def _on_dial_status(self, event: AMIEvent) -> None:
        self._leg(event)
        dest, _ = self._leg(event, KEYS["Dest"])
        if dest is not None:
            dest.dial_status = event.get("DialStatus")

    def _on_hangup(self, event: AMIEvent) -> None:
        channel = self.channels.get(event.get("Uniqueid"))  # type: ignore[arg-type]
        if channel is None:
            return  # never seen: nothing to end
        linkedid = event.get("Linkedid")
        if linkedid and linkedid != channel.linkedid:
            self._relink(channel, linkedid)
        call = self.calls[channel.linkedid]
        self._remove(channel, call, to_int(event.get("Cause")), event.get("Cause-txt"), self._clock.seconds())

    def _on_hold(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is not None and not channel.on_hold:
            channel.on_hold = True
            self._publish(CallHeld(call.linkedid, channel.uniqueid))
            self._sync_hold(call)

    def _on_unhold(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is not None and channel.on_hold:
            channel.on_hold = False
            self._publish(CallRetrieved(call.linkedid, channel.uniqueid))
            self._sync_hold(call)

    def _on_moh_start(self, event: AMIEvent) -> None:
        channel, _ = self._leg(event)
        if channel is not None:
            channel.moh = True

    def _on_moh_stop(self, event: AMIEvent) -> None:
        channel, _ = self._leg(event)
        if channel is not None:
            channel.moh = False

    def _on_dtmf_end(self, event: AMIEvent) -> None:
        if event.get("Direction") != "Received":
            return
        digit = event.get("Digit") or ""
        channel, call = self._leg(event)
        if channel is None or not digit:
            return
        channel.dtmf = (channel.dtmf + digit)[-DTMF_KEEP:]
        call.dtmf = (call.dtmf + digit)[-DTMF_KEEP:]
        self._publish(DigitsReceived(call.linkedid, channel.uniqueid, digit))

    def _on_user_event(self, event: AMIEvent) -> None:
        if event.get("UserEvent") != "CtidDeliveryFailed":
            return
        channel, call = self._leg(event)
        if channel is not None:
            self._publish(DeliveryFailed(call.linkedid, channel.uniqueid, event.get("Dialstatus")))

    def _on_originate_response(self, event: AMIEvent) -> None:
        if event.get("Response") != "Failure":
            return
        uniqueid = event.get("Uniqueid")
        if uniqueid == "<null>":
            uniqueid = None
        call = self.call_of(uniqueid) if uniqueid else None
        self._publish(OriginateFailed(None if call is None else call.linkedid, uniqueid or None,
                                      event.get("Channel"), to_int(event.get("Reason"))))

    # -- queues, conferences, recordings, transfers ---------------------------------

    def _on_queue_join(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is None:
            return
        call.queue = event.get("Queue")
        self._transition(call, "queue_join")
        self._publish(QueueJoined(call.linkedid, channel.uniqueid, call.queue, to_int(event.get("Position"))))

    def _on_queue_leave(self, event: AMIEvent) -> None:
        self._queue_left(event, abandoned=False)

    def _on_queue_abandon(self, event: AMIEvent) -> None:
        self._queue_left(event, abandoned=True)

    def _queue_left(self, event: AMIEvent, abandoned: bool) -> None:
        channel, call = self._leg(event)
        if channel is None:
            return
        call.abandoned = call.abandoned or abandoned
        if call.state is CallState.QUEUED:
            self._transition(call, "queue_leave")
            self._publish(QueueLeft(call.linkedid, channel.uniqueid, event.get("Queue"), abandoned))

    def _on_confbridge_join(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is not None:
            channel.conference = call.conference = event.get("Conference")
            self._publish(ConferenceJoined(call.linkedid, channel.uniqueid, channel.conference))

    def _on_confbridge_leave(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is not None:
            channel.conference = None
            if not any(leg.conference for leg in call.channels.values()):
                call.conference = None
            self._publish(ConferenceLeft(call.linkedid, channel.uniqueid, event.get("Conference")))

    def _on_mixmonitor_start(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is None:
            return
        channel.recording = True
        filename = channel.variables.get("MIXMONITOR_FILENAME")
        call.recordings.append(Recording(channel.uniqueid, self._clock.seconds(), None, filename))
        self._publish(RecordingStarted(call.linkedid, channel.uniqueid, filename))

    def _on_mixmonitor_stop(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is None:
            return
        channel.recording = False
        filename = channel.variables.get("MIXMONITOR_FILENAME")
        for index in range(len(call.recordings) - 1, -1, -1):
            run = call.recordings[index]
            if run.uniqueid == channel.uniqueid and run.stopped_at is None:
                filename = run.filename or filename
                call.recordings[index] = Recording(run.uniqueid, run.started_at, self._clock.seconds(), filename)
                break
        self._publish(RecordingStopped(call.linkedid, channel.uniqueid, filename))

    def _on_blind_transfer(self, event: AMIEvent) -> None:
        channel, call = self._leg(event, KEYS["Transferer"])
        self._channel(event, KEYS["Transferee"])
        if channel is None:
            return
        call = self.calls[channel.linkedid]
        target = f"{event.get('Extension')}@{event.get('Context')}"
        self._transferred(call, "blind", channel.uniqueid, target, event.get("Result"), None)

    def _on_attended_transfer(self, event: AMIEvent) -> None:
        channel, call = self._leg(event, KEYS["OrigTransferer"])
        second = self._channel(event, KEYS["SecondTransferer"])
        self._channel(event, KEYS["Transferee"])
        self._channel(event, KEYS["TransferTarget"])
        if channel is None:
            return
        call = self.calls[channel.linkedid]
        other = None if second is None or second.linkedid == call.linkedid else second.linkedid
        target = event.get("TransferTargetChannel") or event.get("DestApp") or event.get("DestType")
        self._transferred(call, "attended", channel.uniqueid, target, event.get("Result"), other)

    def _transferred(self, call: Call, kind: str, uniqueid: str, target: str | None, result: str | None,
                     other: str | None) -> None:
        call.transfers.append(Transfer(kind, self._clock.seconds(), uniqueid, target, result))
        self._publish(CallTransferred(call.linkedid, kind, uniqueid, target, result, other))

    # -- bridges --------------------------------------------------------------

    def _bridge(self, event: AMIEvent, prefix: str = "") -> Bridge | None:
        bridge_id = event.get(prefix + "BridgeUniqueid")
        if not bridge_id:
            return None
        bridge = self.bridges.get(bridge_id)
        if bridge is None:
            bridge = self.bridges[bridge_id] = Bridge(
                bridge_id, event.get(prefix + "BridgeType"), event.get(prefix + "BridgeTechnology"))
        return bridge

    def _on_bridge_create(self, event: AMIEvent) -> None:
        self._bridge(event)

    def _on_bridge_destroy(self, event: AMIEvent) -> None:
        bridge = self.bridges.pop(event.get("BridgeUniqueid"), None)  # type: ignore[arg-type]
        if bridge is not None:
            for uniqueid in bridge.channels:
                channel = self.channels.get(uniqueid)
                if channel is not None and channel.bridge_id == bridge.id:
                    channel.bridge_id = None

    def _on_bridge_enter(self, event: AMIEvent) -> None:
        channel, _ = self._leg(event)
        bridge = self._bridge(event)
        if channel is None or bridge is None:
            return
        self._join(channel, bridge)
        if bridge.type == "basic" and len(bridge.channels) > 1:
            # Asterisk moved every member to the oldest Linkedid before announcing the
            # entry, so the entering channel's Linkedid is the one for all of them.
            self._relink_members(bridge, channel.linkedid)
        self._check_bridged(bridge)

    def _on_bridge_leave(self, event: AMIEvent) -> None:
        channel, _ = self._leg(event)
        if channel is not None and channel.bridge_id is not None and channel.bridge_id == event.get("BridgeUniqueid"):
            self._leave_bridge(channel)

    def _on_bridge_merge(self, event: AMIEvent) -> None:
        to = self._bridge(event, "To")
        source = self.bridges.pop(event.get("FromBridgeUniqueid") or "", None)
        if to is None or source is None:
            return
        for uniqueid in list(source.channels):
            channel = self.channels.get(uniqueid)
            if channel is not None:
                self._join(channel, to)
        if to.type == "basic":
            oldest = oldest_linkedid(self.channels[u].linkedid for u in to.channels if u in self.channels)
            if oldest is not None:
                self._relink_members(to, oldest)
        self._check_bridged(to)

    def _join(self, channel: Channel, bridge: Bridge) -> None:
        if channel.bridge_id is not None and channel.bridge_id != bridge.id:
            old = self.bridges.get(channel.bridge_id)
            if old is not None:
                old.channels.pop(channel.uniqueid, None)
        channel.bridge_id = bridge.id
        bridge.channels[channel.uniqueid] = None

    def _leave_bridge(self, channel: Channel) -> None:
        bridge = self.bridges.get(channel.bridge_id)  # type: ignore[arg-type]
        channel.bridge_id = None
        if bridge is None:
            return
        bridge.channels.pop(channel.uniqueid, None)
        affected = dict.fromkeys([channel.linkedid, *(self.channels[u].linkedid for u in bridge.channels
                                                      if u in self.channels)])
        for call_id in affected:
            call = self.calls.get(call_id)
            if call is not None and call.state in (CallState.CONNECTED, CallState.HELD) and not self._talking(call):
                self._transition(call, "unbridged")

    def _relink_members(self, bridge: Bridge, linkedid: str) -> None:
        for uniqueid in list(bridge.channels):
            member = self.channels.get(uniqueid)
            if member is not None and member.linkedid != linkedid:
                self._relink(member, linkedid)

    def _check_bridged(self, bridge: Bridge | None) -> None:
        """Mark the calls in ``bridge`` connected (and answered) once two Up legs share it."""
        if bridge is None or not bridge.talking:
            return
        members = [self.channels[u] for u in bridge.channels if u in self.channels]
        up = [member for member in members if member.state == UP]
        if len(up) < 2:
            return
        now = self._clock.seconds()
        for call_id in dict.fromkeys(member.linkedid for member in up):
            call = self.calls[call_id]
            if call.answered_at is None:
                call.answered_at = now
                self._publish(CallAnswered(call_id, now))
            self._transition(call, "bridged")

    def _talking(self, call: Call) -> bool:
        for channel in call.channels.values():
            if channel.bridge_id is not None:
                bridge = self.bridges.get(channel.bridge_id)
                if bridge is not None and bridge.talking:
                    return True
        return False

    # -- channels and calls ------------------------------------------------------

    def _channel(self, event: AMIEvent, keys: tuple[str, ...] = _PLAIN) -> Channel | None:
        """The channel in the event's snapshot block (``keys`` picks the role), created or re-linked."""
        uniqueid = event.get(keys[0])
        if not uniqueid:
            return None
        channel = self.channels.get(uniqueid)
        linkedid = event.get(keys[1])
        if channel is None:
            channel = self._create(event, keys, uniqueid, linkedid or uniqueid, self._clock.seconds())
            self._attach(channel)
        elif linkedid and linkedid != channel.linkedid:
            self._relink(channel, linkedid)
        return channel

    def _leg(self, event: AMIEvent, keys: tuple[str, ...] = _PLAIN) -> tuple[Channel, Call] | tuple[None, None]:
        """Like :meth:`_channel` but also announces the call: something happened on it."""
        channel = self._channel(event, keys)
        if channel is None:
            return None, None
        call = self.calls[channel.linkedid]
        if not call.announced:
            self._announce(call)
        return channel, call

    def _create(self, event: AMIEvent, keys: tuple[str, ...], uniqueid: str, linkedid: str,
                created_at: float) -> Channel:
        get = event.get
        state = to_int(get(keys[3]))
        return Channel(
            uniqueid, linkedid, get(keys[2]) or "", state, state_desc(state, event, keys[4]), get(keys[5]),
            c_unescape(get(keys[6])), get(keys[7]), c_unescape(get(keys[8])), get(keys[9]), get(keys[10]),
            created_at,
        )

    def _attach(self, channel: Channel) -> Call:
        """Add a new or re-linked channel to the call of its Linkedid (made if needed)."""
        uniqueid = channel.uniqueid
        self.channels[uniqueid] = channel
        if channel.name:
            self._names[channel.name] = uniqueid
        call = self.calls.get(channel.linkedid)
        if call is None:
            call = self.calls[channel.linkedid] = Call(channel.linkedid, channel.created_at)
        call.channels[uniqueid] = channel
        call.legs.append(uniqueid)
        if call.origin is None or uniqueid == call.linkedid:
            call.origin = uniqueid
        if call.announced:
            self._publish(LegAdded(call.linkedid, uniqueid, channel.name))
        return call

    def _relink(self, channel: Channel, linkedid: str) -> None:
        """Move ``channel`` to the call of ``linkedid``; the old call is merged away when left empty."""
        uniqueid = channel.uniqueid
        old = self.calls.get(channel.linkedid)
        if old is not None:
            del old.channels[uniqueid]
            if old.origin == uniqueid:
                old.origin = next(iter(old.channels), None)
            if old.announced:
                self._publish(LegRemoved(old.linkedid, uniqueid, None))
        channel.linkedid = linkedid
        new = self._attach(channel)
        if not new.announced:
            self._announce(new)
        if channel.on_hold:
            self._sync_hold(new)
        if old is None:
            return
        if old.channels:
            if channel.on_hold:
                self._sync_hold(old)
            return
        self._close_hold(old, self._clock.seconds())
        self._transition(old, "end")
        if old.announced:
            self._publish(CallsMerged(old.linkedid, linkedid))
        del self.calls[old.linkedid]

    def _maybe_announce(self, call: Call) -> None:
        if not call.announced:
            origin = call.channels.get(call.origin)  # type: ignore[arg-type]
            if origin is not None and known(origin.caller_num):
                self._announce(call)

    def _announce(self, call: Call) -> None:
        call.announced = True
        origin = call.channels.get(call.origin)  # type: ignore[arg-type]
        if origin is not None:
            call.ani = call.ani or known(origin.caller_num)
            exten = origin.exten
            call.dnis = exten if exten and exten != "s" else None
        self._publish(CallStarted(call.linkedid, call.ani, call.dnis, call.started_at))
        for uniqueid, channel in call.channels.items():
            self._publish(LegAdded(call.linkedid, uniqueid, channel.name))

    def _remove(self, channel: Channel, call: Call, cause: int | None, cause_txt: str | None, now: float,
                disconnected: bool = False) -> None:
        """A leg is gone: record why, drop it everywhere, end the call after its last leg."""
        if not call.announced:
            self._announce(call)
        uniqueid = channel.uniqueid
        channel.hungup_at, channel.cause, channel.cause_txt = now, cause, cause_txt
        del self.channels[uniqueid]
        if self._names.get(channel.name) == uniqueid:
            del self._names[channel.name]
        del call.channels[uniqueid]
        if channel.bridge_id is not None:
            self._leave_bridge(channel)
        if call.hangup_cause is None or (cause and not call.hangup_cause):
            call.hangup_cause, call.hangup_cause_txt = cause, cause_txt
        self._publish(LegRemoved(call.linkedid, uniqueid, cause))
        if call.channels:
            if channel.on_hold:
                self._sync_hold(call)
            return
        call.ended_at = now
        self._close_hold(call, now)
        self._transition(call, "end")
        self._publish(CallEnded(call.linkedid, now, None if disconnected else call.hangup_cause,
                                now - call.started_at))
        del self.calls[call.linkedid]

    def _sync_hold(self, call: Call) -> None:
        """Open or close the call's hold interval from its legs' hold flags."""
        held = any(channel.on_hold for channel in call.channels.values())
        if held and not call.on_hold:
            call.on_hold = True
            call.holds.append(HoldInterval(self._clock.seconds()))
            self._transition(call, "hold")
        elif not held and call.on_hold:
            self._close_hold(call, self._clock.seconds())
            self._transition(call, "retrieve")

    @staticmethod
    def _close_hold(call: Call, now: float) -> None:
        if call.on_hold:
            call.on_hold = False
            call.holds[-1] = HoldInterval(call.holds[-1].start, now)

    def _transition(self, call: Call, trigger: str) -> None:
        new = TRANSITIONS.get((call.state, trigger))
        if new is not None:
            old, call.state = call.state, new
            if self._trace is not None:
                self._trace(call.linkedid, old, trigger, new)

    def _publish(self, event: CallEvent) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                self.log.failure("call model subscriber {subscriber!r} failed on {event!r}",
                                 subscriber=subscriber, event=event)

    # -- resynchronisation ------------------------------------------------------

    def rebuild(self, channels: Iterable[AMIEvent], bridges: Iterable[AMIEvent] = ()) -> None:
        """Replace the view with a ``CoreShowChannels`` (+ ``BridgeList``) snapshot after (re)connecting.

        Channels gone from the snapshot are removed (``LegRemoved`` with cause
        None; ``CallEnded`` with cause None when their call has no leg left).
        Known calls keep their identity and are not announced again; calls
        seen for the first time get ``CallStarted`` then ``CallAnswered`` when
        two Up legs share a bridge.  Times of new channels and calls are
        estimated as now minus ``Duration`` (answered: when the younger of the
        bridged legs was created).  A leg running ``Queue`` puts its call in
        the ``queued`` state with the queue named by ``ApplicationData``.
        """
        now = self._clock.seconds()
        items = [item for item in channels if item.get("Uniqueid")]
        present = {item.get("Uniqueid") for item in items}
        for channel in [c for c in self.channels.values() if c.uniqueid not in present]:
            self._remove(channel, self.calls[channel.linkedid], None, None, now, disconnected=True)
        queued: dict[str, str | None] = {}
        for item in items:
            channel = self._resync_channel(item, now)
            if item.get("Application") == "Queue":
                queued[channel.linkedid] = (item.get("ApplicationData") or "").split(",")[0] or None
        self._resync_bridges(items, bridges)
        for call in list(self.calls.values()):
            if not call.announced:
                self._announce(call)
            self._resync_state(call, queued)

    def _resync_channel(self, item: AMIEvent, now: float) -> Channel:
        uniqueid = item.get("Uniqueid") or ""
        channel = self.channels.get(uniqueid)
        if channel is None:
            created = now - duration_seconds(item.get("Duration"))
            channel = self._create(item, _PLAIN, uniqueid, item.get("Linkedid") or uniqueid, created)
            call = self._attach(channel)
            if not call.announced:
                call.started_at = min(call.started_at, created)
            return channel
        linkedid = item.get("Linkedid")
        if linkedid and linkedid != channel.linkedid:
            self._relink(channel, linkedid)
        channel.state = to_int(item.get("ChannelState"))
        channel.state_desc = state_desc(channel.state, item)
        channel.caller_num = item.get("CallerIDNum")
        channel.connected_num = item.get("ConnectedLineNum")
        if channel.state == UP and channel.answered_at is None:
            channel.answered_at = now
        return channel

    def _resync_bridges(self, items: list[AMIEvent], bridges: Iterable[AMIEvent]) -> None:
        self.bridges = {}
        for item in bridges:
            self._bridge(item)
        for channel in self.channels.values():
            channel.bridge_id = None
        for item in items:
            bridge_id = item.get("BridgeId")
            if bridge_id:
                bridge = self.bridges.setdefault(bridge_id, Bridge(bridge_id))
                self._join(self.channels[item.get("Uniqueid") or ""], bridge)

    def _resync_state(self, call: Call, queued: dict[str, str | None]) -> None:
        if call.linkedid in queued:
            call.queue = queued[call.linkedid] or call.queue
            self._transition(call, "queue_join")
        elif call.state is CallState.QUEUED:
            self._transition(call, "queue_leave")
        up = [channel for channel in call.channels.values() if channel.state == UP
              and channel.bridge_id is not None and self.bridges[channel.bridge_id].talking]
        if len(up) >= 2:
            if call.answered_at is None:
                call.answered_at = max(channel.created_at for channel in up)
                self._publish(CallAnswered(call.linkedid, call.answered_at))
            self._transition(call, "bridged")
        elif call.state in (CallState.CONNECTED, CallState.HELD) and not self._talking(call):
            self._transition(call, "unbridged")
