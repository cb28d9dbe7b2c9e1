"""The supervisors' live view of the floor over CTI (SV-2), limited to each supervisor's scope (SV-4).

Commands (supervisors only, audited; docs/cti-protocol.md has the wire format):

- ``SnapshotFloor`` — the calls with their lines (channels), the agents,
  and the queues the supervisor manages, now.
- ``SubscribeFloor`` — the same snapshot, and from then on the events below
  for what the supervisor manages; ``UnsubscribeFloor`` stops them.

Events: ``FloorCallChanged`` (a call and its lines; ``ended`` true when it is
over), ``FloorAgentChanged`` (an agent's new state) and ``FloorQueueChanged``
(a queue's waiting calls, longest wait, estimate and service level today).
Each event is encoded once and sent to exactly the subscribed supervisors
whose scope covers it.  A call is covered when an agent on it is, or the
queue (and caller city) it waits in; a call with neither (in the IVR, an
outbound trunk call) only by a supervisor managing ``*``.  Times are epoch
seconds; a client computes "for how long" against the ``at`` of the event
(snapshots also carry the durations).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ctid.acd import QueueConfig
from ctid.agentstate import AgentTransition
from ctid.calls import CallAnswered, CallEnded, DigitsReceived, VariableSet
from ctid.desk import agent_view
from ctid.floorviewstats import ServiceLevels
from ctid.protocols.ctiapi import CommandRouter, CTISession, broadcast
from ctid.scope import Scope, SupervisorGate

#: At most this many waiting calls are listed per queue (``more`` says how many were left out).
MAX_LISTED = 50
_QUIET = (VariableSet, DigitsReceived)


@dataclass(frozen=True)
class _Owners:
    """Who a call belongs to: the agents on it, the queue it waits in (group) and the caller's city."""

    agents: tuple[Any, ...] = ()
    group: str | None = None
    city: str | None = None

    def covered_by(self, scope: Scope) -> bool:
        if scope.everything or any(scope.covers_agent(agent) for agent in self.agents):
            return True
        return self.group is not None and scope.covers_waiting(self.group, self.city)


