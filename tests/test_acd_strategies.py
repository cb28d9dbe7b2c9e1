"""The distribution strategies, skill groups and levels of the ACD (AC-1, AC-2)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ctid.acd import ACD, STRATEGIES, AgentInfo, QueueConfig, WaitingCall


def make_acd(*queues: QueueConfig) -> ACD:
    """An ACD on a fake clock at t=1000."""
    clock = Clock()
    clock.advance(1000)
    return ACD(queues, clock)


def offer_to(acd: ACD, call_id: str, queue: str = "q") -> str | None:
    """Enqueue a call and answer the agent it was offered to (None: it waits)."""
    offer = acd.enqueue(WaitingCall(call_id, queue, "02112345678"))
    return None if offer is None else offer.agent_id


def agent(agent_id: str, level: int = 5, group: str = "g", **figures) -> AgentInfo:
    """An agent of one skill group."""
    return AgentInfo(agent_id, {group: level}, **figures)


SCENARIOS = {
    # strategy: (agents with distinct figures, the one expected)
    "longest_idle": ([agent("a", idle_since=100.0), agent("b", idle_since=50.0), agent("c", idle_since=80.0)], "b"),
    "longest_avg_idle": (
        [
            agent("a", idle_time_total=600.0, idle_periods=10),
            agent("b", idle_time_total=900.0, idle_periods=10),
            agent("c", idle_time_total=1000.0, idle_periods=20),
            agent("d"),
        ],
        "b",
    ),
    "least_talk": (
        [agent("a", talk_time_total=500.0), agent("b", talk_time_total=300.0), agent("c", talk_time_total=400.0)],
        "b",
    ),
    "least_avg_talk": (
        [
            agent("a", talk_time_total=500.0, answered=5),
            agent("b", talk_time_total=300.0, answered=1),
            agent("c", talk_time_total=400.0, answered=8),
        ],
        "c",
    ),
    "fewest_answered": ([agent("a", answered=5), agent("b", answered=1), agent("c", answered=8)], "b"),
}


@pytest.mark.parametrize("strategy", sorted(SCENARIOS))
def test_metric_strategies_pick_the_expected_agent(strategy):
    """Each metric strategy offers the call to the agent its metric ranks first, whatever the filing order."""
    agents, expected = SCENARIOS[strategy]
    for order in (agents, list(reversed(agents))):
        acd = make_acd(QueueConfig("q", "g", strategy))
        for info in order:
            assert acd.agent_available(info) == []
        assert offer_to(acd, "c1") == expected


def test_every_strategy_has_a_scenario():
    """The strategies table holds exactly the seven of the requirements, each tested here."""
    assert set(STRATEGIES) == set(SCENARIOS) | {"round_robin", "even"}
    assert STRATEGIES["round_robin"].label == "轮流分配"


def test_least_avg_talk_prefers_an_agent_without_answered_calls():
    """An agent with no answered call has an average talk time of 0: it comes first."""
    acd = make_acd(QueueConfig("q", "g", "least_avg_talk"))
    acd.agent_available(agent("a", talk_time_total=100.0, answered=10))
    acd.agent_available(agent("new"))
    assert offer_to(acd, "c1") == "new"


def test_ties_go_to_the_agent_available_first():
    """Equal metrics fall back to availability order (for agents idle since then: the longest idle)."""
    acd = make_acd(QueueConfig("q", "g", "fewest_answered"))
    for name in ("x", "y", "z"):
        acd.agent_available(agent(name, answered=3))
    assert [offer_to(acd, f"c{i}") for i in range(3)] == ["x", "y", "z"]


def test_round_robin_goes_around_the_ring_in_agent_id_order():
    """Round robin offers the next agent after the last one offered, wrapping, skipping absent ones."""
    acd = make_acd(QueueConfig("q", "g", "round_robin"))
    for name in ("a3", "a1", "a2"):
        acd.agent_available(agent(name, idle_since=0.0))
    picks = []
    for i in range(4):
        picks.append(offer_to(acd, f"c{i}"))
        acd.agent_available(agent(picks[-1]))
    assert picks == ["a1", "a2", "a3", "a1"]
    acd.agent_unavailable("a2")
    assert offer_to(acd, "c9") == "a3"


def test_round_robin_stays_in_the_top_level_tier():
    """Round robin turns among the most skilled available agents; lower levels wait for them to be busy."""
    acd = make_acd(QueueConfig("q", "g", "round_robin"))
    acd.agent_available(agent("junior", level=2))
    acd.agent_available(agent("s1", level=8))
    acd.agent_available(agent("s2", level=8))
    assert [offer_to(acd, f"c{i}") for i in range(3)] == ["s1", "s2", "junior"]


def test_even_counts_offers_per_queue():
    """Even distribution picks the agent with the fewest offers *from this queue*, before idle time."""
    acd = make_acd(QueueConfig("q1", "g", "even"), QueueConfig("q2", "g", "even"))
    acd.agent_available(agent("x"))
    assert offer_to(acd, "c1", "q2") == "x"
    acd.agent_available(agent("x"))
    assert offer_to(acd, "c2", "q2") == "x"  # x: 2 offers in q2
    acd.agent_available(agent("y"))
    assert offer_to(acd, "c3", "q1") == "y"  # y: 1 offer in q1
    acd.agent_available(agent("y"))
    acd.agent_available(agent("x"))  # y has been idle longer, but x has no q1 offer yet
    assert offer_to(acd, "c4", "q1") == "x"


def test_even_counts_restart_every_day():
    """reset_daily() forgets the even-distribution counts for agents filed afterwards."""
    acd = make_acd(QueueConfig("q", "g", "even"))
    acd.agent_available(agent("x"))
    assert offer_to(acd, "c1") == "x"
    acd.reset_daily()
    acd.agent_available(agent("x"))
    acd.agent_available(agent("y"))
    assert offer_to(acd, "c2") == "x"


def test_higher_level_first_then_strategy():
    """Skill level is the first sort key: a level-7 agent beats a longer-idle level-3 agent."""
    acd = make_acd(QueueConfig("q", "g", "longest_idle"))
    acd.agent_available(agent("old", level=3, idle_since=0.0))
    acd.agent_available(agent("expert", level=7, idle_since=900.0))
    acd.agent_available(agent("expert2", level=7, idle_since=800.0))
    assert [offer_to(acd, f"c{i}") for i in range(3)] == ["expert2", "expert", "old"]


def test_min_level_keeps_junior_agents_away():
    """Agents below the queue's min_level never get its calls; the call waits for a qualified agent."""
    acd = make_acd(QueueConfig("experts", "g", min_level=6))
    acd.agent_available(agent("junior", level=5))
    assert acd.all_busy("experts")
    assert offer_to(acd, "c1", "experts") is None
    assert acd.agent_available(agent("junior", level=5)) == []
    offers = acd.agent_available(agent("senior", level=6))
    assert [(o.call.call_id, o.agent_id) for o in offers] == [("c1", "senior")]


