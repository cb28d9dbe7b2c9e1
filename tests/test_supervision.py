"""Supervisor commands end to end: ChanSpy monitoring, force release, forced agent states, queued calls, refusals."""

import pytest
import pytest_twisted
from twisted.internet import reactor

from ctid.adapters.pbxsim.features import spy_mode
from ctid.adapters.pbxsim.testing import EventRecorder
from ctid.adapters.store.schema import audit_log
from ctid.calls import CallEnded
from ctid.client import CTIClient
from ctid.clientconnection import CTIClientError
from tests.e2e import PASSWORD
from tests.test_center import board, signed_in, states
from tests.test_records import written

#: A second accounts queue agents of level 5 can serve (general needs 9), and a consultation queue.
QUEUES = "min_level = 9\n[queue:easy]\ngroup = accounts\n[queue:advice]\ngroup = consultation\n"


async def supervisor(daemon, supervisor_id):
    """A desktop signed in as ``supervisor_id`` on its own station (not ready); returns (client, events)."""
    client = CTIClient(reactor, name="test-supervision/1", retry_policy=lambda attempt: 0.05)
    await client.connect(f"tcp:127.0.0.1:{daemon.port('cti')}")
    events = []
    client.on_event(None, events.append)
    await client.call("Login", agent=supervisor_id, password=PASSWORD, station=supervisor_id)
    return client, events


async def refused(deferred):
    """The error code a CTI request was refused with."""
    with pytest.raises(CTIClientError) as info:
        await deferred
    return info.value.code


async def talking(daemon, agent_id, number="13800138000"):
    """Agent ``agent_id`` signed in and talking to a caller; returns (client, events, the agent's channel)."""
    client, events = await signed_in(daemon, agent_id)
    daemon.call_in(number, "95566", script="1", patience=60)
    await daemon.until(lambda: board(daemon).get(agent_id).state.value == "talking", f"{agent_id} to talk")
    (channel,) = [c for c in daemon.model.channels.values() if c.name.startswith(f"PJSIP/{agent_id}-")]
    return client, events, channel


@pytest.mark.sim(talk_time="60 60")
@pytest_twisted.ensureDeferred
async def test_monitor_in_each_mode_originates_chanspy_with_its_options(daemon):
    """listen/whisper/barge: Originate of the supervisor's phone into ChanSpy(<agent uniqueid>,q E u d [w|B])."""
    recorder = EventRecorder(daemon.world)
    agent, _, channel = await talking(daemon, "1001")
    boss, _ = await supervisor(daemon, "1900")
    for mode, options in (("listen", "qEud"), ("whisper", "qEudw"), ("barge", "qEudB")):
        result = await boss.call("MonitorCall", agent="1001", mode=mode)
        assert (result["agent"], result["call"], result["mode"]) == ("1001", channel.linkedid, mode)
        monitor = result["monitor"]
        await daemon.until(lambda m=monitor: recorder.of("ChanSpyStart", SpyerUniqueid=m), f"{mode}: ChanSpyStart")
        (originated,) = recorder.of("OriginateResponse", Uniqueid=monitor)
        assert (originated.get("Channel").split("-")[0], originated.get("Application"), originated.get("Data")) == (
            "PJSIP/1900", "ChanSpy", f"{channel.uniqueid},{options}")
        assert recorder.of("ChanSpyStart", SpyerUniqueid=monitor)[0].get("SpyeeChannel") == channel.name
        assert spy_mode(daemon.world.find(monitor)) == mode
        stopped = await boss.call("StopMonitor", monitor=monitor)
        assert stopped["monitor"] == monitor
        await daemon.until(lambda m=monitor: recorder.of("ChanSpyStop", SpyerUniqueid=m), f"{mode}: ChanSpyStop")
    assert board(daemon).get("1001").state.value == "talking"
    await agent.close()
    await boss.close()


@pytest.mark.sim(talk_time="60 60")
@pytest_twisted.ensureDeferred
async def test_monitor_mode_switches_during_the_session_by_dtmf(daemon):
    """SetMonitorMode plays 5 then 6 as received on the supervisor's leg: ChanSpy (option d) whispers, then barges."""
    recorder = EventRecorder(daemon.world)
    agent, _, channel = await talking(daemon, "1001")
    boss, _ = await supervisor(daemon, "1900")
    monitor = (await boss.call("MonitorCall", agent="1001", mode="listen"))["monitor"]
    await daemon.until(lambda: recorder.of("ChanSpyStart", SpyerUniqueid=monitor), "ChanSpyStart")
    spyer = daemon.world.find(monitor)
    for mode, digit in (("whisper", "5"), ("barge", "6"), ("listen", "4")):
        result = await boss.call("SetMonitorMode", monitor=monitor, mode=mode)
        assert result["mode"] == mode
        await daemon.until(lambda m=mode: spy_mode(spyer) == m, f"ChanSpy to {mode}")
        assert recorder.of("DTMFEnd", Uniqueid=monitor, Digit=digit, Direction="Received")
    await boss.call("StopMonitor", monitor=monitor)
    assert await refused(boss.call("SetMonitorMode", monitor=monitor, mode="barge")) == "unknown_monitor"
    await agent.close()
    await boss.close()


