"""Synchronous tests of the simulated switch's World on a Clock (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctid.adapters.pbxsim.dialplan import CTID_DIALPLAN, Dialplan, pattern_matches, substitute
from ctid.adapters.pbxsim.originate import Originate, OriginateRequest
from ctid.adapters.pbxsim.testing import (
    EventRecorder,
    ScriptedPhone,
    advance,
    inbound_call,
    make_world,
)
from ctid.adapters.pbxsim.transfer import bridge_channels

REPO = Path(__file__).resolve().parent.parent


def deliver(world, chan, target, ring="15"):
    """What ctid does: Setvar CTID_TARGET + CTID_RING, then Redirect to ctid-deliver."""
    world.set_var(chan, "CTID_TARGET", target)
    world.set_var(chan, "CTID_RING", ring)
    world.redirect(chan, "ctid-deliver", "s", 1)


@pytest.fixture
def sim():
    """A World with two scripted agent phones and an event recorder."""
    world, clock = make_world()
    world.devices["1001"] = ScriptedPhone(answer_after=2.0)
    world.devices["1002"] = ScriptedPhone(answer_after=None)
    return world, clock, EventRecorder(world)


def test_uniqueids_and_channel_names_follow_asterisk():
    """Uniqueid is <epoch>.<seq> with one global sequence; names carry a per-technology 8-hex-digit counter."""
    world, clock = make_world()
    a = inbound_call(world, "13800138000", "95566")
    one, two = world.local_pair("s", "ctid-wait")
    b = inbound_call(world, "02112345678", "95566")
    assert a.uniqueid == "1795343254.0" and one.uniqueid == "1795343254.1" and two.uniqueid == "1795343254.2"
    assert a.name == "PJSIP/trunk-00000000" and b.name == "PJSIP/trunk-00000001"
    assert (one.name, two.name) == ("Local/s@ctid-wait-00000000;1", "Local/s@ctid-wait-00000000;2")


def test_local_two_and_dialled_channels_inherit_linkedid(sim):
    """A Local ;2 takes ;1's Linkedid; a dialled channel takes the dialling channel's Linkedid."""
    world, clock, rec = sim
    caller = inbound_call(world, "13800138000", "95566")
    one, two = world.local_pair("s", "ctid-wait")
    assert one.linkedid == one.uniqueid and two.linkedid == one.uniqueid
    advance(clock, 1)
    deliver(world, caller, "PJSIP/1001")
    advance(clock, 1)
    agent = world.find("PJSIP/1001-00000001")
    assert agent is not None and agent.uniqueid != caller.uniqueid
    assert agent.linkedid == caller.uniqueid
    assert rec.of("Newchannel", Channel=agent.name)[0].get("Linkedid") == caller.uniqueid


def test_bridge_switches_every_member_to_the_oldest_linkedid(sim):
    """Channels with different Linkedids sharing a bridge all move to the oldest one (bridge_channel.c)."""
    world, clock, rec = sim
    older = inbound_call(world, "13800138000", "95566")
    advance(clock, 5)
    newer = inbound_call(world, "13900001111", "95566")
    advance(clock, 1)
    assert older.linkedid != newer.linkedid
    bridge_channels(world, newer, older)
    advance(clock, 1)
    assert newer.linkedid == older.uniqueid == older.linkedid
    enters = rec.of("BridgeEnter")
    assert [e.get("Channel") for e in enters] == [newer.name, older.name]
    assert [e.get("Linkedid") for e in enters] == [newer.uniqueid, older.uniqueid]
    world.remote_hangup(older, 16)
    advance(clock, 1)
    leaves = {e.get("Channel"): e.get("Linkedid") for e in rec.of("BridgeLeave")}
    assert leaves == {newer.name: older.uniqueid, older.name: older.uniqueid}


def test_park_redirect_deliver_answered_exact_sequence(sim):
    """ctid-wait -> Setvar + Redirect -> ctid-deliver -> agent answers -> bridge, as DESIGN.md describes."""
    world, clock, rec = sim
    caller = inbound_call(world, "13800138000", "95566")
    advance(clock, 2)
    assert rec.summary() == [
        "Newchannel PJSIP/trunk-00000000", "Newstate PJSIP/trunk-00000000",
        "MusicOnHoldStart PJSIP/trunk-00000000",
    ]
    assert caller.variables["CTID_PARKED"] == "1" and caller.variables["AGISTATUS"] == "FAILURE"
    rec.clear()
    deliver(world, caller, "PJSIP/1001")
    advance(clock, 3)
    agent = "PJSIP/1001-00000001"
    assert rec.summary() == [
        "MusicOnHoldStop PJSIP/trunk-00000000", "Newchannel " + agent, "NewCallerid " + agent,
        "NewConnectedLine " + agent, "DialBegin PJSIP/trunk-00000000", "Newstate " + agent,
        "DialState PJSIP/trunk-00000000", "Newstate " + agent, "DialEnd PJSIP/trunk-00000000",
        "BridgeCreate " + rec.of("BridgeCreate")[0].get("BridgeUniqueid"),
        "BridgeEnter " + agent, "BridgeEnter PJSIP/trunk-00000000",
    ]
    dial = rec.of("DialEnd")[0]
    assert dial.get("DialStatus") == "ANSWER" and dial.get("DestChannel") == agent
    assert rec.of("Newexten", Channel="PJSIP/trunk-00000000")[0].get("AppData") == "PJSIP/1001,15,g"
    assert rec.of("Newstate", Channel=agent)[0].get("ChannelStateDesc") == "Ringing"


def test_delivery_failures_raise_ctid_delivery_failed_and_return_to_wait(sim):
    """NOANSWER after CTID_RING, BUSY, CHANUNAVAIL (unknown phone / target unset): UserEvent, then music again."""
    world, clock, rec = sim
    world.devices["1003"] = ScriptedPhone(busy=True)
    caller = inbound_call(world, "13800138000", "95566")
    advance(clock, 1)
    outcomes = []
    for target in ("PJSIP/1002", "PJSIP/1003", "PJSIP/9999", ""):
        rec.clear()
        deliver(world, caller, target, ring="4")
        advance(clock, 6)
        failed = rec.of("UserEvent", UserEvent="CtidDeliveryFailed")
        assert len(failed) == 1
        outcomes.append(failed[0].get("Dialstatus"))
        assert rec.names()[-1] == "MusicOnHoldStart"
        assert failed[0].get("Channel") == caller.name
    assert outcomes == ["NOANSWER", "BUSY", "CHANUNAVAIL", "CHANUNAVAIL"]
    assert not caller.dead and caller.context == "ctid-wait"


def test_noanswer_tears_down_the_ringing_phone_after_ctid_ring(sim):
    """The agent leg rings CTID_RING seconds, then DialEnd NOANSWER and its Hangup precede the UserEvent."""
    world, clock, rec = sim
    caller = inbound_call(world, "13800138000", "95566")
    advance(clock, 1)
    rec.clear()
    deliver(world, caller, "PJSIP/1002", ring="4")
    advance(clock, 3.9)
    assert not rec.of("DialEnd")
    advance(clock, 0.2)
    names = rec.names(skip=("VarSet", "Newexten"))
    assert names[names.index("DialEnd"):names.index("UserEvent") + 1] == ["DialEnd", "Hangup", "UserEvent"]
    assert rec.of("Hangup")[0].get("Channel") == "PJSIP/1002-00000001"


def test_hangup_of_a_bridged_party_leaves_the_bridge_before_hanging_up(sim):
    """The agent hangs up: BridgeLeave x2 and BridgeDestroy come before either Hangup; the caller goes too."""
    world, clock, rec = sim
    world.devices["1001"] = ScriptedPhone(answer_after=1.0, talk=30.0)
    caller = inbound_call(world, "13800138000", "95566")
    advance(clock, 1)
    deliver(world, caller, "PJSIP/1001")
    advance(clock, 5)
    rec.clear()
    advance(clock, 40)
    assert rec.summary(skip=("VarSet", "Newexten")) == [
        "HangupRequest PJSIP/1001-00000001", "BridgeLeave PJSIP/1001-00000001",
        "BridgeLeave PJSIP/trunk-00000000",
        "BridgeDestroy " + rec.of("BridgeDestroy")[0].get("BridgeUniqueid"),
        "Hangup PJSIP/1001-00000001", "SoftHangupRequest PJSIP/trunk-00000000", "Hangup PJSIP/trunk-00000000",
    ]
    assert [e.get("Cause") for e in rec.of("Hangup")] == ["16", "16"]
    assert world.channels == {} and world.bridges == {}


def test_caller_hangup_while_parked_ends_with_cause_16(sim):
    """A caller who gives up in ctid-wait: HangupRequest 16, MusicOnHoldStop, then Hangup 16 Normal Clearing."""
    world, clock, rec = sim
    caller = inbound_call(world, "13800138000", "95566")
    advance(clock, 1)
    rec.clear()
    world.remote_hangup(caller, 16)
    advance(clock, 1)
    assert rec.names() == ["HangupRequest", "MusicOnHoldStop", "SoftHangupRequest", "Hangup"]
    hangup = rec.of("Hangup")[0]
    assert (hangup.get("Cause"), hangup.get("Cause-txt")) == ("16", "Normal Clearing")


def test_direct_line_rings_the_agent_without_ctid(sim):
    """Calling 8 + extension goes straight to Dial(PJSIP/<ext>) and bridges on answer."""
    world, clock, rec = sim
    caller = inbound_call(world, "13800138000", "81001")
    advance(clock, 5)
    assert rec.of("DialEnd")[0].get("DialStatus") == "ANSWER"
    assert caller.bridge is not None and len(caller.bridge.members) == 2


def test_originate_phone_into_dialplan_reports_answer(sim):
    """Originate PJSIP/1001 into ctid-out: OriginateResponse Success/Reason 4, then the phone dials the trunk."""
    world, clock, rec = sim
    responses = []
    world.trunk = lambda number: ScriptedPhone(answer_after=3.0)
    req = OriginateRequest(channel="PJSIP/1001", context="ctid-out", exten="13800138000", caller_num="1001",
                           action_id="o1", channel_id="my-call-1")
    Originate(world, req, responses.append).start()
    advance(clock, 10)
    result = dict(responses[0])
    assert (result["Response"], result["Reason"], result["Uniqueid"]) == ("Success", 4, "my-call-1")
    trunk = [e for e in rec.of("Newchannel") if e.get("Channel").startswith("PJSIP/trunk-")]
    assert trunk and trunk[0].get("Linkedid") == "my-call-1"
    assert rec.of("DialEnd", DestChannel=trunk[0].get("Channel"))[0].get("DialStatus") == "ANSWER"


def test_originate_timeout_and_unknown_channel_fail(sim):
    """No answer within Timeout -> Failure Reason 3; an unknown endpoint -> Failure Reason 0, Uniqueid <null>."""
    world, clock, rec = sim
    responses = []
    Originate(world, OriginateRequest(channel="PJSIP/1002", application="Wait", data="5", timeout=3.0),
              responses.append).start()
    Originate(world, OriginateRequest(channel="PJSIP/7777", application="Wait"), responses.append).start()
    advance(clock, 5)
    by_channel = {dict(r)["Channel"]: dict(r) for r in responses}
    assert by_channel["PJSIP/7777"]["Reason"] == 0 and by_channel["PJSIP/7777"]["Uniqueid"] == "<null>"
    failed = by_channel["PJSIP/1002-00000000"]
    assert (failed["Response"], failed["Reason"]) == ("Failure", 3)
    assert world.channels == {}


def test_shipped_conf_file_is_the_simulated_dialplan():
    """conf/asterisk/extensions_ctid.conf and the embedded dialplan parse to the same contexts and globals."""
    shipped = Dialplan.parse((REPO / "conf" / "asterisk" / "extensions_ctid.conf").read_text())
    embedded = Dialplan.parse(CTID_DIALPLAN)
    assert shipped.globals == embedded.globals
    assert set(shipped.contexts) == set(embedded.contexts) >= {"ctid-in", "ctid-wait", "ctid-deliver"}
    for name, extensions in embedded.contexts.items():
        assert {k: v.steps for k, v in shipped.contexts[name].items()} == {k: v.steps for k, v in extensions.items()}
    assert embedded.find("ctid-deliver", "s", 1) == ("Dial", "${CTID_TARGET},${CTID_RING},g")
    assert embedded.find("ctid-deliver", "s", 2) == ("Goto", "ctid-dialed,${DIALSTATUS},1")
    assert embedded.find("ctid-dialed", "NOANSWER", 1) == ("UserEvent", "CtidDeliveryFailed,Dialstatus: ${DIALSTATUS}")


@pytest.mark.parametrize("pattern,exten,expected", [
    ("_X.", "95566", True), ("_X.", "s", False), ("_8X.", "81001", True), ("_8X.", "8", False),
    ("_NXX", "200", True), ("_NXX", "100", False), ("_[1-3]Z!", "15", True), ("_[1-3]Z!", "40", False),
])
def test_extension_patterns(pattern, exten, expected):
    """Asterisk pattern letters X Z N, sets, and the trailing . and ! wildcards."""
    assert pattern_matches(pattern, exten) is expected


def test_most_specific_pattern_wins():
    """81001 matches both _X. and _8X.; the direct-line pattern is chosen."""
    plan = Dialplan.parse(CTID_DIALPLAN)
    assert plan.find("ctid-in", "81001", 2) == ("Dial", "PJSIP/${EXTEN:1},${CTID_DIRECT_RING}")
    assert plan.find("ctid-in", "95566", 2) == ("AGI", "${CTID_AGI}")


def test_substitution_of_variables_substrings_and_functions():
    """${VAR}, ${EXTEN:1}, nested ${}, ${CALLERID(num)} and unset variables (empty)."""
    world, clock = make_world()
    chan = inbound_call(world, "13800138000", "81001")
    world.set_var(chan, "WHO", "CTID_RING", event=False)
    world.set_var(chan, "CTID_RING", "15", event=False)
    assert substitute(world, chan, "PJSIP/${EXTEN:1},${${WHO}}") == "PJSIP/1001,15"
    assert substitute(world, chan, "${CALLERID(num)}|${NOPE}|${EXTEN:-4:2}") == "13800138000||10"


def _agent_on_call(world, clock):
    """A direct-line call answered by phone 1001; returns (caller, agent channel, Dial attempt)."""
    caller = inbound_call(world, "13800138000", "81001")
    advance(clock, 3)
    agent = world.find("PJSIP/1001-00000001")
    return caller, agent, agent.controller


def test_attended_transfer_blonde_and_failed_target(sim):
    """Agent hangs up while the target rings: the target gets the caller on answer.

    And a target that never answers sends the agent back to the caller.
    """
    from ctid.adapters.pbxsim.transfer import AttendedTransfer

    world, clock, rec = sim
    world.devices["1003"] = ScriptedPhone(answer_after=4.0)
    caller, agent, attempt = _agent_on_call(world, clock)
    assert AttendedTransfer(world, attempt, agent, "1003", "ctid-agents").start()
    advance(clock, 1)
    world.remote_hangup(agent, 16)
    advance(clock, 5)
    assert rec.of("AttendedTransfer")[0].get("TransferTargetChannel").startswith("Local/1003@ctid-agents-")
    assert agent.dead and caller.bridge is not None and len(caller.bridge.members) == 2

    world2, clock2 = make_world()
    world2.devices["1001"] = ScriptedPhone(answer_after=1.0)
    world2.devices["1002"] = ScriptedPhone(answer_after=None)
    rec2 = EventRecorder(world2)
    caller2, agent2, attempt2 = _agent_on_call(world2, clock2)
    assert AttendedTransfer(world2, attempt2, agent2, "1002", "ctid-agents").start()
    advance(clock2, 35)
    assert not rec2.of("AttendedTransfer") and not agent2.dead
    assert agent2.bridge is caller2.bridge and len(caller2.bridge.members) == 2
    assert rec2.of("MusicOnHoldStop", Channel=caller2.name)


def test_caller_hangs_up_during_consultation(sim):
    """The transferee leaves while agent and target talk: they stay together until one hangs up."""
    from ctid.adapters.pbxsim.transfer import AttendedTransfer

    world, clock, rec = sim
    world.devices["1003"] = ScriptedPhone(answer_after=1.0)
    caller, agent, attempt = _agent_on_call(world, clock)
    AttendedTransfer(world, attempt, agent, "1003", "ctid-agents").start()
    advance(clock, 3)
    world.remote_hangup(caller, 16)
    advance(clock, 1)
    assert caller.dead and not agent.dead and agent.bridge is not None
    world.remote_hangup(agent, 16)
    advance(clock, 2)
    assert world.channels == {} and world.bridges == {}


def test_chanspy_ends_with_the_spyee_when_asked(sim):
    """ChanSpy with E: the supervisor leg hangs up once the agent's channel is gone (ChanSpyStop first)."""
    world, clock, rec = sim
    world.devices["1900"] = ScriptedPhone(answer_after=0.5)
    caller, agent, _ = _agent_on_call(world, clock)
    Originate(world, OriginateRequest(channel="PJSIP/1900", application="ChanSpy", data=f"{agent.uniqueid},qE"),
              lambda pairs: None).start()
    advance(clock, 2)
    assert rec.of("ChanSpyStart")[0].get("SpyeeChannel") == agent.name
    world.remote_hangup(caller, 16)
    advance(clock, 2)
    spyer = rec.of("ChanSpyStart")[0].get("SpyerChannel")
    order = [(e.name, e.get("Channel") or e.get("SpyerChannel")) for e in rec.events]
    assert order.index(("ChanSpyStop", spyer)) < order.index(("Hangup", spyer))
    assert world.channels == {}


def test_agent_hanging_up_leaves_the_caller_to_ctid_dialed_and_hangs_it_up(sim):
    """Dial's g option: the agent hangs up, the caller goes on to ctid-dialed ANSWER → ctid-answered → Hangup."""
    world, clock, rec = sim
    caller = inbound_call(world, "13800138000", "95566")
    advance(clock, 2)
    deliver(world, caller, "PJSIP/1001")
    advance(clock, 3)
    agent = next(chan for chan in world.channels.values() if chan.name.startswith("PJSIP/1001-"))
    rec.clear()
    world.hangup(agent)
    advance(clock, 1)
    contexts = [e.get("Context") for e in rec.of("Newexten", Channel=caller.name)]
    assert contexts[-2:] == ["ctid-dialed", "ctid-answered"] and caller.dead