def test_agents_only_get_calls_of_their_skill_groups():
    """An agent is offered calls only from queues of the skill groups it has."""
    acd = make_acd(QueueConfig("cards", "cards"), QueueConfig("loans", "loans"))
    acd.agent_available(agent("a", group="loans"))
    assert offer_to(acd, "c1", "cards") is None
    assert offer_to(acd, "c2", "loans") == "a"


def test_agent_in_several_groups_gets_the_call_of_the_right_queue():
    """A multi-skilled agent serves each of its groups, and the offer names the queue of the call."""
    acd = make_acd(QueueConfig("cards", "cards"), QueueConfig("loans", "loans"), QueueConfig("vip", "vip"))
    acd.agent_available(AgentInfo("a", {"cards": 3, "loans": 8}))
    assert offer_to(acd, "c1", "vip") is None
    offer = acd.enqueue(WaitingCall("c2", "loans"))
    assert (offer.agent_id, offer.queue, offer.call.call_id) == ("a", "loans", "c2")


def test_agent_becoming_available_takes_the_most_urgent_call_of_its_queues():
    """Across its queues the agent takes the highest priority, then the earliest call."""
    acd = make_acd(QueueConfig("cards", "cards"), QueueConfig("loans", "loans"), QueueConfig("other", "other"))
    acd.enqueue(WaitingCall("early", "cards"))
    acd.enqueue(WaitingCall("later", "loans"))
    acd.enqueue(WaitingCall("urgent-elsewhere", "other", priority=9))
    acd.enqueue(WaitingCall("urgent", "loans", priority=5))
    both = AgentInfo("a", {"cards": 3, "loans": 8})
    assert [o.call.call_id for o in acd.agent_available(both)] == ["urgent"]
    assert [o.call.call_id for o in acd.agent_available(both)] == ["early"]
    assert [o.call.call_id for o in acd.agent_available(both)] == ["later"]
    assert acd.agent_available(both) == []
    assert acd.waiting("other")[0].call_id == "urgent-elsewhere"


