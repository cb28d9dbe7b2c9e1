"""Call records: ``call_records``, ``call_legs``, ``recordings``, ``queue_events`` and ``all_busy_log`` rows.

:class:`CallRecorder` follows the call model's events and the agent board,
and reads the call center's deliveries (``center.deliveries``: the queue,
the agent, when the call was queued) right after the center has handled
the same event — it subscribes after the center, and board records come
while the center acts.  So it sees, per call: queued (``enqueue``, and an
``all_busy_log`` wait when no agent was free), offered to an agent
(``offer``), answered (``answer``), given back to the queue after a ring
with no answer or an unreachable phone (``requeue``), moved to another
queue (``overflow``), sent out of the queue by a route rule (``external``)
or left by the caller (``abandon``).  A call waiting past its queue's
``max_wait`` is recorded when it happens (``timeout``; the center calls
:meth:`CallRecorder.expired` through its ``on_expired`` hook), and what the
overflow rule then did with it — another queue (``overflow``), out of the
queue (``external``), or nothing (it waits on) — right after, in the same
turn of the reactor.

The call record is written when the call ends — or, when an agent
handled it, when the agent's wrap-up ends, so ``wrap_up_s`` is known.
IVR flows may set ``CTID_IVR_PATH`` (nodes visited, ``>`` between) and
``CTID_SATISFACTION`` (1..5) on the caller's channel; ``CTID_CUSTOMER``
names the customer.  The agent classifies the call (``category``, see
:mod:`ctid.wrapup`) while handling it or in its wrap-up, before the record
is written.  DTMF digits are never recorded (they may be PINs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ctid.calls import (
    CallEnded,
    CallsMerged,
    CallStarted,
    LegAdded,
    LegRemoved,
    RecordingStarted,
    RecordingStopped,
    VariableSet,
)
from ctid.records import AgentStateRecorder, Clock, RecordSink, guarded

_VARIABLES = {"CTID_IVR_PATH": "ivr_path", "CTID_SATISFACTION": "satisfaction", "CTID_CUSTOMER": "customer_id"}


@dataclass
class _Queued:
    """What the queue did with a call."""

    queue: str
    queued_at: float
    priority: int | None
    city: str | None
    agent_id: str | None = None  # offered to
    answered_by: str | None = None
    answered_at: float | None = None
    busy_since: float | None = None  # an all-busy wait is running
    left: bool = False  # sent out of the queue (external, IVR, voicemail)


@dataclass
class _Call:
    """What the recorder keeps about one live call."""

    started_at: float
    ani: str | None
    dnis: str | None
    trunk: str | None = None
    first_leg: str | None = None
    hangup_side: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    queued: _Queued | None = None
    recordings: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    category: str | None = None  # the agent's wrap-up classification


def _device(channel: str) -> str:
    """``PJSIP/1001-00000002`` → ``PJSIP/1001``."""
    return channel.rsplit("-", 1)[0]


class CallRecorder:
    """Turns call-model events, board records and the center's deliveries into rows (see the module doc)."""

    def __init__(self, model: Any, board: Any, center: Any, sink: RecordSink, clock: Clock,
                 agents: AgentStateRecorder | None):
        self.model, self.board, self.center, self.sink, self.clock, self.agents = (
            model, board, center, sink, clock, agents)
        self._calls: dict[str, _Call] = {}
        self._legs: dict[str, tuple[str, Any, str | None]] = {}  # uniqueid -> (call id, channel, agent id)
        self._after_wrap_up: dict[tuple[str, str], dict[str, Any]] = {}  # (call, agent) -> call row
        self._handlers: dict[type, Callable[[Any], None]] = {
            CallStarted: self._started, LegAdded: self._leg_added, LegRemoved: self._leg_removed,
            VariableSet: self._variable,
            RecordingStarted: self._recording_started, RecordingStopped: self._recording_stopped,
            CallEnded: self._ended, CallsMerged: self._merged,
        }
        model.subscribe(self.event)
        if board is not None:
            board.subscribe(self.agent_record)
        if agents is not None:
            agents.on_wrap_up_done = self._wrap_up_done
        if center is not None:
            center.on_expired.append(self.expired)

    # -- the call model ---------------------------------------------------------------------------------

    @guarded
    def event(self, event: Any) -> None:
        """Follow one call-model event."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)
        call_id = getattr(event, "call_id", None)
        if call_id is not None and call_id in self._calls and not isinstance(event, CallEnded):
            self._follow_queue(call_id)

    def _started(self, event: CallStarted) -> None:
        self._calls[event.call_id] = _Call(event.at, event.ani, event.dnis)

    def _leg_added(self, event: LegAdded) -> None:
        call = self._calls.get(event.call_id)
        if call is None:
            return
        if call.first_leg is None:
            call.first_leg, call.trunk = event.uniqueid, _device(event.channel)
        agent = self.board.by_station(_device(event.channel)) if self.board is not None else None
        channel = self.model.channels.get(event.uniqueid)
        self._legs[event.uniqueid] = (event.call_id, channel, agent.agent_id if agent else None)

    def _leg_removed(self, event: LegRemoved) -> None:
        call_id, channel, agent_id = self._legs.pop(event.uniqueid, (None, None, None))
        call = self._calls.get(event.call_id)
        if call is not None and call.hangup_side is None and event.cause is not None:
            call.hangup_side = self._side(call, event.uniqueid, agent_id)
        if channel is None:
            return
        self.sink.write("call_legs", {
            "call_id": event.call_id, "uniqueid": event.uniqueid, "channel": channel.name, "agent_id": agent_id,
            "joined_at": channel.created_at, "answered_at": channel.answered_at, "left_at": self.clock.seconds(),
            "hangup_cause": event.cause,
        })

    @staticmethod
    def _side(call: _Call, uniqueid: str, agent_id: str | None) -> str | None:
        """Who hung up, when leg ``uniqueid`` left first: the caller, the agent talking, or nobody yet.

        An agent's leg that rang without being answered ends nothing.
        """
        if uniqueid == call.first_leg:
            return "caller"
        if agent_id is not None and call.queued is not None and call.queued.answered_by == agent_id:
            return "agent"
        return None

    def _variable(self, event: VariableSet) -> None:
        call = self._calls.get(event.call_id)
        if call is not None and event.name in _VARIABLES:
            call.variables[_VARIABLES[event.name]] = event.value

    def _recording_started(self, event: RecordingStarted) -> None:
        call = self._calls.get(event.call_id)
        if call is not None:
            call.recordings[event.uniqueid] = (self.clock.seconds(), event.filename)

    def _recording_stopped(self, event: RecordingStopped) -> None:
        call = self._calls.get(event.call_id)
        if call is not None and event.uniqueid in call.recordings:
            self._write_recording(event.call_id, call, event.uniqueid, event.filename)

    def _write_recording(self, call_id: str, call: _Call, uniqueid: str, filename: str | None) -> None:
        started, first_name = call.recordings.pop(uniqueid)
        now = self.clock.seconds()
        agent_id = call.queued.answered_by if call.queued else None
        agent = self.board.get(agent_id) if agent_id and self.board is not None else None
        self.sink.write("recordings", {
            "call_id": call_id, "uniqueid": uniqueid, "agent_id": agent_id, "ani": call.ani,
            "extension": agent.station if agent is not None else call.dnis, "filename": filename or first_name,
            "started_at": started, "stopped_at": now, "duration_s": max(0.0, now - started),
        })

    def _merged(self, event: CallsMerged) -> None:
        self._calls.pop(event.old_call_id, None)

    def _ended(self, event: CallEnded) -> None:
        call = self._calls.pop(event.call_id, None)
        if call is None:
            return
        for uniqueid in list(call.recordings):
            self._write_recording(event.call_id, call, uniqueid, None)
        queued = call.queued
        if queued is not None and queued.answered_by is None and not queued.left:
            self._queue_event("abandon", event.call_id, queued, event.at)
            self._end_busy(event.call_id, call, "abandoned", event.at)
        row = self._call_row(event, call, self.model.snapshot(event.call_id))
        agent_id = row["agent_id"]
        if agent_id and self.agents is not None and self.agents.in_wrap_up(agent_id, event.call_id):
            self._after_wrap_up[(event.call_id, agent_id)] = row
        else:
            self.sink.write("call_records", row | {"wrap_up_s": 0.0 if agent_id else None})

    def _call_row(self, event: CallEnded, call: _Call, snapshot: Any) -> dict[str, Any]:
        queued = call.queued
        answered_at = snapshot.answered_at if snapshot is not None else None
        agent_answered = queued is not None and queued.answered_by is not None
        wait = None
        if queued is not None:
            end = queued.answered_at if agent_answered and queued.answered_at is not None else event.at
            wait = end - queued.queued_at
        satisfaction = call.variables.get("satisfaction", "")
        return {
            "call_id": event.call_id, "ani": call.ani, "dnis": call.dnis, "trunk": call.trunk,
            "queue": queued.queue if queued else None, "agent_id": queued.answered_by if queued else None,
            "customer_id": call.variables.get("customer_id") or None, "city": queued.city if queued else None,
            "priority": queued.priority if queued else None, "arrived_at": call.started_at,
            "queued_at": queued.queued_at if queued else None, "answered_at": answered_at, "ended_at": event.at,
            "wait_s": None if wait is None else max(0.0, wait),
            "talk_s": max(0.0, event.at - answered_at) if answered_at is not None else 0.0,
            "hold_s": snapshot.held_seconds if snapshot is not None else 0.0,
            "hangup_side": call.hangup_side or "system", "hangup_cause": event.cause,
            "ivr_path": call.variables.get("ivr_path", ""), "self_service": queued is None,
            "abandoned": queued is not None and not agent_answered and not queued.left,
            "transfers": len(snapshot.transfers) if snapshot is not None else 0,
            "satisfaction": int(satisfaction) if satisfaction.isdigit() and 1 <= int(satisfaction) <= 5 else None,
            "category": call.category,
        }

    def _wrap_up_done(self, call_id: str, agent_id: str, seconds: float) -> None:
        row = self._after_wrap_up.pop((call_id, agent_id), None)
        if row is not None:
            self.sink.write("call_records", row | {"wrap_up_s": seconds})

    def categorize(self, agent_id: str, category: str) -> str | None:
        """Set the wrap-up category of ``agent_id``'s last call; returns its id (None: no call to classify).

        The last call is the one in wrap-up (its record is written when the
        wrap-up ends), else the queued call the agent is handling now.
        """
        for (call_id, agent), row in reversed(self._after_wrap_up.items()):
            if agent == agent_id:
                row["category"] = category
                return call_id
        for call_id, call in reversed(self._calls.items()):
            if call.queued is not None and call.queued.answered_by == agent_id:
                call.category = category
                return call_id
        return None

    def close(self) -> None:
        """Write the call records still waiting for a wrap-up to end."""
        for row in self._after_wrap_up.values():
            self.sink.write("call_records", row)
        self._after_wrap_up.clear()

    # -- the queue, read off the center --------------------------------------------------------------------

    @guarded
    def agent_record(self, record: Any) -> None:
        """Board records: offers (reserve), answers and requeues (lock, offer withdrawn) of queued calls."""
        call_id = getattr(record, "call_id", None)
        if call_id is None or call_id not in self._calls:
            return
        self._follow_queue(call_id, record)

    def _follow_queue(self, call_id: str, record: Any = None) -> None:
        """Compare what the center does with ``call_id`` now with what was recorded, and record the news."""
        call = self._calls[call_id]
        delivery = self.center.deliveries.get(call_id) if self.center is not None else None
        queued = call.queued
        now = self.clock.seconds()
        if delivery is None:
            if queued is not None and queued.answered_by is None and not queued.left:  # a route rule sent it out
                queued.left = True
                self._queue_event("external", call_id, queued, now)
                self._end_busy(call_id, call, "external", now)
            return
        waiting = delivery.waiting
        if queued is None:
            enqueued = waiting.enqueued_at if waiting.enqueued_at is not None else now
            queued = call.queued = _Queued(waiting.queue, enqueued, waiting.priority, waiting.city)
            self._queue_event("enqueue", call_id, queued, enqueued, position=self._position(waiting.queue))
            if record is None and delivery.agent_id is None:
                queued.busy_since = enqueued
        elif waiting.queue != queued.queue:
            self._queue_event("overflow", call_id, queued, now, detail=f"to {waiting.queue}")
            queued.queue = waiting.queue
        trigger = getattr(record, "trigger", None)
        if trigger == "reserve":
            queued.agent_id = record.agent_id
            self._queue_event("offer", call_id, queued, record.at, agent_id=record.agent_id)
            self._end_busy(call_id, call, "offered", record.at)
        elif trigger == "answer" and queued.answered_by is None:
            queued.answered_by, queued.answered_at = record.agent_id, record.at
            self._queue_event("answer", call_id, queued, record.at, agent_id=record.agent_id)
        elif trigger in ("lock", "offer_cancelled") and queued.answered_by is None:
            self._queue_event("requeue", call_id, queued, record.at, agent_id=record.agent_id,
                              detail="no answer" if trigger == "lock" else "offer withdrawn")

    @guarded
    def expired(self, call_id: str, queue: str) -> None:
        """The center's hook: ``call_id`` waited in ``queue`` past its ``max_wait``; its route rule acts next."""
        call = self._calls.get(call_id)
        if call is None or call.queued is None:
            return
        self._queue_event("timeout", call_id, call.queued, self.clock.seconds(), detail=f"max_wait of {queue}")
        self.clock.callLater(0, self._after_expiry, call_id)

    @guarded
    def _after_expiry(self, call_id: str) -> None:
        if call_id in self._calls:
            self._follow_queue(call_id)

    def _position(self, queue: str) -> int | None:
        acd = getattr(self.center, "acd", None)
        try:
            return acd.queue_length(queue) if acd is not None else None
        except KeyError:
            return None

    def _queue_event(self, kind: str, call_id: str, queued: _Queued, at: float, agent_id: str | None = None,
                     position: int | None = None, detail: str = "") -> None:
        self.sink.write("queue_events", {
            "at": at, "queue": queued.queue, "call_id": call_id, "kind": kind, "agent_id": agent_id,
            "wait_s": max(0.0, at - queued.queued_at), "position": position, "priority": queued.priority,
            "detail": detail,
        })

    def _end_busy(self, call_id: str, call: _Call, outcome: str, at: float) -> None:
        queued = call.queued
        if queued is None or queued.busy_since is None:
            return
        started, queued.busy_since = queued.busy_since, None
        self.sink.write("all_busy_log", {
            "call_id": call_id, "queue": queued.queue, "ani": call.ani, "started_at": started, "ended_at": at,
            "wait_s": max(0.0, at - started), "outcome": outcome,
        })
