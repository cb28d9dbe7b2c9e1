"""End to end: agents transfer their calls (blind and consultation) through the simulated switch over loopback."""

from __future__ import annotations

import pytest
import pytest_twisted

from ctid.adapters.pbxsim.testing import EventRecorder
from ctid.calls import CallEnded, CallTransferred
from ctid.clientconnection import CTIClientError
from tests.test_center import board, signed_in, states

pytestmark = pytest.mark.sim(talk_time="60 60", patience="60 60", hold_rate="0", answer_delay="0.1 0.1")


async def talking(daemon, agent="1001", number="13800138000"):
    """A caller delivered to ``agent`` (the only ready one) and answered; returns (client, events, trunk)."""
    client, events = await signed_in(daemon, agent)
    trunk = daemon.call_in(number, "95566", script="1", patience=60)
    await daemon.until(lambda: board(daemon).get(agent).state.value == "talking", f"{agent} to talk")
    return client, events, trunk


def center(daemon):
    return daemon.root.getServiceNamed("center")


def transferred(daemon, trunk, kind):
    return [e for e in daemon.of(CallTransferred, call_id=trunk.linkedid) if e.kind == kind]


def named(events, name):
    return [e.data for e in events if e.name == name]


@pytest_twisted.ensureDeferred
async def test_idle_agents_are_listed_by_group_without_the_asker(daemon):
    """GetIdleAgents lists the ready agents (filtered by skill group), not the agent asking."""
    one, _ = await signed_in(daemon, "1001")
    two, _ = await signed_in(daemon, "1002")
    result = await one.call("GetIdleAgents", group="accounts")
    assert [a["agent"] for a in result["agents"]] == ["1002"]
    assert (await one.call("GetIdleAgents", group="consultation"))["agents"] == []
    await one.close()
    await two.close()


@pytest_twisted.ensureDeferred
async def test_blind_transfer_to_an_agent(daemon):
    """BlindTransfer into ctid-deliver: 1001 wraps up, 1002 is popped with the call data, rings and talks."""
    recorder = EventRecorder(daemon.world)
    one, one_events, trunk = await talking(daemon)
    daemon.world.set_var(trunk, "CTID_MENU", "balance")
    two, two_events = await signed_in(daemon, "1002")
    result = await one.call("SingleStepTransfer", agent="1002")
    assert result == {"call": trunk.linkedid, "to": {"agent": "1002"}}
    await daemon.until(lambda: board(daemon).get("1002").state.value == "talking", "1002 to talk")
    (blind,) = recorder.of("BlindTransfer")
    assert (blind.get("TransfererChannel").startswith("PJSIP/1001-"), blind.get("Context"),
            blind.get("Extension")) == (True, "ctid-deliver", "s")
    assert recorder.of("VarSet", Variable="CTID_TARGET", Value="PJSIP/1002")
    assert states(one_events)[-2:] == ["talking", "wrap_up"] or states(one_events)[-1] == "ready"
    assert states(two_events) == ["ready", "reserved", "ringing", "talking"]
    (pop,) = named(two_events, "Delivered")
    assert (pop["call"], pop["transferred_by"], pop["transfer"], pop["data"]) == \
        (trunk.linkedid, "1001", "blind", {"CTID_MENU": "balance"})
    assert center(daemon).deliveries[trunk.linkedid].agent_id == "1002"
    assert transferred(daemon, trunk, "blind")
    assert not named(one_events, "Delivered")[1:]
    daemon.world.remote_hangup(trunk)
    await daemon.until(lambda: board(daemon).get("1002").state.value in ("wrap_up", "ready"), "1002 to wrap up")
    await one.close()
    await two.close()


@pytest_twisted.ensureDeferred
async def test_blind_transfer_to_a_queue_waits_and_is_delivered_again(daemon):
    """BlindTransfer into ctid-wait: the call waits in the ACD again and goes to the next ready agent."""
    recorder = EventRecorder(daemon.world)
    one, one_events, trunk = await talking(daemon)
    await one.call("SetAgentState", state="not_ready", reason="break", after_call=True)
    three, three_events = await signed_in(daemon, "1003")
    await one.call("SingleStepTransfer", queue="general")
    await daemon.until(lambda: board(daemon).get("1003").state.value == "talking", "1003 to talk")
    assert recorder.of("BlindTransfer", Context="ctid-wait")
    assert "wrap_up" in states(one_events)
    assert states(three_events) == ["ready", "reserved", "ringing", "talking"]
    (pop,) = named(three_events, "Delivered")
    assert (pop["call"], pop["queue"]) == (trunk.linkedid, "general")
    await one.close()
    await three.close()


@pytest_twisted.ensureDeferred
async def test_blind_transfer_to_a_number_leaves_the_center(daemon):
    """BlindTransfer into ctid-out: the caller is connected to the number; the agent wraps up."""
    recorder = EventRecorder(daemon.world)
    one, one_events, trunk = await talking(daemon)
    await one.call("SingleStepTransfer", number="13912345678")
    await daemon.until(lambda: recorder.of("DialBegin", DialString="13912345678@trunk"), "the outside leg")
    assert recorder.of("BlindTransfer", Context="ctid-out", Extension="13912345678")
    await daemon.until(lambda: "wrap_up" in states(one_events), "1001 to wrap up")
    assert trunk.linkedid not in center(daemon).deliveries
    await one.close()


