"""End to end over real loopback TCP: the daemon's service tree against the simulated switch."""

import os
import signal

import pytest
import pytest_twisted

from ctid.calls import CallAnswered, CallEnded, CallStarted
from tests.e2e import connect_and_send, telnet_session


@pytest_twisted.ensureDeferred
async def test_call_traced_from_newchannel_to_hangup(daemon):
    """A customer's call to an agent's direct line is seen starting, answered and ending, with ANI and DNIS."""
    trunk = daemon.call_in("13800138000", "81001")
    ended = await daemon.until(lambda: daemon.of(CallEnded), "the call to end")
    (started,) = daemon.of(CallStarted)
    assert (started.ani, started.dnis) == ("13800138000", "81001")
    assert daemon.of(CallAnswered, call_id=started.call_id)
    assert ended[0].call_id == started.call_id == trunk.linkedid
    assert ended[0].cause == 16
    assert not daemon.model.calls


@pytest.mark.sim(talk_time="60 60")
@pytest_twisted.ensureDeferred
async def test_call_model_rebuilt_after_the_switch_link_restarts(daemon):
    """Calls in progress survive a link restart; a call that ended meanwhile is closed, none is duplicated."""
    long_call = daemon.call_in("13911112222", "81002", patience=30)
    await daemon.until(lambda: daemon.of(CallAnswered, call_id=long_call.linkedid), "the long call to connect")
    short_call = daemon.call_in("13933334444", "81003", patience=30)
    await daemon.until(lambda: daemon.of(CallStarted, call_id=short_call.linkedid), "the short call to start")

    await daemon.restart_switch_link(while_down=lambda: daemon.world.remote_hangup(short_call, 16))

    assert long_call.linkedid in daemon.model.calls
    assert len(daemon.of(CallStarted, call_id=long_call.linkedid)) == 1
    assert not daemon.of(CallEnded, call_id=long_call.linkedid)
    (ended,) = daemon.of(CallEnded, call_id=short_call.linkedid)
    assert ended.cause is None


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_bad_input_on_every_port_leaves_the_daemon_up(daemon):
    """Garbage, huge lines and half-open connections on the FastAGI and manhole ports hurt nobody."""
    agi, manhole = daemon.port("fastagi"), daemon.port("manhole")
    await connect_and_send(agi, b"\x00\xff garbage without a newline")
    await connect_and_send(agi, b"agi_network: yes\n" + b"x" * 200_000 + b"\n")
    await connect_and_send(agi, b"agi_network: yes\nagi_channel: X\n\nNOT A REPLY\n")
    await connect_and_send(manhole, b"\xff\xfb\x01" * 1000 + b"\x00" * 10_000)
    trunk = daemon.call_in("13800138000", "81004")
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "a normal call after the garbage")
    assert daemon.pbx.connected


@pytest_twisted.ensureDeferred
async def test_sighup_reloads_the_traffic_rate(daemon):
    """SIGHUP re-reads the file; the simulated traffic rate changes live, without a restart."""
    traffic = daemon.sim.getServiceNamed("traffic")
    path = daemon.config.path
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("calls_per_minute = 0", "calls_per_minute = 30"))
    os.kill(os.getpid(), signal.SIGHUP)
    await daemon.until(lambda: traffic.rate == 30.0, "the new rate to apply")
    reload = daemon.root.getServiceNamed("reload")
    assert reload.current.pbxsim.simulator.calls_per_minute == 30.0


@pytest_twisted.ensureDeferred
async def test_manhole_shows_the_live_call_model(daemon):
    """The telnet manhole asks for the configured password and evaluates Python against the live objects."""
    out = await telnet_session(daemon.port("manhole"), [
        (b"Username: ", b"admin\r\n"),
        (b"Password: ", b"e2e-manhole\r\n"),
        (b">>> ", b"print('calls:', len(model.calls), 'linked:', pbx.connected)\r\n"),
    ])
    assert b"calls: 0 linked: True" in out


@pytest_twisted.ensureDeferred
async def test_manhole_refuses_a_wrong_password(daemon):
    """A wrong password gets no shell."""
    out = await telnet_session(daemon.port("manhole"), [
        (b"Username: ", b"admin\r\n"),
        (b"Password: ", b"guess\r\n"),
        (b"Username: ", b"print('calls:', len(model.calls))\r\n"),
    ])
    assert b"calls: 0" not in out
