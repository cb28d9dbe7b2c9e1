"""Three-party calls and conferences from the desktop (AG-3): ConferenceCall, AddParty, DropParty.

Commands (CSTA names, registered on the :class:`~ctid.desk.AgentDesk`):

- ``ConferenceCall {call?}`` — the agent consulting on its call (``ConsultationCall``)
  joins the caller, itself and the consulted party in a ConfBridge: the
  consulted leg is redirected first (the consultation ends, the agent is
  back with the caller), then the caller and the agent in one ``Redirect``
  with ``ExtraChannel``; all to ``s@ctid-conference`` with ``CTID_CONFERENCE``
  set on each leg.  ``ConferenceCall {call?, agent|number}`` does the same
  without a consultation and calls the new party in (as ``AddParty``).
- ``AddParty {call?, agent|number}`` — the owner adds a party: ``Originate``
  of the agent's phone or of ``Local/<number>@ctid-out`` into
  ``s@ctid-conference``.
- ``DropParty {call?, party|agent|number}`` — the owner drops a party:
  ``ConfbridgeKick`` (``Hangup`` while it is still being called).

The conference ends by the rule in :mod:`ctid.conference_parties` (owner
gone, or no customer left): ``ConfbridgeKick`` of ``all``.  Agents in the
conference are talking; an agent leaving goes to wrap-up (the owner when
the call ends, through the call center).  Events go to the agents of the
conference only: ``Conferenced``, ``PartyAdded``, ``PartyDropped``,
``ConferenceEnded``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ctid.agents import Agent, AgentBoard
from ctid.agentstate import AgentStateError
from ctid.callevents import ConferenceJoined, ConferenceLeft, OriginateFailed
from ctid.calls import CallModel, LegRemoved
from ctid.center import CallCenter
from ctid.conference_parties import AGENT, CUSTOMER, NUMBER, Conference, Party
from ctid.contexts import OUT_CONTEXT
from ctid.interfaces import IPBX, PBXError
from ctid.protocols.ctiapi import CTIError, CTISession, require_login
from ctid.transfers_calls import (
    OwnCall,
    bridged_peer,
    call_data,
    connected_leg,
    idle_agent,
    own_call,
    pop,
    target,
)

log = Logger()
T = TypeVar("T")
CONFERENCE_CONTEXT = "ctid-conference"
#: Seconds the switch has to bring the agent back to the caller after the consulted party moved.
SWITCH_WAIT = 10.0
#: Ring time of an outside number called into a conference.
NUMBER_RING = 60.0


@dataclass
class _Waiter:
    check: Callable[[], bool]
    done: Deferred[None]
    timer: Any


class ConferenceCalls:
    """Conference commands of agents, and the conferences they run."""

    def __init__(self, desk: Any, model: CallModel, board: AgentBoard, center: CallCenter, pbx: IPBX, clock: Any,
                 transfers: Any, records: Any = None):
        self.desk, self.model, self.board, self.center, self.pbx = desk, model, board, center, pbx
        self.clock, self.transfers, self.records = clock, transfers, records
        self.by_name: dict[str, Conference] = {}
        self.by_call: dict[str, Conference] = {}
        self._waiters: list[_Waiter] = []
        desk.add("ConferenceCall", self.conference_call)
        desk.add("AddParty", self.add_party)
        desk.add("DropParty", self.drop_party)
        model.subscribe(self._on_call_event)

    # -- commands ------------------------------------------------------------------------------------------

    async def conference_call(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Make a conference of the agent's call and its consultation, or of the call and a new party."""
        mine = own_call(session, args, self.board, self.model, connected=False)
        if mine.call_id in self.by_call:
            raise CTIError("conference_in_progress", "this call is already a conference")
        consult = self.transfers.consultations.get(mine.call_id)
        named = any(kind in args for kind in ("agent", "group", "queue", "flow", "number"))
        if consult is not None and consult.agent_id == mine.agent.agent_id:
            if named:
                raise CTIError("consultation_in_progress", "you are consulting: conference that party, or cancel")
            conference = await self._merge(mine, consult)
        elif named:
            kind, value = target(args, ("agent", "number"))
            customer = bridged_peer(self.model, mine.leg) if connected_leg(self.model, mine.leg) else None
            if customer is None:
                raise CTIError("not_connected", "your call has nobody to confer with")
            other = self._reserve(value, mine.agent, mine.call_id) if kind == AGENT else None
            conference = self._open(mine)
            conference.add(Party(customer.uniqueid, CUSTOMER, number=mine.call.ani, initial=True))
            await self._switch(self._move_together(conference, customer.name, mine.leg.name), conference, other)
            await self._invite(conference, kind, value, other, mine.agent.agent_id)
        else:
            raise CTIError("no_consultation", "consult a party first, or name the agent or number to add")
        self._audit(session, "ConferenceCall", mine.call_id, conference.name)
        log.info("agent {agent} made call {call_id} a conference", agent=mine.agent.agent_id, call_id=mine.call_id)
        return conference.view()

    async def add_party(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Call an agent or a number into the agent's conference."""
        conference = self._owned(session, args)
        kind, value = target(args, ("agent", "number"))
        me = self.board.get(require_login(session)["agent"])
        assert me is not None  # _owned found the agent
        if kind == AGENT and any(p.agent_id == value for p in conference.parties.values()):
            raise CTIError("already_in_conference", f"agent {value} is in the conference already")
        other = self._reserve(value, me, conference.call_id) if kind == AGENT else None
        party = await self._invite(conference, kind, value, other, me.agent_id)
        self._audit(session, "AddParty", conference.call_id, f"{kind} {value}")
        return {"call": conference.call_id, "conference": conference.name, "party": party.describe()}

    async def drop_party(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Take a party out of the agent's conference (it is hung up)."""
        conference = self._owned(session, args)
        given = [kind for kind in ("party", "agent", "number") if kind in args]
        if len(given) != 1 or not isinstance(args[given[0]], str):
            raise CTIError("bad_request", "give exactly one of party, agent, number")
        party = conference.party_of(args)
        if party is None:
            raise CTIError("unknown_party", "no such party in your conference")
        if party.agent_id == conference.owner:
            raise CTIError("bad_target", "hang up to leave your own conference")
        leg = self.model.channels.get(party.uniqueid)
        if leg is None:
            raise CTIError("not_connected", "that party has not been reached yet; try again")
        party.dropping = True
        if party.joined:
            await self._switch(self.pbx.kick_from_conference(conference.name, leg.name))
        else:
            await self._switch(self.pbx.hangup(leg.name))
        self._audit(session, "DropParty", conference.call_id, party.uniqueid)
        return {"call": conference.call_id, "conference": conference.name, "party": party.describe()}

    # -- helpers of the commands ---------------------------------------------------------------------------

    async def _merge(self, mine: OwnCall, consult: Any) -> Conference:
        """Caller, agent and consulted party into one conference (the consultation ends)."""
        leg = self.model.channels.get(consult.leg or "")
        if leg is None or not connected_leg(self.model, leg):
            raise CTIError("not_connected", "the consulted party has not answered yet")
        del self.transfers.consultations[mine.call_id]  # the conference takes the consulted party over
        conference = self._open(mine)
        if consult.target_agent is not None:
            conference.add(Party(leg.uniqueid, AGENT, agent_id=consult.target_agent, initial=True))
        else:
            conference.add(Party(leg.uniqueid, NUMBER, number=consult.number, initial=True))
        consulting_bridge, me = mine.leg.bridge_id, mine.leg.uniqueid
        try:
            await self._switch(self._join(conference, leg.name), conference)
        except CTIError:
            self.transfers.consultations[mine.call_id] = consult  # nothing moved: still a consultation
            raise
        await self._until(lambda: self._back_with_caller(me, consulting_bridge), conference)
        back = self.model.channels.get(me)
        customer = bridged_peer(self.model, back) if back is not None else None
        if customer is None:
            self._end(conference, "failed")
            raise CTIError("not_connected", "the caller left")
        conference.add(Party(customer.uniqueid, CUSTOMER, number=mine.call.ani, initial=True))
        await self._switch(self._move_together(conference, customer.name, mine.leg.name), conference)
        return conference

    def _open(self, mine: OwnCall) -> Conference:
        conference = Conference(f"ctid-{mine.call_id}", mine.call_id, mine.agent.agent_id)
        conference.add(Party(mine.leg.uniqueid, AGENT, agent_id=mine.agent.agent_id, initial=True))
        self.by_name[conference.name] = self.by_call[mine.call_id] = conference
        return conference

    async def _join(self, conference: Conference, channel: str) -> None:
        await self.pbx.set_variable(channel, "CTID_CONFERENCE", conference.name)
        await self.pbx.redirect(channel, CONFERENCE_CONTEXT, "s")

    async def _move_together(self, conference: Conference, customer: str, agent_leg: str) -> None:
        for channel in (customer, agent_leg):
            await self.pbx.set_variable(channel, "CTID_CONFERENCE", conference.name)
        await self.pbx.redirect(customer, CONFERENCE_CONTEXT, "s", extra_channel=agent_leg)

    def _back_with_caller(self, uniqueid: str, consulting_bridge: str | None) -> bool:
        leg = self.model.channels.get(uniqueid)
        return leg is None or (leg.bridge_id not in (None, consulting_bridge) and connected_leg(self.model, leg))

    async def _invite(self, conference: Conference, kind: str, value: str, other: Agent | None, by: str) -> Party:
        """Originate the new party into the conference; an agent rings and gets a pop."""
        channel_id = f"ctid-conf-{uuid.uuid4().hex}"
        variables = {"CTID_CONFERENCE": conference.name}
        call = self.model.calls.get(conference.call_id)
        if other is not None:
            party = conference.add(Party(channel_id, AGENT, agent_id=other.agent_id))
            action = self.pbx.originate(other.station, CONFERENCE_CONTEXT, "s", caller_id=call.ani if call else None,
                                        timeout=float(self.center.ring_time), variables=variables,
                                        channel_id=channel_id)
        else:
            party = conference.add(Party(channel_id, NUMBER, number=value))
            action = self.pbx.originate(f"Local/{value}@{OUT_CONTEXT}", CONFERENCE_CONTEXT, "s",
                                        timeout=NUMBER_RING, variables=variables, channel_id=channel_id)
        try:
            await self._switch(action, reserved=other)
        except CTIError:
            conference.parties.pop(channel_id, None)
            raise
        if other is not None:
            self._signal(self.board.ringing, other.agent_id, conference.call_id)
            if call is not None:
                delivery = self.center.deliveries.get(conference.call_id)
                self.desk.notify(other.agent_id, "Delivered", pop(
                    call, call_data(self.model, call, dict(delivery.waiting.data) if delivery else None),
                    delivery.waiting.queue if delivery else None, by, "conference"))
        return party

    def _owned(self, session: CTISession, args: dict[str, Any]) -> Conference:
        """The conference of the agent's call, which the agent must own."""
        agent = self.board.get(require_login(session)["agent"])
        call_id = args.get("call", agent.call_id if agent else None)
        if call_id is not None and (not isinstance(call_id, str) or len(call_id) > 128):
            raise CTIError("bad_request", "call must be a call id (string)")
        if agent is None or agent.call_id is None:
            raise CTIError("no_call", "you have no call")
        if call_id != agent.call_id:
            raise CTIError("not_your_call", "that call is not yours")
        conference = self.by_call.get(call_id)
        if conference is None or conference.ending is not None:
            raise CTIError("no_conference", "your call is not a conference")
        if conference.owner != agent.agent_id:
            raise CTIError("not_conference_owner", "only the agent who made the conference can change it")
        return conference

    def _reserve(self, agent_id: str, me: Agent, call_id: str) -> Agent:
        other = idle_agent(self.board, agent_id, me)
        try:
            self.board.reserve(other.agent_id, call_id)
        except AgentStateError as e:
            raise CTIError("agent_not_available", e.message) from None
        return other

    async def _switch(self, action: Awaitable[T], conference: Conference | None = None,
                      reserved: Agent | None = None) -> T:
        """Run a switch action; on failure release ``reserved``, end ``conference``, refuse with ``switch_error``."""
        try:
            return await action
        except PBXError as e:
            if reserved is not None:
                self._signal(self.board.offer_cancelled, reserved.agent_id, reserved.call_id or "")
            if conference is not None:
                self._end(conference, "failed")
            raise CTIError("switch_error", str(e)) from None

    def _until(self, check: Callable[[], bool], conference: Conference) -> Deferred[None]:
        """Fires once ``check()`` holds (tested on every call event); ends the conference after SWITCH_WAIT."""
        done: Deferred[None] = Deferred()
        waiter = _Waiter(check, done, None)

        def expire() -> None:
            self._waiters.remove(waiter)
            self._end(conference, "failed")
            done.errback(CTIError("switch_error", "the switch did not bring you back to the caller in time"))

        waiter.timer = self.clock.callLater(SWITCH_WAIT, expire)
        self._waiters.append(waiter)
        self._check_waiters()
        return done

    def _check_waiters(self) -> None:
        for waiter in list(self._waiters):
            if waiter.check():
                self._waiters.remove(waiter)
                waiter.timer.cancel()
                waiter.done.callback(None)

    def _audit(self, session: CTISession, action: str, call_id: str, detail: str) -> None:
        if self.records is not None:
            self.records.audit(require_login(session)["agent"], "agent", session.peer, action, call_id, "ok", detail)

    # -- following the conferences -------------------------------------------------------------------------

    def bridge_entered(self, event: Any) -> None:
        """AMI ``BridgeEnter``: once the model has it, see whether a waiting command can go on."""
        if self._waiters:
            self.clock.callLater(0, self._check_waiters)

    def _on_call_event(self, event: Any) -> None:
        if isinstance(event, ConferenceJoined):
            self._joined(event)
        elif isinstance(event, ConferenceLeft):
            self._gone(event.conference, event.uniqueid, "left")
        elif isinstance(event, LegRemoved):
            self._gone(None, event.uniqueid, "no_answer")
        elif isinstance(event, OriginateFailed) and event.uniqueid:
            self._gone(None, event.uniqueid, "no_answer")
        if self._waiters:
            self._check_waiters()

    def _joined(self, event: ConferenceJoined) -> None:
        conference = self.by_name.get(event.conference or "")
        if conference is None:
            return
        party = conference.parties.get(event.uniqueid)
        if party is None:  # a leg ctid did not send (moved there by hand): a customer for the end rule
            party = conference.add(Party(event.uniqueid, CUSTOMER, number=self._number_of(event.uniqueid)))
        party.joined = True
        if conference.ending is not None:
            self._kick(conference, self.model.channels[event.uniqueid].name)
            return
        if party.agent_id is not None and party.agent_id != conference.owner:
            agent = self.board.get(party.agent_id)
            if agent is not None and agent.state.value in ("reserved", "ringing"):
                if agent.state.value == "reserved":
                    self._signal(self.board.ringing, party.agent_id, conference.call_id)
                self._signal(self.board.answered, party.agent_id, conference.call_id)
        if conference.formed:
            self._tell(conference, "PartyAdded", {"party": party.describe()})
        elif conference.all_joined():
            conference.formed = True
            self._tell(conference, "Conferenced", {"owner": conference.owner,
                                                   "parties": [p.describe() for p in conference.parties.values()]})

    def _gone(self, name: str | None, uniqueid: str, reason: str) -> None:
        """A party left the ConfBridge (or its leg ended before it joined)."""
        conference = self.by_name.get(name) if name else next(
            (c for c in self.by_name.values() if uniqueid in c.parties and not c.parties[uniqueid].joined), None)
        party = conference.parties.get(uniqueid) if conference is not None else None
        if conference is None or party is None:
            return
        del conference.parties[uniqueid]
        told = conference.agents() + ([party.agent_id] if party.agent_id else [])
        if conference.ending is None:
            why = "dropped" if party.dropping else reason
            self._tell(conference, "PartyDropped", {"party": party.describe(), "reason": why}, told)
        if party.agent_id is not None and party.agent_id != conference.owner:
            signal = self.board.call_ended if party.joined else self.board.offer_cancelled
            self._signal(signal, party.agent_id, conference.call_id)
        end = conference.end_reason(party) if conference.ending is None else None
        if end is not None:
            self._end(conference, end, told)
        if conference.ending is not None and not conference.parties:
            self._forget(conference)

    def _end(self, conference: Conference, reason: str, told: list[str] | None = None) -> None:
        """The conference is over: tell its agents, kick whoever is in, hang up whoever is being called."""
        if conference.ending is not None:
            return
        conference.ending = reason
        if self.by_call.get(conference.call_id) is conference:  # the call may be conferenced again
            del self.by_call[conference.call_id]
        self._tell(conference, "ConferenceEnded", {"reason": reason}, told)
        log.info("conference {conference} of call {call_id} ended: {reason}", conference=conference.name,
                 call_id=conference.call_id, reason=reason)
        if any(p.joined for p in conference.parties.values()):
            self._kick(conference, "all")
        for party in conference.parties.values():
            leg = self.model.channels.get(party.uniqueid)
            if not party.joined and not party.initial and leg is not None:
                self.pbx.hangup(leg.name).addErrback(self._warn, conference.name)
        if not conference.parties:
            self._forget(conference)

    def _kick(self, conference: Conference, channel: str) -> None:
        self.pbx.kick_from_conference(conference.name, channel).addErrback(self._warn, conference.name)

    def _warn(self, failure: Any, name: str) -> None:
        log.warn("conference {conference}: {error}", conference=name, error=failure.getErrorMessage())

    def _forget(self, conference: Conference) -> None:
        if self.by_name.get(conference.name) is conference:
            del self.by_name[conference.name]

    def _tell(self, conference: Conference, event: str, data: dict[str, Any], to: list[str] | None = None) -> None:
        payload = {"call": conference.call_id, "conference": conference.name, **data}
        for agent_id in dict.fromkeys(to if to is not None else conference.agents()):
            self.desk.notify(agent_id, event, payload)

    def _number_of(self, uniqueid: str) -> str | None:
        leg = self.model.channels.get(uniqueid)
        return leg.caller_num if leg is not None else None

    def _signal(self, signal: Any, agent_id: str, call_id: str) -> None:
        try:
            signal(agent_id, call_id)
        except AgentStateError as e:
            log.warn("agent {agent} on call {call_id}: {error}", agent=agent_id, call_id=call_id, error=e.message)
