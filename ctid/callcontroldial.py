"""Calls an agent starts from the desktop (AG-3): MakeCall out or to another agent, PickupCall.

- ``MakeCall {to}`` — AMI Originate of the agent's station (it rings
  first) into ``ctid-out`` with the number, under the caller ID the bank
  allows (``[agents] outbound_caller_id``); ``MakeCall {agent}`` — the same
  into ``ctid-agents`` with the other agent's extension (an internal call).
- ``PickupCall {agent}`` (or ``{call}``) — a call ringing at another seat of
  one of the agent's skill groups is sent to the agent's station instead
  (AMI Setvar ``CTID_TARGET``/``CTID_RING`` and Redirect to
  ``ctid-deliver``, as a delivery); the other seat stops ringing.

Both need the agent ready.  The agents involved are reserved at once, so
the ACD offers them nothing meanwhile; when their leg appears they are
ringing, and the call center follows them from there (talking, wrap-up) as
it does a direct call.  A call that never reached an agent's phone
releases the agent when it ends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from ctid.agents import Agent, AgentState, AgentStateError
from ctid.callcontrol import CallControl
from ctid.callcontrolargs import device_of, extension_of, number_arg, text_arg
from ctid.callevents import CallEnded, LegAdded, OriginateFailed
from ctid.center import CallCenter
from ctid.contexts import DELIVER_CONTEXT, OUT_CONTEXT
from ctid.customers import redact
from ctid.interfaces import PBXError
from ctid.protocols.ctiapi import CommandRouter, CTIError, CTISession

log = Logger()

AGENTS_CONTEXT = "ctid-agents"
#: Seconds the agent's own phone rings for a MakeCall before the switch gives up.
OWN_RING = 30.0
_OFFERED = (AgentState.RESERVED, AgentState.RINGING)


@dataclass
class Started:
    """A call ctid started for agents: who is reserved for it, and whose leg has appeared."""

    agents: tuple[str, ...]
    seen: set[str] = field(default_factory=set)


class CallOrigination:
    """MakeCall and PickupCall, next to :class:`~ctid.callcontrol.CallControl` (whose checks they share)."""

    def __init__(self, control: CallControl, center: CallCenter, outbound_caller_id: str = ""):
        self.control, self.center, self.outbound_caller_id = control, center, outbound_caller_id
        self.board, self.model, self.pbx = control.board, control.model, control.pbx
        self.started: dict[str, Started] = {}
        self.model.subscribe(self._on_call_event)

    def register(self, router: CommandRouter) -> None:
        """Add MakeCall and PickupCall to ``router``."""
        router.add("MakeCall", self.control.audited("MakeCall", self.make_call))
        router.add("PickupCall", self.control.audited("PickupCall", self.pickup_call))

    def _ready(self, session: CTISession) -> Agent:
        agent = self.control.agent(session)
        if not self.board.is_available(agent.agent_id):
            raise CTIError("not_available", f"agent {agent.agent_id} is {agent.state.value}: be ready first")
        return agent

    # -- MakeCall ----------------------------------------------------------------------------

    async def make_call(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Ring the agent's phone, then the number (or the other agent) once it answers."""
        if ("to" in args) == ("agent" in args):
            raise CTIError("bad_request", "give either to (a number) or agent (an agent id)")
        agent = self._ready(session)
        number, other = (number_arg(args), None) if "to" in args else (None, self._callee(agent, args))
        call_id = f"ctid-call-{uuid.uuid4().hex}"
        reserved = self._reserve(call_id, agent, other)
        if other is None:
            context, exten, caller_id = OUT_CONTEXT, number, self.outbound_caller_id or None
        else:
            context, exten, caller_id = AGENTS_CONTEXT, extension_of(other.station), \
                f'"{agent.name or agent.agent_id}" <{agent.agent_id}>'
        try:
            await self.pbx.originate(agent.station, context=context, exten=exten, caller_id=caller_id,
                                     timeout=OWN_RING, variables={"CTID_MADE_BY": agent.agent_id},
                                     channel_id=call_id)
        except PBXError:
            self._release(call_id, reserved)
            raise
        data = {"call": call_id, "agent": agent.agent_id, "to": number,
                "to_agent": other.agent_id if other else None}
        self.control.tell([agent.agent_id], "Originated", data)
        if other is not None:
            self.control.tell([other.agent_id], "Delivered", {
                "call": call_id, "ani": agent.agent_id, "dnis": exten, "queue": None, "waited": 0.0,
                "priority": None, "callback": None, "data": {}, "customer": None, "from_agent": agent.agent_id})
        return data

    def _callee(self, agent: Agent, args: dict[str, Any]) -> Agent:
        other_id = text_arg(args, "agent")
        other = self.board.get(other_id)
        if other is None or other.state is AgentState.LOGGED_OUT:
            raise CTIError("no_such_agent", f"agent {other_id} is not signed in")
        if other.agent_id == agent.agent_id:
            raise CTIError("bad_request", "an agent cannot call itself")
        if not self.board.is_available(other.agent_id):
            raise CTIError("agent_not_available", f"agent {other_id} is {other.state.value}")
        return other

    def _reserve(self, call_id: str, *agents: Agent | None) -> tuple[str, ...]:
        ids = tuple(agent.agent_id for agent in agents if agent is not None)
        for agent_id in ids:
            self.board.reserve(agent_id, call_id)
        self.started[call_id] = Started(ids)
        return ids

    def _release(self, call_id: str, agent_ids: tuple[str, ...]) -> None:
        """Withdraw the reservations for a call that did not happen (agents whose leg never appeared)."""
        self.started.pop(call_id, None)
        for agent_id in agent_ids:
            agent = self.board.get(agent_id)
            if agent is not None and agent.call_id == call_id and agent.state in _OFFERED:
                try:
                    self.board.offer_cancelled(agent_id, call_id)
                except AgentStateError as e:
                    log.warn("agent {agent}: could not release call {call_id}: {error}", agent=agent_id,
                             call_id=call_id, error=e.message)

    # -- PickupCall ----------------------------------------------------------------------------

    async def pickup_call(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Take a call ringing at a seat of one of the agent's groups to the agent's station."""
        agent = self._ready(session)
        seat = self._ringing_seat(agent, args)
        call_id = seat.call_id
        assert call_id is not None
        delivery = self.center.deliveries.get(call_id)
        caller = self._caller_channel(call_id, seat, delivery)
        self.board.reserve(agent.agent_id, call_id)
        if delivery is not None:
            delivery.agent_id = agent.agent_id
        else:
            self.started[call_id] = Started((agent.agent_id,))
        try:
            await self.pbx.set_variable(caller, "CTID_TARGET", agent.station)
            await self.pbx.set_variable(caller, "CTID_RING", str(self.center.ring_time))
            await self.pbx.redirect(caller, DELIVER_CONTEXT, "s")
        except PBXError:
            if delivery is not None and delivery.agent_id == agent.agent_id:
                delivery.agent_id = seat.agent_id
            self._release(call_id, (agent.agent_id,))
            raise
        if seat.call_id == call_id and seat.state in _OFFERED:
            self.control.signal(self.board.offer_cancelled, seat.agent_id, call_id)
        data = {"call": call_id, "from_agent": seat.agent_id, "to_agent": agent.agent_id}
        self.control.tell([seat.agent_id, agent.agent_id], "Diverted", data)
        self.control.tell([agent.agent_id], "Delivered", self._pop(call_id, caller, delivery, seat.agent_id))
        return data

    def _ringing_seat(self, agent: Agent, args: dict[str, Any]) -> Agent:
        """The agent whose phone rings with the call to pick up (by ``agent`` or by ``call``)."""
        if ("agent" in args) == ("call" in args):
            raise CTIError("bad_request", "give either agent (the ringing seat) or call")
        if "agent" in args:
            seat = self.board.get(text_arg(args, "agent"))
        else:
            call_id = text_arg(args, "call")
            if call_id not in self.model.calls:
                raise CTIError("no_such_call", f"no call {call_id}")
            seat = next((a for a in self.board.in_state(AgentState.RINGING) if a.call_id == call_id), None)
        if seat is None or seat.state is not AgentState.RINGING or seat.call_id not in self.model.calls:
            raise CTIError("not_ringing", "no seat is ringing with that call")
        if seat.agent_id == agent.agent_id:
            raise CTIError("bad_request", "the call already rings at this seat")
        if not set(seat.skills) & set(agent.skills):
            raise CTIError("not_your_group", f"agent {seat.agent_id} is in none of this agent's groups")
        return seat

    def _caller_channel(self, call_id: str, seat: Agent, delivery: Any) -> str:
        """The channel dialling the ringing seat: the queued caller, else the call's first leg."""
        if delivery is not None and delivery.channel is not None:
            return delivery.channel
        call = self.model.calls[call_id]
        origin = call.channels.get(call.origin) if call.origin is not None else None
        if origin is None or device_of(origin.name) == seat.station:
            raise CTIError("not_ringing", f"call {call_id} has no caller to move")
        return origin.name

    def _pop(self, call_id: str, caller: str, delivery: Any, seat_id: str) -> dict[str, Any]:
        call = self.model.calls.get(call_id)
        channel = self.model.find_channel(caller)
        data = {} if channel is None else {k: redact(v) for k, v in channel.variables.items()
                                           if k.startswith("CTID_") and k not in ("CTID_TARGET", "CTID_RING",
                                                                                    "CTID_PARKED")}
        return {"call": call_id, "ani": call.ani if call else None, "dnis": call.dnis if call else None,
                "queue": delivery.waiting.queue if delivery is not None else None, "waited": 0.0,
                "priority": None, "callback": None, "data": data, "customer": None, "picked_from": seat_id}

    # -- following the calls ----------------------------------------------------------------------

    def _on_call_event(self, event: Any) -> None:
        kind = type(event)
        if kind is LegAdded:
            self._leg(event)
        elif kind is CallEnded and event.call_id in self.started:
            self._release(event.call_id, self.started[event.call_id].agents)
        elif kind is OriginateFailed:
            call_id = event.uniqueid if event.uniqueid in self.started else event.call_id
            if call_id in self.started:
                self._release(call_id, self.started[call_id].agents)

    def _leg(self, event: LegAdded) -> None:
        """An agent's leg of a call ctid started appeared: ringing, then followed like a direct call."""
        started = self.started.get(event.call_id)
        if started is None:
            return
        station = device_of(event.channel)
        for agent_id in started.agents:
            agent = self.board.get(agent_id)
            if agent is None or agent_id in started.seen or agent.station != station:
                continue
            started.seen.add(agent_id)
            if agent.state is AgentState.RESERVED and agent.call_id == event.call_id:
                self.control.signal(self.board.ringing, agent_id, event.call_id)
            self.center.direct[event.uniqueid] = (agent_id, event.call_id)
