"""Supervisor (班长) commands on the CTI protocol (SV-1): monitor, force release, force agent states, queued calls.

Every command needs the ``supervisor`` role and reaches only the agents,
queues and calls of the supervisor's scope (:mod:`ctid.scope`); each one,
allowed or refused, is written to the audit log.  docs/supervisors.md has
the details and docs/cti-protocol.md the wire format.

- ``MonitorCall {agent, mode}`` — ring the supervisor's station into
  ChanSpy on the agent's leg of their call: ``listen`` (silent), ``whisper``
  (coach: only the agent hears the supervisor) or ``barge`` (both hear).
- ``SetMonitorMode {monitor, mode}`` — switch a running monitor's mode
  (ChanSpy ``d``: the switch plays DTMF 4/5/6 as if keyed by the supervisor,
  who may also key them on the phone).
- ``StopMonitor {monitor}`` — hang up the supervisor's monitoring leg.
- ``ForceRelease {agent}`` — hang up every leg of the agent's call (强拆).
- ``ForcePause {agent, reason?}``, ``ForceLogout {agent}``,
  ``UnlockAgent {agent}`` — the agent's state, with ``forced_by``; a forced
  sign-out also ends the agent's CTI sessions (``session_ended``,
  ``forced_logout``).
- ``SetCallPriority {call, priority}``, ``MoveCall {call, queue}`` — a call
  waiting in the ACD; a moved call is delivered at once if an agent is free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, overload

from twisted.logger import Logger

from ctid.acd import CHINA_AREA_CODES, QueueConfig
from ctid.agents import Agent
from ctid.agentstate import AgentStateError
from ctid.calls import CallEnded, LegRemoved
from ctid.floorview import FloorView
from ctid.floorviewstats import ServiceLevels
from ctid.interfaces import PBXError
from ctid.protocols.ctiapi import CommandRouter, CTIError, CTISession, require_login
from ctid.scope import Scope, SupervisorGate

log = Logger()

MODES = ("listen", "whisper", "barge")
MAX_PRIORITY = 1000
MAX_FIELD = 128
#: Q.850 16, normal clearing: the cause a forced release gives.
NORMAL_CLEARING = 16


@overload
def text_arg(args: dict[str, Any], name: str, required: Literal[True] = True) -> str: ...


@overload
def text_arg(args: dict[str, Any], name: str, required: bool) -> str | None: ...


def text_arg(args: dict[str, Any], name: str, required: bool = True) -> str | None:
    """``args[name]``: a non-empty string of at most 128 characters (None when optional and absent)."""
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
        raise CTIError("bad_request", f"{name} must be a non-empty string of at most {MAX_FIELD} characters")
    return value


def mode_arg(args: dict[str, Any]) -> str:
    """``args["mode"]``: one of :data:`MODES`."""
    mode = args.get("mode")
    if mode not in MODES:
        raise CTIError("bad_request", f"mode must be one of {', '.join(MODES)}")
    return mode


@dataclass
class Monitor:
    """One supervisor monitoring one agent's call; ``monitor`` is the supervisor leg's Uniqueid."""

    monitor: str
    supervisor: str
    agent: str
    call: str
    mode: str

    def view(self) -> dict[str, Any]:
        """As clients see it."""
        return {"monitor": self.monitor, "supervisor": self.supervisor, "agent": self.agent, "call": self.call,
                "mode": self.mode}


class Supervision:
    """The supervisor commands, on the agent board, the call model, the ACD (through the center) and the switch.

    ``center`` is the :class:`ctid.center.CallCenter` (its ``acd``,
    ``deliveries`` and ``deliver``); ``desk`` the
    :class:`ctid.desk.AgentDesk` (its ``sessions``).
    """

    def __init__(self, gate: SupervisorGate, board: Any, model: Any, center: Any, pbx: Any, desk: Any,
                 queues: Iterable[QueueConfig], on_queues_changed: Callable[..., None] = lambda *names: None):
        self.gate, self.board, self.model, self.center, self.pbx, self.desk = gate, board, model, center, pbx, desk
        self.on_queues_changed = on_queues_changed
        self.queues = {queue.name: queue for queue in queues}
        self.monitors: dict[str, Monitor] = {}
        model.subscribe(self._on_call_event)

    def register(self, router: CommandRouter) -> None:
        """Add the supervisor commands to ``router``."""
        for name, fn in (("MonitorCall", self.monitor_call), ("SetMonitorMode", self.set_monitor_mode),
                         ("StopMonitor", self.stop_monitor), ("ForceRelease", self.force_release),
                         ("ForcePause", self.force_pause), ("ForceLogout", self.force_logout),
                         ("UnlockAgent", self.unlock_agent), ("SetCallPriority", self.set_call_priority),
                         ("MoveCall", self.move_call)):
            router.add(name, self.gate.guard(name, fn))

    # -- agents and their calls -------------------------------------------------------------------------

    def _agent(self, args: dict[str, Any], scope: Scope) -> Agent:
        agent_id = text_arg(args, "agent")
        agent = self.board.get(agent_id)
        if agent is None or agent.state.value == "logged_out":
            raise CTIError("not_logged_in", f"agent {agent_id} is not signed in")
        if not scope.covers_agent(agent):
            raise CTIError("out_of_scope", f"agent {agent_id} is not in a group or city you manage")
        return agent

    def _legs(self, agent: Agent) -> tuple[Any, list[Any]]:
        """The agent's live channel and every live leg of its call (the agent's first); CTIError ``no_call``."""
        prefix = agent.station + "-"
        mine = [c for c in self.model.channels.values() if c.name.startswith(prefix) and c.hungup_at is None]
        mine.sort(key=lambda c: (c.linkedid != agent.call_id, -(c.answered_at or 0.0)))
        if not mine:
            raise CTIError("no_call", f"agent {agent.agent_id} has no call")
        channel = mine[0]
        call = self.model.calls.get(channel.linkedid)
        others = [leg for leg in call.channels.values() if leg is not channel] if call is not None else []
        return channel, [channel, *others]

    async def monitor_call(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Ring the supervisor's station into ChanSpy on the agent's leg, in ``mode``."""
        mode = mode_arg(args)
        agent = self._agent(args, scope)
        channel, _ = self._legs(agent)
        station = require_login(session)["station"]
        if channel.name.startswith(station + "-"):
            raise CTIError("bad_request", "you cannot monitor your own station")
        try:
            monitor_id = await self.pbx.spy(station, channel.uniqueid, mode, caller_id=f'"Monitor" <{agent.agent_id}>')
        except PBXError as e:
            raise CTIError("switch_error", str(e)) from None
        monitor = self.monitors[monitor_id] = Monitor(monitor_id, scope.supervisor, agent.agent_id,
                                                      channel.linkedid, mode)
        log.info("supervisor {supervisor} monitors agent {agent} ({mode})", supervisor=scope.supervisor,
                 agent=agent.agent_id, mode=mode)
        return monitor.view()

    def _monitor(self, args: dict[str, Any], scope: Scope) -> Monitor:
        monitor_id = text_arg(args, "monitor")
        monitor = self.monitors.get(monitor_id)
        if monitor is None:
            raise CTIError("unknown_monitor", f"no monitoring session {monitor_id}")
        if monitor.supervisor != scope.supervisor:
            raise CTIError("out_of_scope", "that monitoring session is another supervisor's")
        return monitor

    def _monitor_channel(self, monitor: Monitor) -> str:
        channel = self.model.channels.get(monitor.monitor)
        if channel is None or channel.hungup_at is not None:
            raise CTIError("monitor_not_ready", "the supervisor's phone has not answered yet")
        return channel.name

    async def set_monitor_mode(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Switch a running monitor to ``mode`` (DTMF 4/5/6 received on the supervisor's leg)."""
        mode = mode_arg(args)
        monitor = self._monitor(args, scope)
        try:
            await self.pbx.spy_mode(self._monitor_channel(monitor), mode)
        except PBXError as e:
            raise CTIError("switch_error", str(e)) from None
        monitor.mode = mode
        return monitor.view()

    async def stop_monitor(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Hang up the supervisor's monitoring leg."""
        monitor = self._monitor(args, scope)
        try:
            await self.pbx.hangup(self._monitor_channel(monitor))
        except PBXError as e:
            raise CTIError("switch_error", str(e)) from None
        self.monitors.pop(monitor.monitor, None)
        return monitor.view()

    async def force_release(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Hang up every live leg of the agent's call."""
        agent = self._agent(args, scope)
        channel, legs = self._legs(agent)
        released = []
        for leg in legs:
            try:
                await self.pbx.hangup(leg.name, NORMAL_CLEARING)
            except PBXError as e:  # a leg that went away meanwhile: the others still go
                log.info("force release of {channel}: {error}", channel=leg.name, error=str(e))
            else:
                released.append(leg.name)
        if not released:
            raise CTIError("no_call", f"agent {agent.agent_id}'s call is already over")
        log.info("supervisor {supervisor} released call {call} of agent {agent}", supervisor=scope.supervisor,
                 call=channel.linkedid, agent=agent.agent_id)
        return {"agent": agent.agent_id, "call": channel.linkedid, "released": released}

    def force_pause(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Pause the agent (on a call: once the call ends) with ``forced_by``."""
        agent = self._agent(args, scope)
        reason = text_arg(args, "reason", required=False) or "supervisor"
        try:
            pending = self.board.pause(agent.agent_id, reason, forced_by=scope.supervisor)
        except AgentStateError as e:
            raise CTIError(e.code, e.message) from None
        return {"agent": agent.agent_id, "state": self.board.get(agent.agent_id).state.value, "pending": pending}

    def force_logout(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Sign the agent out now (even on a call) and end their CTI sessions (``forced_logout``)."""
        agent = self._agent(args, scope)
        try:
            self.board.logout(agent.agent_id, forced_by=scope.supervisor)
        except AgentStateError as e:
            raise CTIError(e.code, e.message) from None
        ended = 0
        for agent_session in self.desk.sessions.pop(agent.agent_id, set()):
            agent_session.logout()
            agent_session.end("forced_logout", f"signed out by supervisor {scope.supervisor}")
            ended += 1
        return {"agent": agent.agent_id, "state": "logged_out", "sessions_ended": ended}

    def unlock_agent(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Unlock a locked agent (ring-no-answer)."""
        agent = self._agent(args, scope)
        try:
            self.board.unlock(agent.agent_id, forced_by=scope.supervisor)
        except AgentStateError as e:
            raise CTIError(e.code, e.message) from None
        return {"agent": agent.agent_id, "state": self.board.get(agent.agent_id).state.value}

    # -- calls waiting in the ACD -----------------------------------------------------------------------

    def _waiting(self, args: dict[str, Any], scope: Scope) -> Any:
        call_id = text_arg(args, "call")
        waiting = self.center.acd.call(call_id)
        if waiting is None:
            raise CTIError("not_waiting", f"call {call_id} is not waiting in a queue")
        queue = self.queues.get(waiting.queue)
        if queue is None or not scope.covers_waiting(queue.group, waiting.city):
            raise CTIError("out_of_scope", f"call {call_id} waits in a queue or city you do not manage")
        return waiting

    def _queue_view(self, waiting: Any) -> dict[str, Any]:
        acd = self.center.acd
        return {"call": waiting.call_id, "queue": waiting.queue, "priority": waiting.priority,
                "position": acd.position(waiting.call_id)}

    def set_call_priority(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Give a waiting call a new priority (bigger is served first; arrival order kept among equals)."""
        priority = args.get("priority")
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
            raise CTIError("bad_request", f"priority must be an integer 0..{MAX_PRIORITY}")
        waiting = self._waiting(args, scope)
        self.center.acd.set_priority(waiting.call_id, priority)
        self.on_queues_changed(waiting.queue)
        return self._queue_view(waiting)

    def move_call(self, session: CTISession, args: dict[str, Any], scope: Scope) -> dict[str, Any]:
        """Move a waiting call to another queue (of the scope); delivered at once if an agent is free."""
        target = text_arg(args, "queue")
        waiting = self._waiting(args, scope)
        queue = self.queues.get(target)
        if queue is None:
            raise CTIError("unknown_queue", f"no queue {target}")
        if not scope.covers_queue(queue.group):
            raise CTIError("out_of_scope", f"queue {target} is not of a group you manage")
        if target == waiting.queue:
            return {**self._queue_view(waiting), "delivered": None}
        source = waiting.queue
        offer = self.center.acd.move(waiting.call_id, target)
        self.on_queues_changed(source, target)
        view = {"call": waiting.call_id, "queue": target, "priority": waiting.priority, "delivered": None}
        if offer is None:
            view["position"] = self.center.acd.position(waiting.call_id)
            return view
        self.center.deliver(offer)
        view.update(position=None, delivered=offer.agent_id)
        return view

    # -- bookkeeping ------------------------------------------------------------------------------------

    def _on_call_event(self, event: Any) -> None:
        if isinstance(event, LegRemoved):
            self.monitors.pop(event.uniqueid, None)
        elif isinstance(event, CallEnded):
            self.monitors.pop(event.call_id, None)


def install_supervisors(desk: Any, board: Any, model: Any, center: Any, pbx: Any, audit: Callable[..., Any],
                        config: Any, clock: Any) -> tuple[Supervision, FloorView]:
    """Build the supervisor commands and the live view for the daemon and add them to ``desk`` (the router).

    ``audit`` is ``Records.audit``; ``config`` the daemon's :class:`ctid.config.Config`.
    """
    gate = SupervisorGate(desk.directory, audit, (dict(config.acd.cities) or CHINA_AREA_CODES).values())
    levels = ServiceLevels(config.reports.answer_within, config.reports.short_abandon, config.reports.tz)
    floor = FloorView(gate, board, model, center, config.acd.queues, clock, levels)
    floor.register(desk)
    supervision = Supervision(gate, board, model, center, pbx, desk, config.acd.queues,
                              on_queues_changed=floor.queues_changed)
    supervision.register(desk)
    return supervision, floor
