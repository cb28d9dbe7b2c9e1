"""The call center end to end: a parked caller is queued, offered to a ready agent, delivered by redirect."""

import pytest
import pytest_twisted
from twisted.internet import reactor

from ctid.adapters.pbxsim.testing import EventRecorder
from ctid.calls import CallEnded, DeliveryFailed
from ctid.client import CTIClient
from tests.e2e import PASSWORD


async def signed_in(daemon, agent):
    """A desktop for ``agent`` (on its own station), ready for calls; returns (client, events)."""
    client = CTIClient(reactor, name="test-center/1", retry_policy=lambda attempt: 0.05)
    await client.connect(f"tcp:127.0.0.1:{daemon.port('cti')}")
    events = []
    client.on_event(None, events.append)
    await client.call("Login", agent=agent, password=PASSWORD, station=agent)
    await client.call("SetAgentState", state="ready")
    return client, events


def board(daemon):
    return daemon.root.getServiceNamed("cti").cti.handler.board


def states(events):
    return [e.data["state"] for e in events if e.name == "AgentStateChanged"]


@pytest.mark.sim(talk_time="1 1")
@pytest_twisted.ensureDeferred
async def test_parked_caller_is_delivered_to_the_ready_agent(daemon):
    """IVR → park → queue → offer → Setvar+Redirect → the agent rings, talks, wraps up and is ready again."""
    client, events = await signed_in(daemon, "1002")
    trunk = daemon.call_in("13800138000", "95566", script="1", patience=30)
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the delivered call to end")
    await daemon.until(lambda: states(events)[-1:] == ["ready"] and len(states(events)) > 2, "wrap-up to end")
    assert states(events) == ["ready", "reserved", "ringing", "talking", "wrap_up", "ready"]
    (pop,) = [e.data for e in events if e.name == "Delivered"]
    assert (pop["call"], pop["ani"], pop["dnis"], pop["queue"]) == (trunk.linkedid, "13800138000", "95566", "general")
    assert pop["data"] == {}
    customer = pop["customer"]
    assert (customer["customer_id"], customer["name"], customer["segment"]) == ("C-1", "张三", "private")
    assert customer["accounts"] == ["**** **** **** 1234"]
    agent = board(daemon).get("1002")
    assert agent.stats.answered == 1
    await client.close()


@pytest.mark.sim(no_answer_rate="1")
@pytest_twisted.ensureDeferred
async def test_ring_no_answer_locks_the_agent_and_requeues_at_the_head(daemon):
    """An agent who lets it ring is locked; the call goes back to the head and the next agent gets it."""
    first, first_events = await signed_in(daemon, "1001")
    trunk = daemon.call_in("13800138001", "95566", script="1", patience=30)
    await daemon.until(lambda: daemon.of(DeliveryFailed, call_id=trunk.linkedid), "the first delivery to fail")
    await daemon.until(lambda: board(daemon).get("1001").state.value == "locked", "agent 1001 to be locked")
    second, second_events = await signed_in(daemon, "1003")
    await daemon.until(lambda: "reserved" in states(second_events), "the call to be offered to 1003")
    assert "locked" in states(first_events)
    await first.close()
    await second.close()


@pytest_twisted.ensureDeferred
async def test_caller_hanging_up_in_the_queue_is_abandoned(daemon):
    """With nobody ready the caller waits; hanging up removes the call from the queue."""
    center = daemon.root.getServiceNamed("center")
    trunk = daemon.call_in("13800138002", "95566", script="1", patience=3)
    await daemon.until(lambda: center.acd.queue_length("general") == 1, "the call to wait in the queue")
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the caller to give up")
    assert center.acd.queue_length("general") == 0 and not center.deliveries


ROUTES = """
timezone = "Asia/Shanghai"

[[rules]]
name = "vip"
caller = ["13900000001"]
queue = "general"
priority = 10
attach = { CTID_SEGMENT = "vip" }

[[rules]]
name = "after-hours-line"
caller = ["137*"]
external = "4008205566"

[[rules]]
name = "default"
queue = "general"
"""


@pytest.mark.routes(ROUTES)
@pytest.mark.sim(talk_time="1 1")
@pytest_twisted.ensureDeferred
async def test_route_rules_vip_overtakes_and_external_numbers(daemon):
    """A VIP who arrives later is answered first, with the rule's data; a rule can send a caller out."""
    center = daemon.root.getServiceNamed("center")
    seen = EventRecorder(daemon.world)
    ordinary = daemon.call_in("13800138003", "95566", script="1", patience=30)
    await daemon.until(lambda: center.acd.queue_length("general") == 1, "the ordinary caller to wait")
    vip = daemon.call_in("13900000001", "95566", script="1", patience=30)
    await daemon.until(lambda: center.acd.queue_length("general") == 2, "the VIP to wait")
    assert center.acd.position(vip.linkedid) == 1 and center.acd.position(ordinary.linkedid) == 2

    client, events = await signed_in(daemon, "1004")
    await daemon.until(lambda: any(e.name == "Delivered" for e in events), "the first screen pop")
    first = next(e.data for e in events if e.name == "Delivered")
    assert (first["call"], first["priority"], first["data"]["CTID_SEGMENT"]) == (vip.linkedid, 10, "vip")

    out = daemon.call_in("13700000000", "95566", script="1", patience=30)
    await daemon.until(lambda: seen.of("DialBegin", Channel=out.name), "the caller to be sent to the external line")
    (dial,) = seen.of("DialBegin", Channel=out.name)
    assert "4008205566" in dial.get("DialString") and center.acd.call(out.linkedid) is None
    await client.close()


