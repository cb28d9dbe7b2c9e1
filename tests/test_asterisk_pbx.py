"""The IPBX actions of the Asterisk adapter, over real AMI against the simulated switch."""

import pytest
import pytest_twisted

from ctid.adapters.pbxsim.testing import EventRecorder
from ctid.calls import CallAnswered, CallEnded, RecordingStarted, RecordingStopped
from ctid.interfaces import PBXError

pytestmark = pytest.mark.sim(talk_time="60 60")


def events(daemon):
    return EventRecorder(daemon.world)


async def parked_caller(daemon, number):
    """A caller who went through the IVR and now waits in ctid-wait."""
    trunk = daemon.call_in(number, "95566", script="1", patience=30)
    await daemon.until(
        lambda: daemon.model.channels.get(trunk.uniqueid) and daemon.model.channels[trunk.uniqueid].variables.get(
            "CTID_PARKED"), "the caller to be parked")
    return trunk


async def deliver(daemon, trunk, agent):
    """Park-and-redirect: set the target, redirect to ctid-deliver, wait for the connection."""
    await daemon.pbx.set_variable(trunk.name, "CTID_TARGET", f"PJSIP/{agent}")
    await daemon.pbx.set_variable(trunk.name, "CTID_RING", "5")
    await daemon.pbx.redirect(trunk.name, "ctid-deliver", "s")
    await daemon.until(lambda: daemon.of(CallAnswered, call_id=trunk.linkedid), f"delivery to {agent}")
    return next(c for c in daemon.world.live() if c.name.startswith(f"PJSIP/{agent}-"))


@pytest_twisted.ensureDeferred
async def test_park_redirect_record_dtmf_and_variables(daemon):
    """A parked caller is delivered by Setvar+Redirect; recording, DTMF and Getvar act on the live call."""
    seen = events(daemon)
    trunk = await parked_caller(daemon, "13800138000")
    agent = await deliver(daemon, trunk, "1001")
    call = daemon.model.calls[trunk.linkedid]
    assert agent.uniqueid in call.channels

    assert await daemon.pbx.get_variable(trunk.name, "CTID_TARGET") == "PJSIP/1001"
    await daemon.pbx.start_recording(agent.name, "call-1.wav", "b")
    await daemon.until(lambda: daemon.of(RecordingStarted, call_id=trunk.linkedid), "the recording to start")
    await daemon.pbx.mute_recording(agent.name, True)
    await daemon.until(lambda: seen.of("MixMonitorMute", Channel=agent.name, State="1"), "the recording mute")
    await daemon.pbx.stop_recording(agent.name)
    await daemon.until(lambda: daemon.of(RecordingStopped, call_id=trunk.linkedid), "the recording to stop")

    await daemon.pbx.send_dtmf(trunk.name, "12")
    sent = lambda: seen.of("DTMFEnd", Channel=trunk.name, Direction="Sent")  # noqa: E731
    await daemon.until(lambda: len(sent()) == 2, "both digits")
    assert [e.get("Digit") for e in sent()] == ["1", "2"]

    await daemon.pbx.hangup(trunk.name)
    (ended,) = await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the call to end")
    assert ended.cause == 16


@pytest_twisted.ensureDeferred
async def test_blind_transfer_moves_the_caller_to_another_agent(daemon):
    """BlindTransfer from the agent's channel rings the new agent and connects the caller there."""
    seen = events(daemon)
    trunk = await parked_caller(daemon, "13800138001")
    agent = await deliver(daemon, trunk, "1001")
    await daemon.pbx.blind_transfer(agent.name, "1002", "ctid-agents")
    await daemon.until(lambda: seen.of("BlindTransfer", Result="Success"), "the BlindTransfer event")
    await daemon.until(
        lambda: any(c.name.startswith("PJSIP/1002-") and c.bridge is not None for c in daemon.world.live()),
        "agent 1002 to be connected")
    assert trunk.linkedid in daemon.model.calls


