"""Transfers from the desktop (AG-3): blind, consultation (attended), cancel and complete; idle agents.

Commands (CSTA names, registered on the :class:`~ctid.desk.AgentDesk`):

- ``GetIdleAgents {group?}`` — agents ready for a call, longest idle first.
- ``SingleStepTransfer {call?, agent|group|queue|flow|number}`` — AMI
  ``BlindTransfer`` of the agent's leg: to an agent through ``ctid-deliver``
  (``CTID_TARGET`` set first, the receiver reserved and popped), to a queue
  or a skill group's queue through ``ctid-wait`` (the caller waits in the ACD
  again), to an IVR flow through ``ctid-ivr`` (``CTID_FLOW``; the flow hands
  the caller back to the queue) or to a number through ``ctid-out``.
- ``ConsultationCall {call?, agent|group|number}`` — AMI ``Atxfer`` to
  ``<ext>@ctid-agents`` or ``<number>@ctid-out``: the caller hears music
  while the agent talks to the consulted party.
- ``ReconnectCall {call?}`` — cancel: the consulted party's leg is hung up and
  the agent is back with the caller.
- ``TransferCall {call?}`` — complete: the agent's leg is hung up, the
  consulted party takes the agent's place (``AttendedTransfer``).

The agent who hands a call over goes to wrap-up; the receiver goes reserved →
ringing → talking and gets a ``Delivered`` pop with the call's data.  The
consulting agent gets ``ConsultationEnded`` when the consulted party leaves
without taking the call, and both agents ``CallTransferred`` when it is done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.logger import Logger

from ctid.acd import QueueConfig
from ctid.agents import Agent, AgentBoard
from ctid.agentstate import AgentStateError
from ctid.calls import CallModel, CallTransferred, LegAdded, LegRemoved
from ctid.center import CallCenter
from ctid.contexts import DELIVER_CONTEXT, IVR_CONTEXT, OUT_CONTEXT, WAIT_CONTEXT
from ctid.interfaces import IPBX, PBXError
from ctid.protocols.ctiapi import CTIError, CTISession, require_login
from ctid.transfers_calls import (
    OwnCall,
    bridged_peer,
    call_data,
    connected_leg,
    extension,
    idle_agent,
    idle_agents,
    own_call,
    pop,
    target,
)

log = Logger()
T = TypeVar("T")
AGENTS_CONTEXT = "ctid-agents"


@dataclass
class Consultation:
    """A consultation in progress on ``call_id``: ``agent_id`` consults ``target_agent`` or ``number``."""

    call_id: str
    agent_id: str
    target_agent: str | None
    number: str | None
    leg: str | None = None          # the consulted party's leg (Uniqueid) once it appears
    answered: bool = False
    cancelled: bool = False


class CallTransfers:
    """Transfer commands of agents, and the bookkeeping of the calls they move."""

    def __init__(self, desk: Any, model: CallModel, board: AgentBoard, center: CallCenter, pbx: IPBX, clock: Any,
                 queues: Iterable[QueueConfig] = (), records: Any = None):
        self.desk, self.model, self.board, self.center, self.pbx = desk, model, board, center, pbx
        self.clock = clock
        self.queues = {q.name: q for q in queues}
        self.records = records
        self.consultations: dict[str, Consultation] = {}
        desk.add("GetIdleAgents", self.get_idle_agents)
        desk.add("SingleStepTransfer", self.single_step_transfer)
        desk.add("ConsultationCall", self.consultation_call)
        desk.add("ReconnectCall", self.reconnect_call)
        desk.add("TransferCall", self.transfer_call)
        model.subscribe(self._on_call_event)

    # -- commands ------------------------------------------------------------------------------------------

    def get_idle_agents(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """The agents ready for a call, of skill ``group`` when given, longest idle first."""
        group = args.get("group")
        if group is not None and (not isinstance(group, str) or not group or len(group) > 64):
            raise CTIError("bad_request", "group must be a skill group name")
        agents = idle_agents(self.board, group, require_login(session)["agent"])
        return {"agents": [{"agent": a.agent_id, "name": a.name, "station": a.station, "skills": dict(a.skills),
                            "city": a.city, "idle_since": a.stats.idle_since} for a in agents]}

    async def single_step_transfer(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Blind transfer of the agent's call to an agent, a queue or group, an IVR flow or a number."""
        mine = own_call(session, args, self.board, self.model)
        kind, value = target(args)
        customer = bridged_peer(self.model, mine.leg)
        if customer is None:
            raise CTIError("not_connected", "your call has nobody to transfer")
        if kind == "group":
            kind, value = "queue", self._queue_of(value)
        if kind == "queue" and value not in self.queues:
            raise CTIError("unknown_queue", f"no queue {value}")
        data = call_data(self.model, mine.call, self._waiting_data(mine.call_id))
        if kind == "agent":
            other = self._reserve(value, mine)
            await self._switch(self._blind_to_agent(mine, customer.name, other), other)
            self.center.hand_over(mine.call_id, other.agent_id, customer.name)
            self.desk.notify(other.agent_id, "Delivered", pop(mine.call, data, self._queue_name(mine.call_id),
                                                              mine.agent.agent_id, "blind"))
        elif kind == "queue":
            await self._switch(self.pbx.blind_transfer(mine.leg.name, "s", WAIT_CONTEXT))
            self.center.requeue(mine.call_id, value, customer.name, data)
        elif kind == "flow":
            await self._switch(self._blind_to_flow(mine, customer.name, value))
            self.center.release(mine.call_id)
        else:
            await self._switch(self.pbx.blind_transfer(mine.leg.name, value, OUT_CONTEXT))
            self.center.release(mine.call_id)
        self._audit(session, "SingleStepTransfer", mine.call_id, f"{kind} {value}")
        log.info("agent {agent} transferred call {call_id} to {kind} {target}", agent=mine.agent.agent_id,
                 call_id=mine.call_id, kind=kind, target=value)
        return {"call": mine.call_id, "to": {kind: value}}

    async def consultation_call(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Put the caller on hold and call an agent (or a group's longest idle agent) or a number."""
        mine = own_call(session, args, self.board, self.model)
        if mine.call_id in self.consultations:
            raise CTIError("consultation_in_progress", "you are already consulting on this call")
        kind, value = target(args, ("agent", "group", "number"))
        if kind == "group":
            candidates = idle_agents(self.board, value, mine.agent.agent_id)
            if not candidates:
                raise CTIError("agent_not_available", f"no agent of {value} is ready")
            kind, value = "agent", candidates[0].agent_id
        other = self._reserve(value, mine) if kind == "agent" else None
        consult = Consultation(mine.call_id, mine.agent.agent_id, other.agent_id if other else None,
                               value if other is None else None)
        self.consultations[mine.call_id] = consult
        exten, context = (extension(other.station), AGENTS_CONTEXT) if other else (value, OUT_CONTEXT)
        try:
            await self._switch(self.pbx.attended_transfer(mine.leg.name, exten, context), other)
        except CTIError:
            self.consultations.pop(mine.call_id, None)
            raise
        if other is not None:
            data = call_data(self.model, mine.call, self._waiting_data(mine.call_id))
            self.desk.notify(other.agent_id, "Delivered", pop(mine.call, data, self._queue_name(mine.call_id),
                                                              mine.agent.agent_id, "consultation"))
        self._audit(session, "ConsultationCall", mine.call_id, f"{kind} {value}")
        return {"call": mine.call_id, "consulting": {kind: value}}

    async def reconnect_call(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Cancel the consultation: the consulted party is hung up, the agent is back with the caller."""
        mine = own_call(session, args, self.board, self.model, connected=False)
        consult = self._consultation(mine)
        leg = self.model.channels.get(consult.leg or "")
        if leg is None:
            raise CTIError("not_connected", "the consulted party has not been reached yet; try again")
        consult.cancelled = True
        await self._switch(self.pbx.hangup(leg.name))
        self._audit(session, "ReconnectCall", mine.call_id, "")
        return {"call": mine.call_id}

    async def transfer_call(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Complete the consultation: the agent's leg is hung up and the consulted party takes the call."""
        mine = own_call(session, args, self.board, self.model, connected=False)
        consult = self._consultation(mine)
        await self._switch(self.pbx.hangup(mine.leg.name))
        self._audit(session, "TransferCall", mine.call_id, consult.target_agent or consult.number or "")
        return {"call": mine.call_id, "to": {"agent": consult.target_agent} if consult.target_agent
                else {"number": consult.number}}

    # -- helpers of the commands ---------------------------------------------------------------------------

    def _queue_of(self, group: str) -> str:
        for queue in self.queues.values():
            if queue.group == group:
                return queue.name
        raise CTIError("unknown_group", f"no queue serves skill group {group}")

    def _queue_name(self, call_id: str) -> str | None:
        delivery = self.center.deliveries.get(call_id)
        return delivery.waiting.queue if delivery is not None else None

    def _waiting_data(self, call_id: str) -> dict[str, str]:
        delivery = self.center.deliveries.get(call_id)
        return dict(delivery.waiting.data) if delivery is not None else {}

    def _reserve(self, agent_id: str, mine: OwnCall) -> Agent:
        other = idle_agent(self.board, agent_id, mine.agent)
        try:
            self.board.reserve(other.agent_id, mine.call_id)
        except AgentStateError as e:
            raise CTIError("agent_not_available", e.message) from None
        return other

    async def _blind_to_agent(self, mine: OwnCall, customer: str, other: Agent) -> None:
        await self.pbx.set_variable(customer, "CTID_TARGET", other.station)
        await self.pbx.set_variable(customer, "CTID_RING", str(self.center.ring_time))
        await self.pbx.blind_transfer(mine.leg.name, "s", DELIVER_CONTEXT)

    async def _blind_to_flow(self, mine: OwnCall, customer: str, flow: str) -> None:
        queue = self._queue_name(mine.call_id)
        if queue is not None:  # the flow hands the caller back to the queue it came from
            await self.pbx.set_variable(customer, "CTID_QUEUE", queue)
        await self.pbx.set_variable(customer, "CTID_FLOW", flow)
        await self.pbx.blind_transfer(mine.leg.name, "s", IVR_CONTEXT)

    async def _switch(self, action: Awaitable[T], reserved: Agent | None = None) -> T:
        """Run a switch action; on failure release ``reserved`` and refuse with ``switch_error``."""
        try:
            return await action
        except PBXError as e:
            if reserved is not None:
                self._withdraw(reserved.agent_id)
            raise CTIError("switch_error", str(e)) from None

    def _consultation(self, mine: OwnCall) -> Consultation:
        consult = self.consultations.get(mine.call_id)
        if consult is None or consult.agent_id != mine.agent.agent_id:
            raise CTIError("no_consultation", "you are not consulting on this call")
        return consult

    def _audit(self, session: CTISession, action: str, call_id: str, detail: str) -> None:
        if self.records is not None:
            self.records.audit(require_login(session)["agent"], "agent", session.peer, action, call_id, "ok", detail)

    # -- following the calls -------------------------------------------------------------------------------

    def _on_call_event(self, event: Any) -> None:
        if isinstance(event, LegAdded):
            self._leg_added(event)
        elif isinstance(event, LegRemoved):
            self._leg_removed(event)
        elif isinstance(event, CallTransferred) and event.kind == "attended":
            self._completed(event.call_id)

    def _leg_added(self, event: LegAdded) -> None:
        consult = self.consultations.get(event.call_id)
        if consult is None or consult.leg is not None:
            return
        if consult.target_agent is not None:
            target = self.board.get(consult.target_agent)
            if target is not None and event.channel.startswith(target.station + "-"):
                consult.leg = event.uniqueid
                self._signal(self.board.ringing, consult.target_agent, consult.call_id)
        elif event.channel.startswith(f"Local/{consult.number}@{OUT_CONTEXT}-") and event.channel.endswith(";1"):
            consult.leg = event.uniqueid

    def _leg_removed(self, event: LegRemoved) -> None:
        consult = self.consultations.get(event.call_id)
        if consult is None or consult.leg != event.uniqueid:
            return
        del self.consultations[event.call_id]
        if consult.target_agent is not None:
            self._withdraw(consult.target_agent, consult.answered)
        reason = "cancelled" if consult.cancelled else "left"
        self.desk.notify(consult.agent_id, "ConsultationEnded", {
            "call": consult.call_id, "agent": consult.target_agent, "number": consult.number, "reason": reason})

    def _completed(self, call_id: str) -> None:
        consult = self.consultations.pop(call_id, None)
        if consult is None:
            return
        if consult.target_agent is not None:
            self.center.hand_over(call_id, consult.target_agent, answered=consult.answered)
        else:
            self.center.release(call_id)
        data = {"call": call_id, "kind": "attended", "from": consult.agent_id,
                "to": {"agent": consult.target_agent} if consult.target_agent else {"number": consult.number}}
        for agent_id in filter(None, (consult.agent_id, consult.target_agent)):
            self.desk.notify(agent_id, "CallTransferred", data)
        log.info("agent {agent} transferred call {call_id} after consulting", agent=consult.agent_id, call_id=call_id)

    def bridge_entered(self, event: Any) -> None:
        """AMI ``BridgeEnter``: once the model has it, see whether a transferred call's new agent answered."""
        call_id = event.get("Linkedid")
        if call_id:
            self.clock.callLater(0, self._check_answered, call_id)

    def _check_answered(self, call_id: str) -> None:
        call = self.model.calls.get(call_id)
        if call is None:
            return
        consult = self.consultations.get(call_id)
        if consult is not None and consult.target_agent and not consult.answered \
                and connected_leg(self.model, self.model.channels.get(consult.leg or "")):
            consult.answered = True
            self._signal(self.board.answered, consult.target_agent, call_id)
        delivery = self.center.deliveries.get(call_id)
        if delivery is not None and delivery.agent_id is not None and delivery.answered_at is None:
            agent = self.board.get(delivery.agent_id)
            if agent is not None and any(connected_leg(self.model, c) for c in call.channels.values()
                                         if c.name.startswith(agent.station + "-")):
                self.center.connected(call_id, self.clock.seconds())

    def _withdraw(self, agent_id: str, answered: bool = False) -> None:
        """The receiver's part ends: wrap-up after talking, else the offer is withdrawn."""
        agent = self.board.get(agent_id)
        if agent is None or agent.call_id is None:
            return
        signal = self.board.call_ended if answered else self.board.offer_cancelled
        self._signal(signal, agent_id, agent.call_id)

    def _signal(self, signal: Any, agent_id: str, call_id: str) -> None:
        try:
            signal(agent_id, call_id)
        except AgentStateError as e:
            log.warn("agent {agent} on call {call_id}: {error}", agent=agent_id, call_id=call_id, error=e.message)