@pytest.mark.sim(talk_time="60 60")
@pytest_twisted.ensureDeferred
async def test_force_release_hangs_up_the_call_and_the_monitor_follows(daemon):
    """ForceRelease hangs up every leg; the call ends, the agent wraps up, the ChanSpy (E) ends with it."""
    recorder = EventRecorder(daemon.world)
    agent, events, channel = await talking(daemon, "1001")
    boss, _ = await supervisor(daemon, "1900")
    monitor = (await boss.call("MonitorCall", agent="1001", mode="barge"))["monitor"]
    await daemon.until(lambda: recorder.of("ChanSpyStart", SpyerUniqueid=monitor), "ChanSpyStart")
    result = await boss.call("ForceRelease", agent="1001")
    assert result["call"] == channel.linkedid and channel.name in result["released"]
    await daemon.until(lambda: daemon.of(CallEnded, call_id=channel.linkedid), "the call to end")
    await daemon.until(lambda: "wrap_up" in states(events), "the agent to wrap up")
    await daemon.until(lambda: recorder.of("Hangup", Uniqueid=monitor), "the monitoring leg to hang up")
    assert await refused(boss.call("ForceRelease", agent="1001")) == "no_call"
    await agent.close()
    await boss.close()


@pytest_twisted.ensureDeferred
async def test_force_pause_and_force_logout_change_the_agent_and_end_its_session(daemon):
    """ForcePause pauses with forced_by; ForceLogout signs out and ends the agent's CTI session (forced_logout)."""
    agent, events = await signed_in(daemon, "1001")
    boss, _ = await supervisor(daemon, "1900")
    result = await boss.call("ForcePause", agent="1001", reason="meeting")
    assert (result["state"], result["pending"]) == ("not_ready", False)
    (paused,) = [e.data for e in events if e.name == "AgentStateChanged" and e.data["trigger"] == "force_pause"]
    assert (paused["state"], paused["reason"], paused["forced_by"]) == ("not_ready", "meeting", "1900")
    notices = []
    agent.on_notice(notices.append)
    result = await boss.call("ForceLogout", agent="1001")
    assert (result["state"], result["sessions_ended"]) == ("logged_out", 1)
    await daemon.until(lambda: agent.ended is not None, "the agent's session to end")
    assert agent.ended.code == "session_ended" and agent.ended.data == {"reason": "forced_logout"}
    assert board(daemon).get("1001").state.value == "logged_out"
    assert [e.data["forced_by"] for e in events if e.data.get("trigger") == "force_logout"] == ["1900"]
    assert "1001" not in daemon.root.getServiceNamed("cti").cti.handler.sessions
    assert await refused(boss.call("ForcePause", agent="1001")) == "not_logged_in"
    audits = await written(daemon, audit_log, "the audit rows", actor="1900", outcome="ok")
    assert {(a["action"], a["target"], a["role"]) for a in audits if a["action"] != "login"} == {
        ("ForcePause", "1001", "supervisor"), ("ForceLogout", "1001", "supervisor")}
    await boss.close()


@pytest.mark.sim(no_answer_rate="1")
@pytest_twisted.ensureDeferred
async def test_unlock_agent_after_ring_no_answer(daemon):
    """An agent locked by ring-no-answer is unlocked by the supervisor (trigger force_unlock, forced_by)."""
    agent, events = await signed_in(daemon, "1001")
    boss, _ = await supervisor(daemon, "1900")
    daemon.call_in("13800138001", "95566", script="1", patience=30)
    await daemon.until(lambda: board(daemon).get("1001").state.value == "locked", "agent 1001 to be locked")
    result = await boss.call("UnlockAgent", agent="1001")
    assert result["agent"] == "1001"
    (unlocked,) = [e.data for e in events if e.name == "AgentStateChanged" and e.data["trigger"] == "force_unlock"]
    assert unlocked["forced_by"] == "1900" and unlocked["previous"] == "locked"
    await agent.close()
    await boss.close()