@pytest_twisted.ensureDeferred
async def test_attended_transfer_completes_when_the_transferer_hangs_up(daemon):
    """Atxfer consults agent 1003; when 1001 hangs up the caller is connected to 1003 (through the Local pair)."""
    seen = events(daemon)
    trunk = daemon.call_in("13800138002", "81001", patience=30)
    await daemon.until(lambda: daemon.of(CallAnswered, call_id=trunk.linkedid), "the direct call to connect")
    agent = next(c for c in daemon.world.live() if c.name.startswith("PJSIP/1001-"))
    await daemon.pbx.attended_transfer(agent.name, "1003", "ctid-agents")
    consult = await daemon.until(
        lambda: next((c for c in daemon.world.live() if c.name.startswith("PJSIP/1003-") and c.bridge), None),
        "the consultation call to connect")
    await daemon.pbx.hangup(agent.name)
    await daemon.until(lambda: seen.of("AttendedTransfer", Result="Success"), "the AttendedTransfer event")
    def connected_through_local():
        peer = trunk.bridge and trunk.bridge.peer_of(trunk)
        other = peer and daemon.world.find(peer.name[:-1] + "2")
        return other is not None and other.bridge is consult.bridge

    await daemon.until(connected_through_local, "the caller and 1003 to be connected")
    assert agent.dead


@pytest_twisted.ensureDeferred
async def test_bridge_two_parked_callers(daemon):
    """Bridge joins two existing channels."""
    first = await parked_caller(daemon, "13800138003")
    second = await parked_caller(daemon, "13800138004")
    await daemon.pbx.bridge(first.name, second.name)
    await daemon.until(lambda: first.bridge is not None and first.bridge is second.bridge, "the two to be bridged")


@pytest_twisted.ensureDeferred
async def test_originate_and_supervisor_spy(daemon):
    """Originate places an outbound call; spy() rings the supervisor into ChanSpy on the agent, whisper mode."""
    seen = events(daemon)
    uniqueid = await daemon.pbx.originate("PJSIP/1002", context="ctid-out", exten="13912345678",
                                          caller_id='"Bank" <95566>', channel_id="ctid-out-1")
    assert uniqueid == "ctid-out-1"
    await daemon.until(lambda: daemon.of(CallAnswered, call_id="ctid-out-1"), "the outbound call to connect")
    agent = daemon.world.find("ctid-out-1")
    spy = await daemon.pbx.spy("PJSIP/1900", agent.uniqueid, "whisper")
    await daemon.until(lambda: seen.of("ChanSpyStart"), "the supervisor to start spying")
    (start,) = seen.of("ChanSpyStart")
    assert start.get("SpyeeUniqueid") == agent.uniqueid and start.get("SpyerUniqueid") == spy
    await daemon.pbx.hangup(daemon.world.find(spy).name)
    await daemon.until(lambda: seen.of("ChanSpyStop"), "the supervisor to stop")


@pytest_twisted.ensureDeferred
async def test_refusals_are_pbx_errors(daemon):
    """A refused action and an unknown spy mode give PBXError with the switch's reason."""
    with pytest.raises(PBXError, match="No such channel"):
        await daemon.pbx.hangup("PJSIP/9999-00000000")
    with pytest.raises(PBXError, match="unknown mode"):
        daemon.pbx.spy("PJSIP/1900", "1.1", "shout")


@pytest_twisted.ensureDeferred
async def test_actions_fail_cleanly_while_the_link_is_down(daemon):
    """With the AMI link down every action fails at once with a clear PBXError."""
    await daemon.ami.stopService()
    with pytest.raises(PBXError, match="link is down"):
        await daemon.pbx.redirect("PJSIP/trunk-00000001", "ctid-wait", "s")
    daemon.ami.startService()
    await daemon.until(lambda: daemon.pbx.synced, "the link to come back")
