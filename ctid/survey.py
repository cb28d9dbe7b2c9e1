"""The satisfaction survey (满意度调查, AG-5): the caller rates the service after talking to an agent.

The agent hands the caller over with the ``Survey`` command: ctid sets
``CTID_FLOW`` (the ``survey_flow``, conf/ivr/survey.yaml) on the caller's
channel and redirects it to ``ctid-ivr``; the agent's leg ends with the
redirect and the agent goes to wrap-up (``CallCenter.hand_over``).  With
``survey = after_every_call`` the call center also sets ``CTID_SURVEY=1``
and ``CTID_FLOW`` at delivery; when the agent hangs up, Dial's ``g`` option
lets the caller go on to ``ctid-answered``, which marks
``CTID_SURVEY=started`` (ctid adopts the caller here) and runs the flow.  The flow thanks the caller,
then stores the key pressed (1..5) as ``CTID_SATISFACTION`` on the channel
— the call record keeps it (:mod:`ctid.callrecords`) — and ctid hangs the
caller up; a caller who presses nothing hears goodbye and is hung up (or,
handed back to ``ctid-wait`` by an error, hung up there by ctid).  The agent
who handed the caller over gets a ``SurveyScored`` event with the score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from ctid.calls import CallEnded, CallModel, LegRemoved, VariableSet
from ctid.contexts import IVR_CONTEXT
from ctid.interfaces import IPBX, PBXError
from ctid.protocols.ctiapi import CTIError, CTISession, require_login
from ctid.recording import agent_call, customer_leg
from ctid.recordingsettings import RecordingSettings

log = Logger()


@dataclass
class Survey:
    """A caller sent to the survey: its call, its channel, the agent who served it, the score once given."""

    call_id: str
    channel: str
    agent_id: str | None
    score: int | None = None
    done: bool = False


class SurveyDesk:
    """The ``Survey`` command (see the module doc)."""

    def __init__(self, settings: RecordingSettings, model: CallModel, board: Any, center: Any, pbx: IPBX,
                 desk: Any, flow_loaded: Callable[[str], bool] = lambda name: True):
        self.settings, self.model, self.board, self.center, self.pbx, self.desk = (
            settings, model, board, center, pbx, desk)
        #: Whether the IVR runs a flow of that name now (the survey needs its flow).
        self.flow_loaded = flow_loaded
        #: Callers in the survey, by channel Uniqueid.
        self.surveys: dict[str, Survey] = {}
        desk.add("Survey", self.survey_command)
        model.subscribe(self._on_event)

    async def survey_command(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Hand the caller of the agent's call to the survey (the agent's leg ends)."""
        if self.settings.survey == "off":
            raise CTIError("survey_disabled", "the satisfaction survey is off ([recording] survey)")
        agent_id = require_login(session)["agent"]
        call_id = agent_call(self.board, self.model, session, args)
        survey = await self.send(call_id, agent_id)
        return {"call": call_id, "flow": self.settings.survey_flow, "channel": survey.channel}

    async def send(self, call_id: str, agent_id: str | None) -> Survey:
        """Send the customer of ``call_id`` to the survey; CTIError ``no_call``, ``in_survey``, ``switch_error``."""
        leg = customer_leg(self.model, self.center, call_id)
        agent = self.board.get(agent_id) if agent_id is not None else None
        if leg is None or (agent is not None and leg.name.rsplit("-", 1)[0] == agent.station):
            raise CTIError("no_call", "the call has no customer on the line")
        if not self.flow_loaded(self.settings.survey_flow):
            raise CTIError("survey_unavailable", f"the IVR does not run the {self.settings.survey_flow} flow")
        if leg.uniqueid in self.surveys:
            raise CTIError("in_survey", "the caller is already in the survey")
        survey = self.surveys[leg.uniqueid] = Survey(call_id, leg.name, agent_id)
        if self.center is not None:  # the agent is done (wrap-up); the caller, parked again, is not queued
            self.center.hand_over(call_id, None, leg.name, answered=True)
        try:
            await self.pbx.set_variable(leg.name, "CTID_FLOW", self.settings.survey_flow)
            await self.pbx.redirect(leg.name, IVR_CONTEXT, "s")
        except PBXError as e:
            self.surveys.pop(leg.uniqueid, None)
            raise CTIError("switch_error", f"the switch did not move the caller: {e}") from None
        log.info("call {call_id}: caller {channel} sent to the survey (agent {agent})", call_id=call_id,
                 channel=leg.name, agent=agent_id)
        return survey

    # -- the call model --------------------------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        if isinstance(event, LegRemoved):
            self.surveys.pop(event.uniqueid, None)
        elif isinstance(event, VariableSet) and event.uniqueid in self.surveys:
            self._variable(self.surveys[event.uniqueid], event)
        elif isinstance(event, VariableSet) and event.name == "CTID_SURVEY" and event.value == "started":
            self._adopt(event)
        elif isinstance(event, CallEnded):
            for uniqueid in [u for u, s in self.surveys.items() if s.call_id == event.call_id]:
                del self.surveys[uniqueid]

    def _adopt(self, event: VariableSet) -> None:
        """The dialplan sent a served caller to the survey (its agent hung up; ``after_every_call``)."""
        delivery = self.center.deliveries.get(event.call_id) if self.center is not None else None
        channel = self.model.channels.get(event.uniqueid)
        if delivery is None or delivery.answered_at is None or channel is None:
            return  # not a call an agent served (a route rule's IVR target, say): not ours
        self.surveys[event.uniqueid] = Survey(event.call_id, channel.name, delivery.agent_id)
        self.center.hand_over(event.call_id, None, channel.name, answered=True)
        log.info("call {call_id}: agent {agent} hung up; caller {channel} sent to the survey", call_id=event.call_id,
                 agent=delivery.agent_id, channel=channel.name)

    def _variable(self, survey: Survey, event: VariableSet) -> None:
        if event.name == "CTID_SATISFACTION" and event.value.isdigit() and 1 <= int(event.value) <= 5:
            survey.score = int(event.value)
            log.info("call {call_id}: the caller rated the service {score}", call_id=survey.call_id,
                     score=survey.score)
            if survey.agent_id is not None:
                self.desk.notify(survey.agent_id, "SurveyScored", {"call": survey.call_id, "score": survey.score})
            self._hang_up(survey)  # the flow said thank you before storing the score
        elif event.name == "CTID_PARKED" and event.value == "1":  # back from the flow without a score
            self._hang_up(survey)

    def _hang_up(self, survey: Survey) -> None:
        if not survey.done:
            survey.done = True
            self.pbx.hangup(survey.channel).addErrback(
                lambda failure: log.warn("call {call_id}: could not hang up after the survey: {error}",
                                         call_id=survey.call_id, error=failure.getErrorMessage()))