@pytest_twisted.ensureDeferred
async def test_blind_transfer_to_an_ivr_flow_comes_back_to_the_queue(daemon):
    """BlindTransfer into ctid-ivr with CTID_FLOW; the flow hands the caller back, it is queued again."""
    recorder = EventRecorder(daemon.world)
    one, one_events, trunk = await talking(daemon)
    await one.call("SetAgentState", state="not_ready", reason="break", after_call=True)
    await one.call("SingleStepTransfer", flow="survey")
    assert recorder.of("BlindTransfer", Context="ctid-ivr")
    assert recorder.of("VarSet", Variable="CTID_FLOW", Value="survey")
    await daemon.until(lambda: center(daemon).acd.queue_length("general") == 1, "the caller back in the queue")
    assert "wrap_up" in states(one_events)
    two, two_events = await signed_in(daemon, "1002")
    await daemon.until(lambda: board(daemon).get("1002").state.value == "talking", "1002 to talk")
    await one.close()
    await two.close()


@pytest_twisted.ensureDeferred
async def test_consultation_then_complete(daemon):
    """Atxfer to 1002@ctid-agents; 1002 rings and talks; TransferCall hands the caller over; 1001 wraps up."""
    recorder = EventRecorder(daemon.world)
    one, one_events, trunk = await talking(daemon)
    two, two_events = await signed_in(daemon, "1002")
    bystander, bystander_events = await signed_in(daemon, "1003")
    await bystander.call("SetAgentState", state="not_ready", reason="break")
    await one.call("ConsultationCall", agent="1002")
    await daemon.until(lambda: board(daemon).get("1002").state.value == "talking", "1002 to answer")
    (atxfer,) = recorder.of("DialBegin", DialString="1002@ctid-agents")  # the Atxfer's consultation leg
    assert atxfer.get("Channel").startswith("PJSIP/1001-")
    assert board(daemon).get("1001").state.value == "talking"
    (pop,) = named(two_events, "Delivered")
    assert (pop["transfer"], pop["transferred_by"]) == ("consultation", "1001")
    await one.call("TransferCall")
    await daemon.until(lambda: transferred(daemon, trunk, "attended"), "the transfer")
    await daemon.until(lambda: "wrap_up" in states(one_events), "1001 to wrap up")
    assert board(daemon).get("1002").state.value == "talking"
    assert center(daemon).deliveries[trunk.linkedid].agent_id == "1002"
    assert named(one_events, "CallTransferred")[0]["to"] == {"agent": "1002"}
    assert named(two_events, "CallTransferred")
    assert {e.name for e in bystander_events} == {"AgentStateChanged"}  # nothing of the transfer reaches 1003
    await bystander.close()
    daemon.world.remote_hangup(trunk)
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the call to end")
    await daemon.until(lambda: board(daemon).get("1002").state.value in ("wrap_up", "ready"), "1002 to wrap up")
    await one.close()
    await two.close()


@pytest_twisted.ensureDeferred
async def test_consultation_cancelled(daemon):
    """ReconnectCall hangs the consulted party up: 1002 wraps up, 1001 is back with the caller."""
    one, one_events, trunk = await talking(daemon)
    two, two_events = await signed_in(daemon, "1002")
    await one.call("ConsultationCall", agent="1002")
    await daemon.until(lambda: board(daemon).get("1002").state.value == "talking", "1002 to answer")
    await one.call("ReconnectCall")
    await daemon.until(lambda: named(one_events, "ConsultationEnded"), "the consultation to end")
    assert named(one_events, "ConsultationEnded")[0]["reason"] == "cancelled"
    await daemon.until(lambda: len(daemon.world.bridges) == 1 and len(trunk.bridge.members) == 2 if trunk.bridge
                       else False, "1001 back with the caller")
    assert "wrap_up" in states(two_events)
    assert board(daemon).get("1001").state.value == "talking"
    assert not named(two_events, "CallTransferred")
    await one.close()
    await two.close()


@pytest_twisted.ensureDeferred
async def test_refusals_have_stable_codes(daemon):
    """No call, someone else's call, a busy or unknown target, no consultation: each a stable error code."""
    one, _, trunk = await talking(daemon)
    two, _ = await signed_in(daemon, "1002")
    three, _ = await signed_in(daemon, "1003")
    await three.call("SetAgentState", state="not_ready", reason="break")
    cases = [
        (two, "SingleStepTransfer", {"agent": "1003"}, "no_call"),
        (two, "SingleStepTransfer", {"call": trunk.linkedid, "agent": "1003"}, "no_call"),
        (one, "SingleStepTransfer", {"call": "other-call", "agent": "1002"}, "not_your_call"),
        (one, "SingleStepTransfer", {"agent": "1003"}, "agent_not_available"),
        (one, "SingleStepTransfer", {"agent": "1004"}, "unknown_agent"),
        (one, "SingleStepTransfer", {"agent": "1001"}, "bad_target"),
        (one, "SingleStepTransfer", {"queue": "nowhere"}, "unknown_queue"),
        (one, "SingleStepTransfer", {"group": "nobody"}, "unknown_group"),
        (one, "SingleStepTransfer", {"agent": "1002", "number": "1"}, "bad_request"),
        (one, "SingleStepTransfer", {"number": "12ab"}, "bad_request"),
        (one, "ConsultationCall", {"queue": "general"}, "bad_target"),
        (one, "TransferCall", {}, "no_consultation"),
        (one, "ReconnectCall", {}, "no_consultation"),
    ]
    for client, command, args, code in cases:
        with pytest.raises(CTIClientError) as refused:
            await client.call(command, **args)
        assert refused.value.code == code, (command, args)
    assert board(daemon).get("1001").state.value == "talking"
    assert board(daemon).get("1002").state.value == "ready"
    for client in (one, two, three):
        await client.close()
