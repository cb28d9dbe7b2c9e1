"""Waiting calls: priorities and VIP rules, FIFO, re-queueing, abandon, move, limits (AC-3, AC-7, AC-8)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ctid.acd import ACD, AgentInfo, PriorityRule, QueueConfig, QueueFull, WaitingCall
from ctid.acd.priority import RuleBook

VIP = PriorityRule(10, data=(("customer_class", "vip"),))


def make_acd(*queues: QueueConfig, rules=(VIP,)) -> tuple[ACD, Clock]:
    """An ACD (with the VIP-by-IVR-data rule) and its clock."""
    clock = Clock()
    return ACD(queues or (QueueConfig("q", "g"),), clock, rules=rules), clock


def served(acd: ACD, count: int, group: str = "g") -> list[str]:
    """Let one agent take ``count`` calls in a row; the call ids in the order it got them."""
    got = []
    for _ in range(count):
        offers = acd.agent_available(AgentInfo("a", {group: 5}))
        got.extend(offer.call.call_id for offer in offers)
    return got


def ids(calls: list[WaitingCall]) -> list[str]:
    """The call ids of a listing."""
    return [call.call_id for call in calls]


def test_fifo_within_a_priority():
    """Calls of one priority are served in arrival order."""
    acd, _ = make_acd()
    for name in ("c1", "c2", "c3"):
        assert acd.enqueue(WaitingCall(name, "q")) is None
    assert ids(acd.waiting("q")) == ["c1", "c2", "c3"]
    assert served(acd, 3) == ["c1", "c2", "c3"]


def test_vip_by_ivr_data_overtakes_earlier_calls():
    """A call whose IVR data says customer_class=vip gets priority 10 and is served first."""
    acd, _ = make_acd()
    acd.enqueue(WaitingCall("plain1", "q"))
    acd.enqueue(WaitingCall("plain2", "q"))
    acd.enqueue(WaitingCall("vip", "q", data={"customer_class": "vip"}))
    assert acd.call("vip").priority == 10 and acd.call("plain1").priority == 0
    assert acd.position("vip") == 1
    assert served(acd, 3) == ["vip", "plain1", "plain2"]


def test_vip_by_number_list_and_prefix():
    """Caller-number rules match exact numbers (any format) and prefixes; the highest rule wins."""
    rules = (
        PriorityRule(5, numbers=frozenset({"13800138000"})),
        PriorityRule(3, prefixes=("0755",)),
        PriorityRule(8, prefixes=("1380013",), data=(("segment", "private"),)),
    )
    acd, _ = make_acd(rules=rules)
    calls = {
        "listed": WaitingCall("listed", "q", "+86 138 0013 8000"),
        "shenzhen": WaitingCall("shenzhen", "q", "075588889999"),
        "private": WaitingCall("private", "q", "13800138000", {"segment": "private"}),
        "plain": WaitingCall("plain", "q", "02112345678"),
    }
    for call in calls.values():
        acd.enqueue(call)
    assert {name: call.priority for name, call in calls.items()} == {
        "listed": 5, "shenzhen": 3, "private": 8, "plain": 0}
    assert ids(acd.waiting("q")) == ["private", "listed", "shenzhen", "plain"]


def test_priority_floor_from_queue_and_caller():
    """The queue's base priority and the priority given at enqueue are floors under the rules."""
    acd, _ = make_acd(QueueConfig("q", "g", priority=2))
    acd.enqueue(WaitingCall("base", "q"))
    acd.enqueue(WaitingCall("given", "q", priority=7))
    acd.enqueue(WaitingCall("vip", "q", data={"customer_class": "vip"}, priority=4))
    assert [acd.call(c).priority for c in ("base", "given", "vip")] == [2, 7, 10]


def test_rulebook_without_rules_keeps_the_floor():
    """An empty rule book answers the floor and is falsy (the call path skips it)."""
    book = RuleBook(())
    assert not book and book.priority_for("123", {}, 4) == 4
    assert PriorityRule(1).matches("anything", {})


def test_supervisor_priority_change_reorders():
    """set_priority moves a waiting call; among equals it keeps its arrival order."""
    acd, _ = make_acd()
    for name in ("c1", "c2", "c3", "c4"):
        acd.enqueue(WaitingCall(name, "q"))
    acd.set_priority("c3", 5)
    acd.set_priority("c2", 5)
    acd.set_priority("c1", -1)
    assert ids(acd.waiting("q")) == ["c2", "c3", "c4", "c1"]
    assert [acd.position(c) for c in ("c1", "c2", "c3", "c4")] == [4, 1, 2, 3]
    acd.set_priority("c2", 5)  # no change
    assert served(acd, 4) == ["c2", "c3", "c4", "c1"]