class FloorView:
    """Live view and subscriptions, fed by the call model, the agent board and the center's deliveries."""

    def __init__(self, gate: SupervisorGate, board: Any, model: Any, center: Any, queues: Iterable[QueueConfig],
                 clock: Any, levels: ServiceLevels | None = None):
        self.gate, self.board, self.model, self.center, self.clock = gate, board, model, center, clock
        self.queues = {queue.name: queue for queue in queues}
        self.levels = levels or ServiceLevels()
        self.subscribers: dict[CTISession, Scope] = {}
        self._owners: dict[str, _Owners] = {}
        self._sent: dict[str, dict[str, Any]] = {}
        model.subscribe(self._on_call_event)
        board.subscribe(self._on_agent_record)

    def register(self, router: CommandRouter) -> None:
        """Add SnapshotFloor, SubscribeFloor and UnsubscribeFloor to ``router``."""
        router.add("SnapshotFloor", self.gate.guard("SnapshotFloor", self.snapshot))
        router.add("SubscribeFloor", self.gate.guard("SubscribeFloor", self.subscribe))
        router.add("UnsubscribeFloor", self.gate.guard("UnsubscribeFloor", self.unsubscribe))

    # -- commands ---------------------------------------------------------------------------------------

    def snapshot(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Everything in ``scope`` now."""
        now = self.clock.seconds()
        calls = [self._call_view(call, now) for call in list(self.model.calls.values())
                 if call.channels and self._owners_of(call).covered_by(scope)]
        agents = [self._agent_view(agent, now) for agent in self.board.all()
                  if agent.state.value != "logged_out" and scope.covers_agent(agent)]
        by_state: dict[str, int] = {}
        for agent in agents:
            by_state[agent["state"]] = by_state.get(agent["state"], 0) + 1
        queues = [self._queue_view(name, now) for name, queue in self.queues.items() if scope.covers_queue(queue.group)]
        return {"at": now, "scope": {"groups": sorted(scope.groups), "cities": sorted(scope.cities),
                                     "everything": scope.everything},
                "calls": calls, "lines": sum(len(call["lines"]) for call in calls), "agents": agents,
                "agents_by_state": by_state, "queues": queues}

    def subscribe(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Send this session the floor events of ``scope`` from now on; answers with a snapshot."""
        self.subscribers[session] = scope
        return {**self.snapshot(session, args, scope), "subscribed": True}

    def unsubscribe(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Stop the floor events for this session."""
        return {"subscribed": False, "was_subscribed": self.subscribers.pop(session, None) is not None}

    def queues_changed(self, *names: str) -> None:
        """A supervisor changed ``names``' waiting calls (priority, move): send their new views."""
        self._refresh_queues(names)

    # -- views ------------------------------------------------------------------------------------------

    def _owners_of(self, call: Any) -> _Owners:
        agents = []
        for channel in call.channels.values():
            agent = self.board.by_station(channel.name.rsplit("-", 1)[0])
            if agent is not None and agent not in agents:
                agents.append(agent)
        delivery = self.center.deliveries.get(call.call_id)
        group = city = None
        if delivery is not None:
            waiting = delivery.waiting
            queue = self.queues.get(waiting.queue)
            group, city = (queue.group if queue else waiting.queue), waiting.city
            if delivery.agent_id is not None:
                agent = self.board.get(delivery.agent_id)
                if agent is not None and agent not in agents:
                    agents.append(agent)
        return _Owners(tuple(agents), group, city)

    def _call_view(self, call: Any, now: float | None = None) -> dict[str, Any]:
        delivery = self.center.deliveries.get(call.call_id)
        owners = self._owners_of(call)
        return {
            "call": call.call_id, "state": call.state.value, "ani": call.ani, "dnis": call.dnis,
            "started_at": call.started_at, "answered_at": call.answered_at,
            "queue": delivery.waiting.queue if delivery is not None else None,
            "agents": [agent.agent_id for agent in owners.agents],
            "lines": [self._line_view(channel, now) for channel in call.channels.values()],
            "ended": False,
        }

    def _line_view(self, channel: Any, now: float | None) -> dict[str, Any]:
        agent = self.board.by_station(channel.name.rsplit("-", 1)[0])
        view = {
            "uniqueid": channel.uniqueid, "channel": channel.name,
            "state": channel.state_desc or ("Up" if channel.state == 6 else str(channel.state)),
            "caller": channel.caller_num, "connected": channel.connected_num, "since": channel.created_at,
            "connected_since": channel.answered_at, "on_hold": channel.on_hold,
            "agent": agent.agent_id if agent is not None else None,
        }
        if now is not None:
            view["connected_for"] = None if channel.answered_at is None else round(now - channel.answered_at, 1)
        return view

    @staticmethod
    def _agent_view(agent: Any, now: float) -> dict[str, Any]:
        return {**agent_view(agent), "time_in_state": round(now - agent.state_since, 1)}

    def _queue_view(self, name: str, now: float) -> dict[str, Any]:
        acd, queue = self.center.acd, self.queues[name]
        waiting = acd.waiting(name)
        oldest = min((call.enqueued_at for call in waiting if call.enqueued_at is not None), default=None)
        estimate = acd.estimated_queue_wait(name)
        calls = [{"call": call.call_id, "caller": call.caller, "priority": call.priority, "position": position,
                  "since": call.enqueued_at, "city": call.city,
                  "estimated_wait": _rounded(acd.estimated_wait(call.call_id))}
                 for position, call in enumerate(waiting[:MAX_LISTED], start=1)]
        return {
            "queue": name, "group": queue.group, "waiting": len(waiting), "oldest_since": oldest,
            "longest_wait": None if oldest is None else round(now - oldest, 1),
            "estimated_wait": _rounded(estimate), "serving": acd.serving(queue.group),
            "all_busy": acd.all_busy(name), "service_level": self.levels.view(name, now), "calls": calls,
            "more": max(0, len(waiting) - MAX_LISTED),
        }

    # -- events -----------------------------------------------------------------------------------------

    def _entitled(self, covered: Any) -> list[CTISession]:
        gone = [s for s in self.subscribers if s.ended or s.identity is None]
        for session in gone:
            del self.subscribers[session]
        return [session for session, scope in self.subscribers.items() if covered(scope)]

    def _on_call_event(self, event: Any) -> None:
        call_id = getattr(event, "call_id", None)
        if call_id is None:
            return
        queue = self._follow_levels(event, call_id)
        if not self.subscribers:
            return
        call = self.model.calls.get(call_id)
        if isinstance(event, CallEnded) or call is None:
            owners = self._owners.pop(call_id, None)
            if owners is not None:
                broadcast(self._entitled(owners.covered_by), "FloorCallChanged", {"call": call_id, "ended": True})
        else:
            self._call_changed(call, quiet=isinstance(event, _QUIET))
        if queue is not None:
            self._refresh_queues((queue,))

    def _call_changed(self, call: Any, quiet: bool) -> None:
        """Send the call's view; when its owners changed, tell those no longer entitled that it left their scope."""
        previous = self._owners.get(call.call_id)
        owners = self._owners[call.call_id] = self._owners_of(call)
        if quiet and owners == previous:
            return
        sessions = self._entitled(owners.covered_by)
        broadcast(sessions, "FloorCallChanged", self._call_view(call))
        if previous is not None and previous != owners:
            gone = [session for session in self._entitled(previous.covered_by) if session not in sessions]
            broadcast(gone, "FloorCallChanged", {"call": call.call_id, "ended": False, "left_scope": True})

    def _follow_levels(self, event: Any, call_id: str) -> str | None:
        """Feed the service-level counters; returns the queue the call is (or was) in, if any."""
        delivery = self.center.deliveries.get(call_id)
        if delivery is not None:
            waiting = delivery.waiting
            self.levels.waiting(call_id, waiting.queue, waiting.enqueued_at or self.clock.seconds())
            if isinstance(event, CallAnswered) and delivery.answered_at is not None:
                self.levels.answered(call_id, delivery.answered_at)
            return waiting.queue
        queue = self.levels.queue_of(call_id)
        if isinstance(event, CallEnded):
            self.levels.ended(call_id, event.at)
        else:
            self.levels.forget(call_id)
        return queue

    def _on_agent_record(self, record: Any) -> None:
        if not self.subscribers:
            return
        agent = self.board.get(record.agent_id)
        if isinstance(record, AgentTransition):
            data = {**self._agent_view(agent, record.at), "previous": record.old.value, "trigger": record.trigger,
                    "forced_by": record.forced_by}
            broadcast(self._entitled(lambda scope: scope.covers_agent(agent)), "FloorAgentChanged", data)
        names = [name for name, queue in self.queues.items() if queue.group in agent.skills]
        call_id = getattr(record, "call_id", None)
        delivery = self.center.deliveries.get(call_id) if call_id is not None else None
        if delivery is not None and delivery.waiting.queue not in names:
            names.append(delivery.waiting.queue)
        self._refresh_queues(names)

    def _refresh_queues(self, names: Iterable[str]) -> None:
        if not self.subscribers:
            return
        now = self.clock.seconds()
        for name in names:
            queue = self.queues.get(name)
            if queue is None:
                continue
            view = self._queue_view(name, now)
            steady = {key: value for key, value in view.items() if key != "longest_wait"}
            if self._sent.get(name) == steady:
                continue
            self._sent[name] = steady
            broadcast(self._entitled(lambda scope, group=queue.group: scope.covers_queue(group)),
                      "FloorQueueChanged", view)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)
