"""The supervisors' live view: scope rules, service level today, snapshots and events to exactly the entitled."""

from datetime import UTC, datetime

import pytest_twisted

from ctid.directory import Identity
from ctid.floorviewstats import ServiceLevels
from ctid.scope import Scope
from tests.test_center import board, signed_in
from tests.test_supervision import supervisor, talking

CITIES = ("Shanghai", "Beijing", "Guangzhou")


class _Agent:
    def __init__(self, skills, city):
        self.skills, self.city = skills, city


def scope(manages):
    return Scope.of(Identity("1900", "S", roles={"supervisor"}, manages=frozenset(manages)), CITIES)


def test_scope_splits_manages_into_groups_and_cities_and_both_narrow():
    """Cities come from the city table, the rest are groups; an agent needs a managed group and a managed city."""
    shanghai_accounts = scope({"accounts", "Shanghai"})
    assert (shanghai_accounts.groups, shanghai_accounts.cities) == ({"accounts"}, {"Shanghai"})
    assert shanghai_accounts.covers_agent(_Agent({"accounts": 5}, "Shanghai"))
    assert not shanghai_accounts.covers_agent(_Agent({"accounts": 5}, "Beijing"))
    assert not shanghai_accounts.covers_agent(_Agent({"experts": 5}, "Shanghai"))
    assert shanghai_accounts.covers_queue("accounts") and not shanghai_accounts.covers_queue("experts")
    assert shanghai_accounts.covers_waiting("accounts", None)
    assert shanghai_accounts.covers_waiting("accounts", "Shanghai")
    assert not shanghai_accounts.covers_waiting("accounts", "Beijing")
    city_only = scope({"Beijing"})
    assert city_only.covers_agent(_Agent({"experts": 1}, "Beijing")) and city_only.covers_queue("anything")
    assert not city_only.covers_agent(_Agent({"experts": 1}, "Shanghai"))


def test_an_empty_scope_reaches_nothing_and_star_reaches_everything():
    """No ``manages``: nothing at all; ``*``: every agent, queue and call."""
    nothing, everything = scope(set()), scope({"*"})
    assert nothing.empty and not nothing.covers_agent(_Agent({"accounts": 5}, "Shanghai"))
    assert not nothing.covers_queue("accounts") and not nothing.covers_waiting("accounts", None)
    assert everything.everything and everything.covers_agent(_Agent({}, None)) and everything.covers_queue("x")


def test_service_level_counts_today_with_short_abandons_left_out():
    """Answered within the threshold ÷ (answered + abandoned − short abandons); a new local day starts at zero."""
    day = datetime(2026, 11, 20, 9, 0, tzinfo=UTC).timestamp()
    levels = ServiceLevels(answer_within=20.0, short_abandon=5.0, tz=UTC)
    for call, at in (("fast", 10.0), ("slow", 30.0)):
        levels.waiting(call, "general", day)
        assert levels.answered(call, day + at) == "general"
        assert levels.answered(call, day + at + 1) is None  # once per call
        assert levels.ended(call, day + 100) is None  # answered calls are not abandoned
    levels.waiting("short", "general", day)
    assert levels.ended("short", day + 3) == "general"
    levels.waiting("gave-up", "general", day)
    levels.waiting("gave-up", "easy", day)  # moved: counts in its last queue
    assert levels.ended("gave-up", day + 60) == "easy"
    levels.waiting("routed", "general", day)
    levels.forget("routed")
    assert levels.ended("routed", day + 60) is None
    assert levels.view("general", day + 200) == {"answered": 2, "answered_in_time": 1, "abandoned": 1,
                                                 "short_abandoned": 1, "offered": 2, "level": 0.5}
    assert levels.view("easy", day + 200)["level"] == 0.0
    assert levels.view("general", day + 86400)["offered"] == 0 and levels.view("general", day + 86400)["level"] is None


