"""Agent call control on the CTI protocol (AG-3): answer, hang up, hold, retrieve, DTMF, call data.

Commands (CSTA ECMA-269 names; docs/cti-protocol.md "Call control" has the
wire details), each on the agent's own call only (``call`` defaults to the
agent's current call):

- ``SetAutoAnswer {enabled}`` — the desktop declares that its station
  answers when the switch asks (a phone set up for remote answer, or a
  softphone that supports it); until then ``AnswerCall`` is refused.
- ``AnswerCall`` — SIP NOTIFY ``Event: talk`` to the ringing leg (AMI PJSIPNotify).
- ``ClearConnection`` — hang up the agent's leg (AMI Hangup); on a held call
  both legs.
- ``HoldCall`` / ``RetrieveCall`` — one AMI Redirect moves the far party to
  ``ctid-hold,s`` (music) and the agent's leg to ``ctid-hold,agent``
  (silence); AMI Bridge puts them back together.  Asterisk signals no SIP
  hold for this, so the hold is reported to the call model as the
  ``Hold``/``Unhold`` of the held leg: the call's hold intervals open at
  HoldCall and close at RetrieveCall or when the call ends.
- ``SendDTMF {digits}`` — AMI PlayDTMF on the far party's channel.
- ``SetCallData {data}`` — AMI Setvar of ``CTID_*`` variables on the
  customer's channel (they travel with it), echoed as ``CallDataChanged``.

Every party of the call (each agent with a leg in it) gets the events
(``Held``, ``Retrieved``, ``ConnectionCleared``, ``CallDataChanged``);
every command is written to the audit log.  Making calls and picking up
are in :mod:`ctid.callcontroldial`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from ctid.agents import Agent, AgentBoard, AgentState, AgentStateError, AgentTransition
from ctid.callcontrolargs import data_arg, digits_arg, far_party, flag_arg, leg_on, stations_on, text_arg
from ctid.callevents import UP, Call, Channel, LegRemoved
from ctid.calls import CallModel
from ctid.contexts import HIDDEN_VARIABLES
from ctid.customers import redact
from ctid.interfaces import IPBX, PBXError
from ctid.protocols.amiwire import Message
from ctid.protocols.ctiapi import CommandRouter, CTIError, CTISession

log = Logger()

HOLD_CONTEXT = "ctid-hold"
#: Refusal codes of the call-control commands (besides bad_request).
CODES = ("no_such_call", "not_your_call", "not_ringing", "not_connected", "answer_not_supported", "already_held",
         "not_held", "not_available", "no_such_agent", "agent_not_available", "not_your_group", "switch_error",
         "not_logged_in")

Handler = Callable[[CTISession, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class HeldCall:
    """A call put on hold by ``agent_id``: its leg and the far party's, as the switch names them."""

    agent_id: str
    leg: str
    leg_id: str
    party: str
    party_id: str
    since: float