def test_agent_unavailable_leaves_every_group():
    """agent_unavailable removes the agent from the indexes of all its groups (and cities)."""
    queues = [QueueConfig(f"q{i}", f"g{i}", strategy) for i, strategy in enumerate(STRATEGIES)]
    queues.append(QueueConfig("local", "g0", local_preference=True, overflow_after=0))
    acd = make_acd(*queues)
    acd.agent_available(AgentInfo("a", {f"g{i}": 5 for i in range(len(STRATEGIES))}, "Shanghai"))
    assert acd.is_available("a") and acd.serving("g3") == 1
    acd.agent_unavailable("a")
    assert not acd.is_available("a") and acd.serving("g3") == 0
    for queue in queues:
        assert acd.all_busy(queue.name)
        assert offer_to(acd, f"call-{queue.name}", queue.name) is None


def test_offered_agent_is_reserved_until_available_again():
    """An offer reserves the agent: no second offer until agent_available is called again."""
    acd = make_acd(QueueConfig("q", "g"))
    acd.agent_available(agent("a"))
    assert offer_to(acd, "c1") == "a"
    assert not acd.is_available("a")
    assert offer_to(acd, "c2") is None
    assert [o.call.call_id for o in acd.agent_available(agent("a"))] == ["c2"]


def test_agent_available_twice_refiles_with_new_figures():
    """Reporting an available agent again replaces its figures (and its place in the indexes)."""
    acd = make_acd(QueueConfig("q", "g", "fewest_answered"))
    acd.agent_available(agent("a", answered=1))
    acd.agent_available(agent("b", answered=2))
    acd.agent_available(agent("a", answered=3))
    assert offer_to(acd, "c1") == "b"


def test_skills_change_updates_groups_and_serving_counts():
    """An agent reported with other skills leaves its old groups and joins the new ones."""
    acd = make_acd(QueueConfig("cards", "cards"), QueueConfig("loans", "loans"))
    acd.agent_available(AgentInfo("a", {"cards": 5}))
    acd.agent_available(AgentInfo("a", {"loans": 5}))
    assert (acd.serving("cards"), acd.serving("loans")) == (0, 1)
    assert offer_to(acd, "c1", "cards") is None
    assert offer_to(acd, "c2", "loans") == "a"


def test_queue_config_is_validated():
    """Unknown strategies, levels out of range and negative times are refused at configuration."""
    with pytest.raises(ValueError, match="unknown strategy"):
        QueueConfig("q", "g", "random")
    with pytest.raises(ValueError, match="min_level"):
        QueueConfig("q", "g", min_level=10)
    with pytest.raises(ValueError, match="overflow_after"):
        QueueConfig("q", "g", overflow_after=-1)
    with pytest.raises(ValueError, match="twice"):
        make_acd(QueueConfig("q", "g"), QueueConfig("q", "h"))


def test_agent_coming_back_after_a_pause_is_served_and_counted_again():
    """After agent_unavailable the same agent (same skills object) counts as serving and gets calls again."""
    acd = make_acd(QueueConfig("q", "g", "round_robin"), QueueConfig("p", "g", "even"))
    info = agent("a")
    acd.agent_available(info)
    acd.agent_unavailable("a")
    acd.agent_unavailable("a")
    assert acd.serving("g") == 0 and not acd.is_available("a")
    assert offer_to(acd, "c1") is None
    assert [o.call.call_id for o in acd.agent_available(info)] == ["c1"]
    assert acd.serving("g") == 1
    acd.agent_available(info)
    assert offer_to(acd, "c2", "p") == "a" and acd.serving("g") == 1