@pytest.mark.sim(desktops="yes", talk_time="1 1")
@pytest_twisted.ensureDeferred
async def test_simulated_desktops_sign_in_and_take_calls(daemon):
    """With [pbxsim] desktops the simulated agents sign in over CTI, and a queued call is answered by one."""
    agents = board(daemon)
    await daemon.until(lambda: sum(1 for a in agents.all() if a.available) == 4, "the four desktops to be ready",
                       timeout=30)
    trunk = daemon.call_in("13800138009", "95566", script="1", patience=30)
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the call to be answered and end")
    assert sum(a.stats.answered for a in agents.all()) == 1


@pytest.mark.sim(talk_time="1 1")
@pytest_twisted.ensureDeferred
async def test_direct_calls_keep_the_agent_busy_for_the_acd(daemon):
    """A customer dialling the agent's direct line makes the agent ring and talk, so the ACD leaves it alone."""
    client, events = await signed_in(daemon, "1001")
    direct = daemon.call_in("13800138010", "81001", patience=30)
    await daemon.until(lambda: "talking" in states(events), "the agent to talk on the direct call")
    assert not board(daemon).get("1001").available
    await daemon.until(lambda: daemon.of(CallEnded, call_id=direct.linkedid), "the direct call to end")
    await daemon.until(lambda: states(events)[-1:] == ["ready"], "the agent to be ready again")
    assert states(events) == ["ready", "reserved", "ringing", "talking", "wrap_up", "ready"]
    assert not any(e.name == "Delivered" for e in events)
    await client.close()


SITUATION_ROUTES = """
timezone = "Asia/Shanghai"

[[rules]]
name = "busy-line"
state = "all_busy"
caller = ["136*"]
external = "4008201111"

[[rules]]
name = "no-answer-line"
state = "no_answer"
external = "4008202222"

[[rules]]
name = "default"
queue = "general"
"""


def dialled_out(seen, channel, number):
    return [e for e in seen.of("DialBegin", Channel=channel) if number in (e.get("DialString") or "")]


@pytest.mark.routes(SITUATION_ROUTES)
@pytest_twisted.ensureDeferred
async def test_all_busy_route_sends_the_caller_out(daemon):
    """遇忙路由: with nobody free in the queue, the all_busy rule sends the caller to its number."""
    seen = EventRecorder(daemon.world)
    trunk = daemon.call_in("13600000000", "95566", script="1", patience=30)
    await daemon.until(lambda: dialled_out(seen, trunk.name, "4008201111"), "the caller to be sent out")
    assert daemon.root.getServiceNamed("center").acd.queue_length("general") == 0


@pytest.mark.routes(SITUATION_ROUTES)
@pytest.mark.sim(no_answer_rate="1")
@pytest_twisted.ensureDeferred
async def test_no_answer_route_sends_the_caller_out(daemon):
    """无人应答路由: after a ring-no-answer the no_answer rule takes the call instead of the queue."""
    seen = EventRecorder(daemon.world)
    client, events = await signed_in(daemon, "1001")
    trunk = daemon.call_in("13800138011", "95566", script="1", patience=30)
    await daemon.until(lambda: dialled_out(seen, trunk.name, "4008202222"), "the caller to be sent out")
    assert board(daemon).get("1001").state.value == "locked"
    await client.close()


async def strategy_scenario(daemon):
    """1002 answers one call and is ready again first; then 1001 signs in: who gets the next call?"""
    second, second_events = await signed_in(daemon, "1002")
    first_call = daemon.call_in("13800138020", "95566", patience=30)
    await daemon.until(lambda: daemon.of(CallEnded, call_id=first_call.linkedid), "1002's call to end")
    await daemon.until(lambda: states(second_events)[-1:] == ["ready"], "1002 to be ready again")
    first, first_events = await signed_in(daemon, "1001")
    next_call = daemon.call_in("13800138021", "95566", patience=30)
    pops = lambda: [e.data["call"] for e in first_events + second_events if e.name == "Delivered"]  # noqa: E731
    await daemon.until(lambda: next_call.linkedid in pops(), "the next call to be offered")
    taker = "1001" if any(e.name == "Delivered" for e in first_events) else "1002"
    await first.close()
    await second.close()
    return taker


#: Strategy → who takes the next call in :func:`strategy_scenario`, and why.
STRATEGY_CASES = [
    ("longest_idle", "1002", "1002 has been idle longer than 1001, who just signed in"),
    ("longest_avg_idle", "1002", "1002 has an idle period behind it; 1001 none (average 0)"),
    ("least_talk", "1001", "1001 has talked 0 s, 1002 about 0.5 s"),
    ("least_avg_talk", "1001", "1001 has no call (average 0), 1002 about 0.5 s per call"),
    ("fewest_answered", "1001", "1001 has answered none, 1002 one"),
    ("even", "1001", "the queue has offered 1002 one call and 1001 none"),
    ("round_robin", "1001", "the ring (agent id order) goes on after 1002, the last offered, to 1001"),
]


@pytest.mark.sim(talk_time="0.5 0.5", agi_script="queue")
@pytest.mark.parametrize("expected", [
    pytest.param(taker, id=name, marks=pytest.mark.queue(f"strategy = {name}")) for name, taker, _ in STRATEGY_CASES
])
@pytest_twisted.ensureDeferred
async def test_each_strategy_from_config_picks_the_expected_agent(daemon, expected):
    """Each [queue:NAME] strategy, run end to end, offers the next call to the agent it should (STRATEGY_CASES)."""
    assert await strategy_scenario(daemon) == expected