@pytest_twisted.ensureDeferred
async def test_snapshot_shows_lines_agents_and_queues_of_the_scope(daemon):
    """1900 (accounts, Shanghai) sees 1001's call and lines, Shanghai agents by state, general with its figures."""
    agent, _, channel = await talking(daemon, "1001")
    other, _ = await signed_in(daemon, "1003")  # Beijing
    boss, _ = await supervisor(daemon, "1900")
    floor = await boss.call("SnapshotFloor")
    assert floor["scope"] == {"groups": ["accounts"], "cities": ["Shanghai"], "everything": False}
    assert [a["agent"] for a in floor["agents"]] == ["1001"]
    (seen,) = floor["agents"]
    assert seen["state"] == "talking" and seen["time_in_state"] >= 0 and floor["agents_by_state"] == {"talking": 1}
    (call,) = floor["calls"]
    assert (call["call"], call["ani"], call["dnis"], call["queue"], call["agents"]) == (
        channel.linkedid, "13800138000", "95566", "general", ["1001"])
    lines = {line["channel"]: line for line in call["lines"]}
    assert floor["lines"] == len(lines) == 2
    mine = lines[channel.name]
    assert (mine["agent"], mine["state"], mine["connected_since"] is not None) == ("1001", "Up", True)
    (trunk,) = [line for name, line in lines.items() if name != channel.name]
    assert trunk["caller"] == "13800138000" and trunk["connected_for"] >= 0
    (general,) = floor["queues"]
    assert (general["queue"], general["group"], general["waiting"], general["longest_wait"]) == (
        "general", "accounts", 0, None)
    assert general["service_level"]["answered"] == 1 and general["service_level"]["level"] == 1.0
    centre, _ = await supervisor(daemon, "1909")
    everything = await centre.call("SnapshotFloor")
    assert {a["agent"] for a in everything["agents"]} == {"1001", "1003", "1900", "1909"}
    for client in (agent, other, boss, centre):
        await client.close()


@pytest_twisted.ensureDeferred
async def test_events_reach_exactly_the_supervisors_entitled_to_them(daemon):
    """A Beijing agent's change goes to 1901 and 1909 only; an accounts queue's change to 1900, 1901 and 1909."""
    acd = daemon.root.getServiceNamed("center").acd
    clients = {}
    for supervisor_id in ("1900", "1901", "1902", "1909"):
        clients[supervisor_id] = await supervisor(daemon, supervisor_id)
        result = await clients[supervisor_id][0].call("SubscribeFloor")
        assert result["subscribed"] is True
    for _, events in clients.values():
        events.clear()
    beijing, _ = await signed_in(daemon, "1003")

    def received(name, **match):
        return {sid for sid, (_, events) in clients.items()
                if any(e.name == name and all(e.data.get(k) == v for k, v in match.items()) for e in events)}

    await daemon.until(lambda: received("FloorAgentChanged", agent="1003", state="ready") == {"1901", "1909"},
                       "1003's change to reach the Beijing and centre supervisors")
    await beijing.call("SetAgentState", state="not_ready", reason="break")
    trunk = daemon.call_in("13800138001", "95566", script="1", patience=60)
    await daemon.until(lambda: acd.queue_length("general") == 1, "the call to wait")
    await daemon.until(lambda: received("FloorQueueChanged", queue="general", waiting=1) == {"1900", "1901", "1909"},
                       "the queue change to reach the accounts supervisors")
    (update,) = [e.data for e in clients["1900"][1] if e.name == "FloorQueueChanged" and e.data["waiting"] == 1][:1]
    assert update["calls"][0]["call"] == trunk.linkedid and update["oldest_since"] is not None
    assert received("FloorCallChanged", call=trunk.linkedid) >= {"1900", "1901", "1909"}
    assert clients["1902"][1] == []  # consultation: none of this is theirs
    await clients["1901"][0].call("UnsubscribeFloor")
    clients["1901"][1].clear()
    await beijing.call("SetAgentState", state="ready")
    await daemon.until(lambda: board(daemon).get("1003").state.value == "talking", "1003 to take the call")
    await daemon.until(lambda: received("FloorAgentChanged", agent="1003", state="talking") == {"1909"},
                       "only the centre supervisor to hear of it after 1901 unsubscribed")
    await beijing.close()
    for client, _ in clients.values():
        await client.close()
