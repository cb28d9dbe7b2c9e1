"""Agents at their desks over the CTI protocol: sign in, state changes, events, refusals (end to end)."""

import pytest
import pytest_twisted
from twisted.internet import reactor

from ctid.client import CTIClient, CTIClientError
from tests.e2e import PASSWORD


async def desktop(daemon, **kwargs):
    client = CTIClient(reactor, name="test-desk/1", retry_policy=lambda attempt: 0.05, **kwargs)
    await client.connect(f"tcp:127.0.0.1:{daemon.port('cti')}")
    return client


async def refused(code, call):
    with pytest.raises(CTIClientError) as info:
        await call
    assert info.value.code == code
    return info.value


@pytest_twisted.ensureDeferred
async def test_sign_in_change_state_and_sign_out(daemon):
    """Login answers with a snapshot; SetAgentState moves the agent and every change arrives as an event."""
    client = await desktop(daemon)
    events = []
    client.on_event("AgentStateChanged", lambda event: events.append(event.data))
    result = await client.call("Login", agent="1001", password=PASSWORD, station="1001")
    assert result["agent"]["state"] == "not_ready" and result["agent"]["station"] == "PJSIP/1001"
    assert result["agent"]["skills"] == {"accounts": 5} and result["roles"] == ["agent"]
    assert result["queues"] == [{"queue": "general", "group": "accounts", "waiting": 0, "serving": 0,
                                 "all_busy": True, "estimated_wait": None}]

    ready = await client.call("SetAgentState", state="ready")
    assert ready["agent"]["state"] == "ready" and ready["agent"]["available"]
    paused = await client.call("SetAgentState", state="not_ready", reason="break")
    assert paused == {"agent": paused["agent"], "pending": False} and paused["agent"]["reason"] == "break"
    snapshot = await client.call("SnapshotAgent")
    assert snapshot["agent"]["state"] == "not_ready"
    await client.call("SetAgentState", state="ready")
    (queue,) = (await client.call("SnapshotQueues"))["queues"]
    assert (queue["queue"], queue["serving"], queue["all_busy"]) == ("general", 1, False)
    await client.call("SetAgentState", state="not_ready", reason="break")
    await client.call("Logout")
    await daemon.until(lambda: len(events) >= 5, "the state events")
    assert [(e["previous"], e["state"]) for e in events] == [
        ("not_ready", "ready"), ("ready", "not_ready"), ("not_ready", "ready"), ("ready", "not_ready"),
        ("not_ready", "logged_out")]
    await refused("login_required", client.call("SnapshotAgent"))
    await client.close()


@pytest_twisted.ensureDeferred
async def test_login_refusals_have_stable_codes(daemon):
    """Wrong password and unknown agent look the same; disabled, busy station and bad input have their own codes."""
    client = await desktop(daemon)
    await refused("login_required", client.call("SetAgentState", state="ready"))
    wrong = await refused("bad_credentials", client.call("Login", agent="1001", password="nope", station="1001"))
    unknown = await refused("bad_credentials", client.call("Login", agent="4242", password="nope", station="1"))
    assert wrong.message == unknown.message
    await refused("disabled", client.call("Login", agent="1005", password=PASSWORD, station="1005"))
    await refused("bad_request", client.call("Login", agent="1001", password=PASSWORD))
    await refused("bad_request", client.call("Login", agent=1001, password=PASSWORD, station="1001"))
    await client.call("Login", agent="1001", password=PASSWORD, station="1001")
    await refused("bad_request", client.call("SetAgentState", state="dancing"))
    await refused("already_logged_in", client.call("Login", agent="1002", password=PASSWORD, station="1002"))

    other = await desktop(daemon)
    await refused("station_in_use", other.call("Login", agent="1002", password=PASSWORD, station="1001"))
    await refused("already_logged_in", other.call("Login", agent="1001", password=PASSWORD, station="1009"))
    await other.close()
    await client.close()


@pytest_twisted.ensureDeferred
async def test_an_abandoned_desktop_signs_the_agent_out(daemon):
    """When the client never resumes within the grace period the agent is signed out, so gets no calls."""
    client = await desktop(daemon)
    await client.call("Login", agent="1003", password=PASSWORD, station="1003")
    await client.call("SetAgentState", state="ready")
    board = daemon.root.getServiceNamed("cti").cti.handler.board
    assert board.get("1003").available
    client._service.stopService()  # drop the connection without Bye, and do not come back
    await daemon.until(lambda: board.get("1003").state.value == "logged_out", "the session to expire", timeout=10)