def test_requeue_at_head_goes_ahead_of_same_priority_calls():
    """Ring-no-answer: the call goes back ahead of its priority's calls, behind higher priorities."""
    acd, clock = make_acd()
    acd.agent_available(AgentInfo("a", {"g": 5}))
    clock.advance(5)
    offer = acd.enqueue(WaitingCall("c1", "q"))
    assert offer.agent_id == "a"
    acd.enqueue(WaitingCall("c2", "q"))
    acd.enqueue(WaitingCall("c3", "q"))
    acd.enqueue(WaitingCall("vip", "q", data={"customer_class": "vip"}))
    clock.advance(20)
    acd.agent_unavailable("a")  # locked (闭锁) after not answering
    assert acd.requeue_at_head(offer.call) is None
    assert ids(acd.waiting("q")) == ["vip", "c1", "c2", "c3"]
    assert acd.call("c1").enqueued_at == 5
    offers = acd.agent_available(AgentInfo("b", {"g": 5}))
    assert [(o.call.call_id, o.agent_id) for o in offers] == [("vip", "b")]
    offers = acd.agent_available(AgentInfo("b", {"g": 5}))
    assert [(o.call.call_id, o.waited) for o in offers] == [("c1", 20)]


def test_requeue_goes_to_another_available_agent_at_once():
    """If another agent is free when the call comes back, it is offered to that agent."""
    acd, _ = make_acd()
    acd.agent_available(AgentInfo("a", {"g": 5}))
    first = acd.enqueue(WaitingCall("c1", "q"))
    acd.agent_available(AgentInfo("b", {"g": 5}))
    acd.agent_unavailable("a")
    again = acd.requeue_at_head(first.call)
    assert again.agent_id == "b"
    with pytest.raises(ValueError, match="never queued"):
        acd.requeue_at_head(WaitingCall("new", "q"))


def test_abandon_removes_the_call():
    """An abandoned call leaves its queue; positions close up; unknown ids answer None."""
    acd, _ = make_acd()
    for name in ("c1", "c2", "c3"):
        acd.enqueue(WaitingCall(name, "q"))
    assert acd.abandon("c2").call_id == "c2"
    assert acd.abandon("c2") is None and acd.abandon("nope") is None
    assert acd.position("c3") == 2 and acd.position("c2") is None
    assert acd.queue_length("q") == 2
    assert served(acd, 3) == ["c1", "c3"]


def test_move_to_another_queue_keeps_the_place():
    """A moved call keeps priority and arrival order and can be offered at once in its new queue."""
    acd, _ = make_acd(QueueConfig("q1", "g1"), QueueConfig("q2", "g2"))
    acd.enqueue(WaitingCall("early", "q1"))
    acd.enqueue(WaitingCall("later", "q2"))
    assert acd.move("early", "q2") is None
    assert ids(acd.waiting("q2")) == ["early", "later"] and acd.waiting("q1") == []
    acd.enqueue(WaitingCall("other", "q1"))
    acd.agent_available(AgentInfo("a", {"g1": 5}))
    offer = acd.move("later", "q1")
    assert offer is None  # the agent took "other" when it became available
    acd.agent_available(AgentInfo("b", {"g2": 5}))
    assert acd.waiting("q2") == []
    offer = acd.agent_available(AgentInfo("c", {"g1": 5}))[0]
    assert (offer.call.call_id, offer.queue) == ("later", "q1")


def test_move_to_a_queue_with_a_free_agent_offers_at_once():
    """Moving a waiting call into a queue whose group has an available agent gives an offer."""
    acd, _ = make_acd(QueueConfig("q1", "g1"), QueueConfig("q2", "g2"))
    acd.enqueue(WaitingCall("c", "q1"))
    acd.agent_available(AgentInfo("a", {"g2": 5}))
    offer = acd.move("c", "q2")
    assert (offer.agent_id, offer.queue, offer.call.queue) == ("a", "q2", "q2")
    assert acd.call("c") is None


def test_all_busy_reflects_available_agents():
    """all_busy is true while no agent may take the queue's calls (遇忙)."""
    acd, _ = make_acd()
    assert acd.all_busy("q")
    acd.agent_available(AgentInfo("a", {"g": 5}))
    assert not acd.all_busy("q")
    acd.enqueue(WaitingCall("c1", "q"))
    assert acd.all_busy("q")


def test_max_length_refuses_calls():
    """A full queue refuses new calls with QueueFull (for queue-overflow routing)."""
    acd, _ = make_acd(QueueConfig("q", "g", max_length=1))
    acd.enqueue(WaitingCall("c1", "q"))
    with pytest.raises(QueueFull):
        acd.enqueue(WaitingCall("c2", "q"))
    with pytest.raises(ValueError, match="already waiting"):
        acd.enqueue(WaitingCall("c1", "q"))
    with pytest.raises(KeyError, match="unknown queue"):
        acd.enqueue(WaitingCall("c3", "nope"))


def test_max_wait_hands_calls_back():
    """expired() takes out the calls that waited longer than max_wait; next_deadline tells when."""
    acd, clock = make_acd(QueueConfig("q", "g", max_wait=60))
    acd.enqueue(WaitingCall("c1", "q"))
    clock.advance(30)
    acd.enqueue(WaitingCall("c2", "q"))
    assert acd.next_deadline() == 60
    clock.advance(29)
    assert acd.expired() == []
    clock.advance(1)
    assert ids(acd.expired()) == ["c1"]
    assert ids(acd.waiting("q")) == ["c2"]
    acd.abandon("c2")
    clock.advance(100)
    assert acd.expired() == [] and acd.next_deadline() is None