class CallControl:
    """The in-call commands of agents, on the call model, the agent board and the switch.

    ``desk`` sends events to agents (``notify(agent_id, event, data)``);
    ``records`` (optional) gets an audit line per command.
    """

    def __init__(self, board: AgentBoard, model: CallModel, pbx: IPBX, desk: Any, clock: Any,
                 records: Any = None):
        self.board, self.model, self.pbx, self.desk, self.clock, self.records = board, model, pbx, desk, clock, records
        self.holds: dict[str, HeldCall] = {}
        self.auto_answer: set[str] = set()
        model.subscribe(self._on_call_event)
        board.subscribe(self._on_agent_record)

    def register(self, router: CommandRouter) -> None:
        """Add the commands to ``router`` (the agents' desk)."""
        for name, fn in (("SetAutoAnswer", self.set_auto_answer), ("AnswerCall", self.answer_call),
                         ("ClearConnection", self.clear_connection), ("HoldCall", self.hold_call),
                         ("RetrieveCall", self.retrieve_call), ("SendDTMF", self.send_dtmf),
                         ("SetCallData", self.set_call_data)):
            router.add(name, self.audited(name, fn))

    # -- shared by the commands ------------------------------------------------------------

    def audited(self, name: str, fn: Handler) -> Handler:
        """``fn`` with its outcome written to the audit log and switch failures answered ``switch_error``."""

        async def run(session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
            target = args.get("call") if isinstance(args.get("call"), str) else None
            try:
                result = await fn(session, args)
            except CTIError as e:
                self.audit(session, name, target, e.code, e.message)
                raise
            except PBXError as e:
                self.audit(session, name, target, "switch_error", str(e))
                raise CTIError("switch_error", f"the switch did not do it: {e}") from None
            self.audit(session, name, result.get("call", target), "ok")
            return result

        return run

    def audit(self, session: CTISession, action: str, target: str | None, outcome: str, detail: str = "") -> None:
        """One audit line (when records are kept)."""
        if self.records is not None:
            identity = session.identity or {}
            self.records.audit(identity.get("agent", "?"), "agent", session.peer, action, target, outcome, detail)

    def agent(self, session: CTISession) -> Agent:
        """The session's agent, signed in."""
        agent = self.board.get(session.identity["agent"]) if session.identity else None
        if agent is None or agent.state is AgentState.LOGGED_OUT:
            raise CTIError("not_logged_in", "the agent is signed out")
        return agent

    def own_call(self, agent: Agent, args: dict[str, Any]) -> tuple[Call, Channel]:
        """The call named by ``call`` (default: the agent's current call) and the agent's leg in it."""
        call_id = text_arg(args, "call", required=False) or agent.call_id
        call = self.model.calls.get(call_id) if call_id is not None else None
        if call is None:
            raise CTIError("no_such_call", f"no call {call_id}" if call_id else "the agent has no call")
        leg = leg_on(call, agent.station)
        if leg is None:
            raise CTIError("not_your_call", f"call {call.linkedid} is not on station {agent.station}")
        return call, leg

    def far_party(self, leg: Channel) -> Channel:
        """The channel talking with ``leg``; ``not_connected`` when there is none."""
        party = far_party(self.model.channels, self.model.bridges, leg)
        if party is None:
            raise CTIError("not_connected", "the call is not connected")
        return party

    def parties(self, call: Call) -> list[str]:
        """The agents with a leg in ``call``."""
        agents = (self.board.by_station(station) for station in stations_on(call))
        return [agent.agent_id for agent in agents if agent is not None]

    def tell(self, agent_ids: list[str], event: str, data: dict[str, Any]) -> None:
        """Send ``event`` to each agent's sessions."""
        for agent_id in dict.fromkeys(agent_ids):
            self.desk.notify(agent_id, event, data)

    def signal(self, fn: Callable[[str, str], None], agent_id: str, call_id: str) -> None:
        """Tell the board (hold, retrieve …); a call the board does not follow for the agent is left alone."""
        try:
            fn(agent_id, call_id)
        except AgentStateError as e:
            log.info("agent {agent} on call {call_id}: board not changed: {error}", agent=agent_id, call_id=call_id,
                     error=e.message)

    # -- the commands --------------------------------------------------------------------------

    async def set_auto_answer(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """The station answers on the switch's request (``enabled``), or not."""
        agent, enabled = self.agent(session), flag_arg(args, "enabled")
        if enabled:
            self.auto_answer.add(agent.agent_id)
        else:
            self.auto_answer.discard(agent.agent_id)
        return {"agent": agent.agent_id, "station": agent.station, "auto_answer": enabled}

    async def answer_call(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Make the agent's ringing phone answer."""
        agent = self.agent(session)
        call, leg = self.own_call(agent, args)
        if agent.agent_id not in self.auto_answer:
            raise CTIError("answer_not_supported", f"station {agent.station} cannot be answered from the desktop: "
                                                   "pick up the phone (or SetAutoAnswer if it can)")
        if leg.state == UP:
            raise CTIError("not_ringing", f"call {call.linkedid} is already answered")
        await self.pbx.answer(leg.name)
        return {"call": call.linkedid}

    async def clear_connection(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Hang up the agent's leg (both legs of a held call)."""
        agent = self.agent(session)
        call, leg = self.own_call(agent, args)
        parties = self.parties(call)
        held = self.holds.pop(call.linkedid, None)
        await self.pbx.hangup(leg.name)
        for other in (held.leg, held.party) if held is not None else ():
            if other != leg.name:
                self.pbx.hangup(other).addErrback(_already_gone, call.linkedid, other)
        self.tell(parties, "ConnectionCleared", {"call": call.linkedid, "agent": agent.agent_id, "channel": leg.name})
        return {"call": call.linkedid}

    async def hold_call(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Music to the far party, silence to the agent, until RetrieveCall."""
        agent = self.agent(session)
        call, leg = self.own_call(agent, args)
        if call.linkedid in self.holds:
            raise CTIError("already_held", f"call {call.linkedid} is on hold")
        party = self.far_party(leg)
        held = HeldCall(agent.agent_id, leg.name, leg.uniqueid, party.name, party.uniqueid, self.clock.seconds())
        self.holds[call.linkedid] = held
        self._report(held, call.linkedid, "Hold")  # before the legs leave their bridge: the call is held, not ended
        try:
            await self.pbx.redirect(party.name, HOLD_CONTEXT, "s", extra_channel=leg.name,
                                    extra_context=HOLD_CONTEXT, extra_exten="agent")
        except PBXError:
            if self.holds.pop(call.linkedid, None) is not None:
                self._report(held, call.linkedid, "Unhold")
            raise
        self.signal(self.board.held, agent.agent_id, call.linkedid)
        self.tell(self.parties(call), "Held", {"call": call.linkedid, "agent": agent.agent_id, "since": held.since})
        return {"call": call.linkedid, "since": held.since}

    async def retrieve_call(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Bridge the held party and the agent again."""
        agent = self.agent(session)
        call, _ = self.own_call(agent, args)
        held = self.holds.get(call.linkedid)
        if held is None:
            raise CTIError("not_held", f"call {call.linkedid} is not on hold")
        await self.pbx.bridge(held.party, held.leg)
        if self.holds.pop(call.linkedid, None) is not None:
            self._report(held, call.linkedid, "Unhold")
        self.signal(self.board.retrieved, held.agent_id, call.linkedid)
        held_for = round(self.clock.seconds() - held.since, 3)
        self.tell(self.parties(call), "Retrieved", {"call": call.linkedid, "agent": agent.agent_id, "held": held_for})
        return {"call": call.linkedid, "held": held_for}

    async def send_dtmf(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Play digits to the far party (the digits are neither logged nor echoed)."""
        agent, digits = self.agent(session), digits_arg(args)
        call, leg = self.own_call(agent, args)
        await self.pbx.send_dtmf(self.far_party(leg).name, digits)
        return {"call": call.linkedid, "sent": len(digits)}

    async def set_call_data(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Attach or update ``CTID_*`` data on the customer's channel; every party sees the new data."""
        agent, data = self.agent(session), data_arg(args, HIDDEN_VARIABLES)
        call, leg = self.own_call(agent, args)
        target = self._data_channel(call, leg)
        for name, value in data.items():
            await self.pbx.set_variable(target.name, name, value)
        shown = {name: redact(value) for name, value in {**visible_data(target), **data}.items()}
        self.tell(self.parties(call), "CallDataChanged",
                  {"call": call.linkedid, "agent": agent.agent_id, "data": shown, "changed": sorted(data)})
        return {"call": call.linkedid, "data": shown}

    # -- helpers ---------------------------------------------------------------------------------

    def _data_channel(self, call: Call, leg: Channel) -> Channel:
        """Where call data lives: the far party (held party on hold), else the call's first leg, else the agent's."""
        held = self.holds.get(call.linkedid)
        if held is not None and held.party_id in self.model.channels:
            return self.model.channels[held.party_id]
        party = far_party(self.model.channels, self.model.bridges, leg)
        origin = call.channels.get(call.origin) if call.origin is not None else None
        return party or origin or leg

    def _report(self, held: HeldCall, call_id: str, event: str) -> None:
        """Tell the call model the held party went on (or off) hold, as a phone's SIP hold would."""
        self.model.apply(Message.build([("Event", event), ("Channel", held.party), ("Uniqueid", held.party_id),
                                        ("Linkedid", call_id)]))

    def _on_call_event(self, event: Any) -> None:
        if type(event) is not LegRemoved or not self.holds:
            return
        for call_id, held in list(self.holds.items()):
            if event.uniqueid in (held.leg_id, held.party_id):
                del self.holds[call_id]
                other = held.party if event.uniqueid == held.leg_id else held.leg
                log.info("call {call_id}: one leg left while on hold; hanging up {other}", call_id=call_id,
                         other=other)
                self.pbx.hangup(other).addErrback(_already_gone, call_id, other)

    def _on_agent_record(self, record: Any) -> None:
        if isinstance(record, AgentTransition) and record.new is AgentState.LOGGED_OUT:
            self.auto_answer.discard(record.agent_id)


def visible_data(channel: Channel) -> dict[str, str]:
    """The call data on ``channel`` an agent may see: its ``CTID_*`` variables but ctid's plumbing."""
    return {name: value for name, value in channel.variables.items()
            if name.startswith("CTID_") and name not in HIDDEN_VARIABLES}


def _already_gone(failure: Any, call_id: str, channel: str) -> None:
    log.info("call {call_id}: {channel} already gone: {error}", call_id=call_id, channel=channel,
             error=failure.getErrorMessage())