@pytest.mark.queue(QUEUES)
@pytest_twisted.ensureDeferred
async def test_priority_change_overtakes_and_move_delivers_to_a_free_agent(daemon):
    """SetCallPriority puts the later call first; MoveCall to a queue with a free agent delivers it at once."""
    acd = daemon.root.getServiceNamed("center").acd
    boss, _ = await supervisor(daemon, "1900")
    first = daemon.call_in("13800138001", "95566", script="1", patience=60)
    await daemon.until(lambda: acd.queue_length("general") == 1, "the first call to wait")
    second = daemon.call_in("13800138002", "95566", script="1", patience=60)
    await daemon.until(lambda: acd.queue_length("general") == 2, "the second call to wait")
    assert [c.call_id for c in acd.waiting("general")] == [first.linkedid, second.linkedid]
    result = await boss.call("SetCallPriority", call=second.linkedid, priority=7)
    assert (result["priority"], result["position"]) == (7, 1)
    assert [c.call_id for c in acd.waiting("general")] == [second.linkedid, first.linkedid]
    agent, events = await signed_in(daemon, "1001")  # level 5: general (min_level 9) is closed to it
    moved = await boss.call("MoveCall", call=second.linkedid, queue="easy")
    assert (moved["queue"], moved["delivered"], moved["priority"]) == ("easy", "1001", 7)
    await daemon.until(lambda: [e for e in events if e.name == "Delivered"], "the screen pop")
    (pop,) = [e.data for e in events if e.name == "Delivered"]
    assert (pop["call"], pop["queue"], pop["priority"]) == (second.linkedid, "easy", 7)
    assert [c.call_id for c in acd.waiting("general")] == [first.linkedid]
    assert await refused(boss.call("MoveCall", call=first.linkedid, queue="advice")) == "out_of_scope"
    assert await refused(boss.call("MoveCall", call=first.linkedid, queue="nowhere")) == "unknown_queue"
    assert await refused(boss.call("SetCallPriority", call="no-such-call", priority=1)) == "not_waiting"
    assert await refused(boss.call("SetCallPriority", call=first.linkedid, priority=-1)) == "bad_request"
    waiting = (await boss.call("MoveCall", call=first.linkedid, queue="general"))
    assert (waiting["queue"], waiting["delivered"]) == ("general", None)
    await agent.close()
    await boss.close()


@pytest.mark.queue(QUEUES)
@pytest.mark.sim(talk_time="60 60")
@pytest_twisted.ensureDeferred
async def test_refusals_have_stable_codes_and_are_audited(daemon):
    """Agents get forbidden; supervisors outside their groups or cities out_of_scope; bad input bad_request."""
    acd = daemon.root.getServiceNamed("center").acd
    agent, _ = await signed_in(daemon, "1002")  # Shanghai
    other, _ = await signed_in(daemon, "1003")  # Beijing
    assert await refused(agent.call("MonitorCall", agent="1003", mode="listen")) == "forbidden"
    assert await refused(agent.call("ForceLogout", agent="1003")) == "forbidden"
    assert await refused(agent.call("SnapshotFloor")) == "forbidden"
    beijing, _ = await supervisor(daemon, "1901")
    advice, _ = await supervisor(daemon, "1902")
    assert await refused(beijing.call("ForcePause", agent="1002")) == "out_of_scope"
    assert await refused(advice.call("ForcePause", agent="1003")) == "out_of_scope"
    assert await refused(beijing.call("MonitorCall", agent="1002", mode="listen")) == "out_of_scope"
    assert await refused(beijing.call("MonitorCall", agent="1003", mode="shout")) == "bad_request"
    assert await refused(beijing.call("MonitorCall", agent="1003", mode="listen")) == "no_call"
    assert await refused(beijing.call("ForcePause", agent="4242")) == "not_logged_in"
    assert await refused(beijing.call("StopMonitor", monitor="nope")) == "unknown_monitor"
    assert await refused(beijing.call("UnlockAgent", agent="1003")) == "invalid_transition"
    await other.close()
    await agent.call("SetAgentState", state="not_ready")
    trunk = daemon.call_in("13800138001", "95566", script="1", patience=60)
    await daemon.until(lambda: acd.queue_length("general") == 1, "the call to wait")
    assert await refused(advice.call("SetCallPriority", call=trunk.linkedid, priority=3)) == "out_of_scope"
    assert (await beijing.call("SetCallPriority", call=trunk.linkedid, priority=3))["priority"] == 3
    audits = await written(daemon, audit_log, "the refusals", outcome="out_of_scope")
    assert {(a["actor"], a["action"], a["target"]) for a in audits} == {
        ("1901", "ForcePause", "1002"), ("1902", "ForcePause", "1003"), ("1901", "MonitorCall", "1002"),
        ("1902", "SetCallPriority", trunk.linkedid)}
    forbidden = await written(daemon, audit_log, "the forbidden ones", outcome="forbidden")
    assert {(a["actor"], a["role"], a["action"]) for a in forbidden} == {
        ("1002", "agent", "MonitorCall"), ("1002", "agent", "ForceLogout"), ("1002", "agent", "SnapshotFloor")}
    for client in (agent, beijing, advice):
        await client.close()


def test_console_commands_for_supervisors():
    """ctid-agent's supervisor lines become the right CTI commands; bad lines get a usage message."""
    from ctid.consolecommands import UsageError, parse_command

    assert parse_command("whisper 1001")[1:] == ("MonitorCall", {"agent": "1001", "mode": "whisper"})
    assert parse_command("monitor-mode m1 barge")[1:] == ("SetMonitorMode", {"monitor": "m1", "mode": "barge"})
    assert parse_command("force-pause 1001 team meeting")[1:] == (
        "ForcePause", {"agent": "1001", "reason": "team meeting"})
    assert parse_command("priority c1 5")[1:] == ("SetCallPriority", {"call": "c1", "priority": 5})
    assert parse_command("move c1 easy")[1:] == ("MoveCall", {"call": "c1", "queue": "easy"})
    for line in ("priority c1 high", "move c1", "release"):
        with pytest.raises(UsageError, match="usage"):
            parse_command(line)
