"""The satisfaction survey end to end: the caller goes to the survey flow over FastAGI and the score is kept."""

from __future__ import annotations

import pytest_twisted

from ctid.adapters.pbxsim.testing import EventRecorder
from ctid.adapters.store.schema import call_records
from ctid.calls import CallEnded
from tests.test_recording import agent_state, desktop, recording_daemon, refused, talking
from tests.test_records import written


async def surveyed(daemon, trunk, switch):
    """Wait for the call to end after the survey; return its call record."""
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the call to end after the survey", 30)
    assert [e for e in switch.of("AGIExecStart", Channel=trunk.name) if "survey-thanks" in e.get("Command")]
    (record,) = await written(daemon, call_records, "the call record", call_id=trunk.linkedid)
    return record


@pytest_twisted.ensureDeferred
async def test_the_agent_hands_the_caller_to_the_survey_and_the_score_is_stored(tmp_path):
    """Survey: the caller leaves the agent (wrap-up) for the survey flow, presses 4; the call record keeps 4."""
    daemon = await recording_daemon(tmp_path, "survey = on_command", ivr=True, agi_script="queue", talk_time="60 60",
                                    patience="60 60")
    try:
        switch = EventRecorder(daemon.world)
        client, events = await desktop(daemon, "1002", ready=True)
        trunk = daemon.call_in("13800138000", "95566", script="4", patience=60)
        await daemon.until(lambda: agent_state(daemon, "1002") == "talking", "1002 to talk")
        answer = await client.call("Survey")
        assert (answer["call"], answer["flow"], answer["channel"]) == (trunk.linkedid, "survey", trunk.name)
        await daemon.until(lambda: agent_state(daemon, "1002") != "talking", "the agent to be done")
        record = await surveyed(daemon, trunk, switch)
        assert (record["satisfaction"], record["agent_id"]) == (4, "1002")
        assert [e.data for e in events if e.name == "SurveyScored"] == [{"call": trunk.linkedid, "score": 4}]
        assert switch.of("VarSet", Channel=trunk.name, Variable="CTID_FLOW", Value="survey")
        await client.close()
    finally:
        await daemon.stop()


@pytest_twisted.ensureDeferred
async def test_survey_refusals(tmp_path):
    """No survey flow loaded: survey_unavailable; an agent with no call: no_call."""
    daemon = await recording_daemon(tmp_path, "survey = on_command", talk_time="60 60")
    try:
        client, _ = await desktop(daemon, "1002", ready=True)
        await refused("no_call", client.call("Survey"))
        await talking(daemon, "1002")
        await refused("survey_unavailable", client.call("Survey"))
        await client.close()
    finally:
        await daemon.stop()


@pytest_twisted.ensureDeferred
async def test_survey_off_is_refused(tmp_path):
    """survey = off: the Survey command answers survey_disabled."""
    daemon = await recording_daemon(tmp_path, "survey = off", ivr=True, agi_script="queue", talk_time="60 60",
                                    patience="60 60")
    try:
        client, _ = await desktop(daemon, "1002", ready=True)
        await refused("survey_disabled", client.call("Survey"))
        await client.close()
    finally:
        await daemon.stop()


@pytest_twisted.ensureDeferred
async def test_after_every_call_the_caller_whose_agent_hangs_up_rates_the_service(tmp_path):
    """survey = after_every_call: the agent hangs up (ClearConnection); Dial's g option lets the caller go on to
    ctid-answered and the survey; it presses 4: SurveyScored to the agent, the call record keeps 4."""
    daemon = await recording_daemon(tmp_path, "survey = after_every_call", ivr=True, agi_script="queue",
                                    talk_time="60 60", patience="60 60")
    try:
        switch = EventRecorder(daemon.world)
        client, events = await desktop(daemon, "1002", ready=True)
        trunk = daemon.call_in("13800138000", "95566", script="4", patience=60)
        await daemon.until(lambda: agent_state(daemon, "1002") == "talking", "1002 to talk")
        await client.call("ClearConnection")
        await daemon.until(lambda: agent_state(daemon, "1002") != "talking", "the agent to be done")
        record = await surveyed(daemon, trunk, switch)
        assert (record["satisfaction"], record["agent_id"]) == (4, "1002")
        assert [e.data for e in events if e.name == "SurveyScored"] == [{"call": trunk.linkedid, "score": 4}]
        contexts = [e.get("Context") for e in switch.of("Newexten", Channel=trunk.name)]
        assert "ctid-answered" in contexts and "ctid-ivr" in contexts
        await client.close()
    finally:
        await daemon.stop()
