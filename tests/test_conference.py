"""End to end: three-party calls and conferences (ConfBridge) through the simulated switch over loopback."""

from __future__ import annotations

import pytest
import pytest_twisted

from ctid.adapters.pbxsim.confbridge import conferences
from ctid.adapters.pbxsim.testing import EventRecorder
from ctid.calls import CallEnded
from ctid.clientconnection import CTIClientError
from tests.test_center import board, signed_in, states
from tests.test_transfers import named, talking

pytestmark = pytest.mark.sim(talk_time="60 60", patience="60 60", hold_rate="0", answer_delay="0.1 0.1")


def state(daemon, agent):
    return board(daemon).get(agent).state.value


def members(daemon, name):
    """Channel names in the simulated ConfBridge ``name`` (empty when it does not exist)."""
    conference = conferences(daemon.world).get(name)
    return sorted(c.name for c in conference.bridge.members) if conference is not None else []


def joined(recorder, prefix):
    return [e for e in recorder.of("ConfbridgeJoin") if e.get("Channel").startswith(prefix)]


async def consulting(daemon, one):
    """1001 (talking to a caller) consults 1002, who answers; returns (two, two_events)."""
    two, two_events = await signed_in(daemon, "1002")
    await one.call("ConsultationCall", agent="1002")
    await daemon.until(lambda: state(daemon, "1002") == "talking", "1002 to answer the consultation")
    return two, two_events


@pytest_twisted.ensureDeferred
async def test_consultation_becomes_a_three_party_conference(daemon):
    """ConferenceCall after ConsultationCall: caller, 1001 and 1002 in one ConfBridge, both agents talking."""
    recorder = EventRecorder(daemon.world)
    one, one_events, trunk = await talking(daemon)
    two, two_events = await consulting(daemon, one)
    bystander, bystander_events = await signed_in(daemon, "1003")
    result = await one.call("ConferenceCall")
    name = result["conference"]
    assert (result["call"], result["owner"], name) == (trunk.linkedid, "1001", f"ctid-{trunk.linkedid}")
    await daemon.until(lambda: named(one_events, "Conferenced"), "the conference to form")
    assert len(members(daemon, name)) == 3
    assert [e.get("Conference") for e in recorder.of("ConfbridgeStart")] == [name]
    for prefix in ("PJSIP/trunk-", "PJSIP/1001-", "PJSIP/1002-"):
        (join,) = joined(recorder, prefix)
        assert (join.get("Conference"), join.get("BridgeType"), join.get("BridgeTechnology"), join.get("Admin"),
                join.get("Muted"), join.get("Linkedid")) == (name, "base", "softmix", "No", "No", trunk.linkedid)
    assert recorder.of("VarSet", Variable="CTID_CONFERENCE", Value=name)
    redirect = recorder.of("Newexten", Context="ctid-conference", Application="ConfBridge")
    assert {e.get("AppData") for e in redirect} == {f"{name},default_bridge,default_user"}
    (formed,) = named(two_events, "Conferenced")
    assert sorted(p["kind"] for p in formed["parties"]) == ["agent", "agent", "customer"]
    assert (state(daemon, "1001"), state(daemon, "1002")) == ("talking", "talking")
    assert not named(one_events, "ConsultationEnded")  # the consultation became the conference
    # The owner drops 1002: kicked out of the ConfBridge, hung up, wrap-up; the caller and 1001 stay.
    await one.call("DropParty", agent="1002")
    await daemon.until(lambda: "wrap_up" in states(two_events), "1002 to wrap up")
    assert recorder.of("ConfbridgeLeave", Conference=name)
    await daemon.until(lambda: named(one_events, "PartyDropped"), "1001 to be told")
    (dropped,) = named(one_events, "PartyDropped")
    assert (dropped["party"]["agent"], dropped["reason"]) == ("1002", "dropped")
    assert named(two_events, "PartyDropped")
    assert len(members(daemon, name)) == 2 and state(daemon, "1001") == "talking"
    # The caller hangs up: no customer left, the conference ends, 1001 is kicked and wraps up.
    daemon.world.remote_hangup(trunk)
    await daemon.until(lambda: named(one_events, "ConferenceEnded"), "the conference to end")
    assert named(one_events, "ConferenceEnded")[0]["reason"] == "no_customer"
    await daemon.until(lambda: recorder.of("ConfbridgeEnd", Conference=name), "ConfbridgeEnd")
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the call to end")
    await daemon.until(lambda: state(daemon, "1001") in ("wrap_up", "ready"), "1001 to wrap up")
    assert {e.name for e in bystander_events} == {"AgentStateChanged"}  # nothing of it reached 1003
    for client in (one, two, bystander):
        await client.close()


