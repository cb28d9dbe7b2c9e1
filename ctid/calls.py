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

from ctid.callbook import KEYS, TRANSITIONS, AMIEvent, Clock, Subscriber, Trace
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
    VariableSet,
    c_unescape,
    known,
    oldest_linkedid,
    state_desc,
    to_int,
)
from ctid.calllog import CallLogger
from ctid.callsync import CallSync

__all__ = [
    "TRANSITIONS",
    "AMIEvent",
    "Bridge",
    "Call",
    "CallAnswered",
    "CallEnded",
    "CallEvent",
    "CallLogger",
    "CallModel",
    "CallStarted",
    "CallState",
    "CallsMerged",
    "Channel",
    "Clock",
    "HoldInterval",
    "LegAdded",
    "LegRemoved",
    "VariableSet",
]

DTMF_KEEP = 128
VARIABLE_PREFIX = "CTID_"
DEFAULT_VARIABLES = frozenset({"MIXMONITOR_FILENAME"})


class CallModel(CallSync):
    """Live calls, channels and bridges of one switch, kept from its AMI events.

    ``clock`` gives the time (``IReactorTime``); ``variables`` names channel
    variables to keep besides ``CTID_*``; ``trace(call_id, old, trigger, new)``
    is called on every state change when given.  The model only logs
    failures; :class:`ctid.calllog.CallLogger` tells the story of each call.
    The bookkeeping is inherited from :class:`ctid.callbook.CallBook`,
    :meth:`rebuild` from :class:`ctid.callsync.CallSync`.
    """

    def __init__(self, clock: Clock, variables: Iterable[str] = (), trace: Trace | None = None):
        super().__init__(clock, trace)
        self._variables = DEFAULT_VARIABLES | frozenset(variables)
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
            "AGIExecStart": self._on_agi_command,
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
            value = channel.variables[name] = event.get("Value") or ""
            call = self.calls[channel.linkedid]
            self._maybe_announce(call)
            if call.announced:
                self._publish(VariableSet(call.linkedid, channel.uniqueid, name, value))

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
        if channel is not None and call is not None and not channel.on_hold:
            channel.on_hold = True
            self._publish(CallHeld(call.linkedid, channel.uniqueid))
            self._sync_hold(call)

    def _on_unhold(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is not None and call is not None and channel.on_hold:
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

    def _on_agi_command(self, event: AMIEvent) -> None:
        channel, _ = self._leg(event)
        if channel is not None:
            channel.in_ivr = True

    def _on_dtmf_end(self, event: AMIEvent) -> None:
        if event.get("Direction") != "Received":
            return
        digit = event.get("Digit") or ""
        channel, call = self._leg(event)
        if channel is None or call is None or not digit or channel.in_ivr:
            return  # keys typed into ctid's IVR (card numbers, passwords) are not the model's to keep
        channel.dtmf = (channel.dtmf + digit)[-DTMF_KEEP:]
        call.dtmf = (call.dtmf + digit)[-DTMF_KEEP:]
        self._publish(DigitsReceived(call.linkedid, channel.uniqueid, digit))

    def _on_user_event(self, event: AMIEvent) -> None:
        if event.get("UserEvent") != "CtidDeliveryFailed":
            return
        channel, call = self._leg(event)
        if channel is not None and call is not None:
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
        if channel is None or call is None:
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
        if channel is None or call is None:
            return
        call.abandoned = call.abandoned or abandoned
        if call.state is CallState.QUEUED:
            self._transition(call, "queue_leave")
            self._publish(QueueLeft(call.linkedid, channel.uniqueid, event.get("Queue"), abandoned))

    def _on_confbridge_join(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is not None and call is not None:
            channel.conference = call.conference = event.get("Conference")
            self._publish(ConferenceJoined(call.linkedid, channel.uniqueid, channel.conference))

    def _on_confbridge_leave(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is not None and call is not None:
            channel.conference = None
            if not any(leg.conference for leg in call.channels.values()):
                call.conference = None
            self._publish(ConferenceLeft(call.linkedid, channel.uniqueid, event.get("Conference")))

    def _on_mixmonitor_start(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is None or call is None:
            return
        channel.recording = True
        filename = channel.variables.get("MIXMONITOR_FILENAME")
        call.recordings.append(Recording(channel.uniqueid, self._clock.seconds(), None, filename))
        self._publish(RecordingStarted(call.linkedid, channel.uniqueid, filename))

    def _on_mixmonitor_stop(self, event: AMIEvent) -> None:
        channel, call = self._leg(event)
        if channel is None or call is None:
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
        channel.in_ivr = False
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
