"""The books of the call model: live calls, channels and bridges, kept consistent.

:class:`CallBook` holds what :class:`ctid.calls.CallModel` knows and the
operations every event handler builds on: find or create the channel of a
snapshot block, attach it to the call of its Linkedid, re-link it (merging
calls), announce a call, remove a leg (ending its call), keep bridge
membership, hold intervals and the call state machine, and publish the
domain events.  The rules these follow are listed in :mod:`ctid.calls`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.logger import Logger

from ctid.callevents import (
    UP,
    Bridge,
    Call,
    CallAnswered,
    CallEnded,
    CallEvent,
    CallsMerged,
    CallStarted,
    CallState,
    Channel,
    HoldInterval,
    LegAdded,
    LegRemoved,
    c_unescape,
    known,
    state_desc,
    to_int,
)

__all__ = ["KEYS", "TRANSITIONS", "AMIEvent", "CallBook", "Clock", "Subscriber", "Trace"]

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


class CallBook:
    """Live calls, channels and bridges, and the bookkeeping that keeps them consistent.

    ``clock`` gives the time; ``trace(call_id, old, trigger, new)`` is called
    on every state change when given.  Subclasses turn AMI events into calls
    of the methods here.
    """

    log = Logger()

    def __init__(self, clock: Clock, trace: Trace | None = None):
        self._clock = clock
        self._trace = trace
        self._subscribers: tuple[Subscriber, ...] = ()
        self._names: dict[str, str] = {}
        #: Live calls by call id (the Linkedid).  Ended calls are dropped.
        self.calls: dict[str, Call] = {}
        #: Live channels by Uniqueid.
        self.channels: dict[str, Channel] = {}
        #: Live bridges by BridgeUniqueid.
        self.bridges: dict[str, Bridge] = {}

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