@pytest_twisted.ensureDeferred
async def test_conference_with_a_number_then_an_agent_added_ends_when_the_owner_leaves(daemon):
    """ConferenceCall with a number: Originate of Local/<n>@ctid-out; AddParty 1003 rings, talks; owner hangs up."""
    recorder = EventRecorder(daemon.world)
    one, one_events, trunk = await talking(daemon)
    three, three_events = await signed_in(daemon, "1003")
    result = await one.call("ConferenceCall", number="13912345678")
    name = result["conference"]
    await daemon.until(lambda: len(members(daemon, name)) == 3, "the number to join")
    assert joined(recorder, "Local/13912345678@ctid-out-")
    assert recorder.of("DialBegin", DialString="13912345678@trunk")
    await daemon.until(lambda: named(one_events, "PartyAdded"), "the number to be announced")
    assert named(one_events, "PartyAdded")[0]["party"]["number"] == "13912345678"
    added = await one.call("AddParty", agent="1003")
    assert added["party"]["agent"] == "1003"
    await daemon.until(lambda: "talking" in states(three_events), "1003 to answer")
    assert states(three_events) == ["ready", "reserved", "ringing", "talking"]
    (pop,) = named(three_events, "Delivered")
    assert (pop["call"], pop["transfer"], pop["transferred_by"]) == (trunk.linkedid, "conference", "1001")
    assert len(members(daemon, name)) == 4
    assert joined(recorder, "PJSIP/1003-")[0].get("Linkedid") != trunk.linkedid  # an originated call of its own
    # The owner hangs up: the conference ends for everybody, 1003 wraps up, the caller is hung up.
    owner_leg = next(c for c in daemon.world.live() if c.name.startswith("PJSIP/1001-"))
    daemon.world.remote_hangup(owner_leg)
    await daemon.until(lambda: named(three_events, "ConferenceEnded"), "the conference to end")
    assert named(three_events, "ConferenceEnded")[0]["reason"] == "owner_left"
    assert named(one_events, "ConferenceEnded")[0]["reason"] == "owner_left"
    await daemon.until(lambda: recorder.of("ConfbridgeEnd", Conference=name), "ConfbridgeEnd")
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the caller to be hung up")
    await daemon.until(lambda: "wrap_up" in states(three_events), "1003 to wrap up")
    await daemon.until(lambda: state(daemon, "1001") in ("wrap_up", "ready"), "1001 to wrap up")
    await one.close()
    await three.close()


@pytest_twisted.ensureDeferred
async def test_consulted_number_is_moved_into_the_conference(daemon):
    """Atxfer to a number, then ConferenceCall: the consulted Local leg is redirected, not hung up."""
    recorder = EventRecorder(daemon.world)
    one, one_events, trunk = await talking(daemon)
    await one.call("ConsultationCall", number="13912345678")
    # up: the caller's bridge (on hold), the consultation bridge, and Local;2 with the trunk
    await daemon.until(lambda: len(daemon.world.bridges) == 3, "the number to answer")
    result = await one.call("ConferenceCall")
    name = result["conference"]
    await daemon.until(lambda: named(one_events, "Conferenced"), "the conference to form")
    assert len(members(daemon, name)) == 3
    assert joined(recorder, "Local/13912345678@ctid-out-")
    assert not recorder.of("AttendedTransfer")
    parties = named(one_events, "Conferenced")[0]["parties"]
    assert sorted(p["kind"] for p in parties) == ["agent", "customer", "number"]
    await one.call("DropParty", number="13912345678")
    await daemon.until(lambda: len(members(daemon, name)) == 2, "the number to be dropped")
    assert state(daemon, "1001") == "talking"
    daemon.world.remote_hangup(trunk)
    await daemon.until(lambda: state(daemon, "1001") in ("wrap_up", "ready"), "1001 to wrap up")
    await one.close()


@pytest_twisted.ensureDeferred
async def test_refusals_have_stable_codes(daemon):
    """Only the owner changes its own conference; bad parties, busy agents, double conferences: stable codes."""
    one, one_events, trunk = await talking(daemon)
    two, _ = await consulting(daemon, one)
    three, _ = await signed_in(daemon, "1003")
    await three.call("SetAgentState", state="not_ready", reason="break")
    before = [
        (three, "ConferenceCall", {}, "no_call"),
        (one, "ConferenceCall", {"call": "other-call"}, "not_your_call"),
        (one, "ConferenceCall", {"number": "13912345678"}, "consultation_in_progress"),
        (one, "AddParty", {"number": "13912345678"}, "no_conference"),
    ]
    await check(before)
    await one.call("ConferenceCall")
    await daemon.until(lambda: named(one_events, "Conferenced"), "the conference to form")
    after = [
        (one, "ConferenceCall", {}, "conference_in_progress"),
        (two, "AddParty", {"number": "13912345678"}, "not_conference_owner"),
        (two, "DropParty", {"agent": "1001"}, "not_conference_owner"),
        (one, "AddParty", {"agent": "1003"}, "agent_not_available"),
        (one, "AddParty", {"agent": "1004"}, "unknown_agent"),
        (one, "AddParty", {"agent": "1002"}, "already_in_conference"),
        (one, "AddParty", {"queue": "general"}, "bad_target"),
        (one, "AddParty", {"number": "12ab"}, "bad_request"),
        (one, "DropParty", {"agent": "1001"}, "bad_target"),
        (one, "DropParty", {"party": "nobody"}, "unknown_party"),
        (one, "DropParty", {"agent": "1002", "number": "1"}, "bad_request"),
        (three, "DropParty", {"agent": "1002"}, "no_call"),
    ]
    await check(after)
    assert (state(daemon, "1001"), state(daemon, "1002"), state(daemon, "1003")) == ("talking", "talking", "not_ready")
    daemon.world.remote_hangup(trunk)
    await daemon.until(lambda: named(one_events, "ConferenceEnded"), "the conference to end")
    for client in (one, two, three):
        await client.close()


async def check(cases):
    for client, command, args, code in cases:
        with pytest.raises(CTIClientError) as refused:
            await client.call(command, **args)
        assert refused.value.code == code, (command, args)
