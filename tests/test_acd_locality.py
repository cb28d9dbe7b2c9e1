"""Local preference routing (AC-4, 本地偏好路由): caller city lookup and overflow to other cities."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ctid.acd import ACD, CHINA_AREA_CODES, AgentInfo, CityTable, QueueConfig, WaitingCall, national

CITIES = CityTable({**CHINA_AREA_CODES, "1380021": "Shanghai"}, local_city="Shanghai")


def make_acd(overflow_after: float | None = 30.0) -> tuple[ACD, Clock]:
    """An ACD with one local-preference queue on group ``g`` and one plain queue on the same group."""
    clock = Clock()
    queues = [
        QueueConfig("local", "g", local_preference=True, overflow_after=overflow_after),
        QueueConfig("plain", "g"),
    ]
    return ACD(queues, clock, cities=CITIES), clock


def seat(agent_id: str, city: str, idle_since: float = 0.0) -> AgentInfo:
    """An agent of group ``g`` in ``city``."""
    return AgentInfo(agent_id, {"g": 5}, city, idle_since=idle_since)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("02112345678", "02112345678"),
        ("+86 21 1234 5678", "02112345678"),
        ("008613800210000", "13800210000"),
        ("8613800210000", "13800210000"),
        ("86123456", "86123456"),
        ("(010) 8888-1234", "01088881234"),
        ("anonymous", ""),
    ],
)
def test_national_form(number, expected):
    """Numbers are brought to the national form: digits, no country code, trunk 0 on landlines."""
    assert national(number) == expected


@pytest.mark.parametrize(
    ("number", "city"),
    [
        ("02168881234", "Shanghai"),
        ("075588881234", "Shenzhen"),
        ("+86 10 8888 1234", "Beijing"),
        ("13800210000", "Shanghai"),
        ("13800100000", None),
        ("62345678", "Shanghai"),
        ("", None),
    ],
)
def test_city_lookup_uses_the_longest_prefix(number, city):
    """Area codes and mobile segments share one table; local short numbers belong to local_city."""
    assert CITIES.city_of(number) == city


def test_same_city_agent_is_preferred():
    """A Shanghai caller goes to the Shanghai agent even though the Beijing agent has been idle longer."""
    acd, _ = make_acd()
    acd.agent_available(seat("bj", "Beijing", idle_since=0.0))
    acd.agent_available(seat("sh", "Shanghai", idle_since=50.0))
    offer = acd.enqueue(WaitingCall("c1", "local", "02112345678"))
    assert (offer.agent_id, offer.call.city) == ("sh", "Shanghai")


def test_plain_queue_ignores_cities():
    """A queue without local preference uses its strategy over all cities."""
    acd, _ = make_acd()
    acd.agent_available(seat("bj", "Beijing", idle_since=0.0))
    acd.agent_available(seat("sh", "Shanghai", idle_since=50.0))
    assert acd.enqueue(WaitingCall("c1", "plain", "02112345678")).agent_id == "bj"


def test_unknown_city_goes_to_anyone():
    """A caller whose number matches no prefix is offered to any agent at once."""
    acd, _ = make_acd()
    acd.agent_available(seat("bj", "Beijing"))
    offer = acd.enqueue(WaitingCall("c1", "local", "anonymous"))
    assert offer.agent_id == "bj" and offer.call.city is None


def test_overflow_by_tick():
    """The call waits for a local agent; once overflow_after has passed, tick() offers it to another city."""
    acd, clock = make_acd()
    acd.agent_available(seat("bj", "Beijing"))
    assert acd.enqueue(WaitingCall("c1", "local", "02112345678")) is None
    assert not acd.all_busy("local")  # an agent is free, just not in the caller's city
    assert acd.next_deadline() == 30
    clock.advance(29.9)
    assert acd.tick() == []
    clock.advance(0.1)
    offers = acd.tick()
    assert [(o.call.call_id, o.agent_id, o.waited) for o in offers] == [("c1", "bj", 30)]
    assert offers[0].call.overflowed
    assert acd.tick() == []


def test_overflow_when_an_agent_becomes_available():
    """An other-city agent becoming available before overflow is filed; after overflow it takes the call."""
    acd, clock = make_acd()
    acd.enqueue(WaitingCall("c1", "local", "02112345678"))
    clock.advance(10)
    assert acd.agent_available(seat("bj", "Beijing")) == []
    acd.agent_unavailable("bj")
    clock.advance(25)
    offers = acd.agent_available(seat("bj", "Beijing"))
    assert [(o.call.call_id, o.agent_id) for o in offers] == [("c1", "bj")]


def test_overflow_promotion_offers_to_other_idle_agents():
    """Overflow found by agent_available also offers promoted calls to agents already idle."""
    acd, clock = make_acd()
    acd.agent_available(seat("gz", "Guangzhou"))
    acd.enqueue(WaitingCall("c1", "local", "02112345678"))
    clock.advance(31)
    offers = acd.agent_available(seat("bj", "Beijing"))
    assert [(o.call.call_id, o.agent_id) for o in offers] == [("c1", "gz")]
    assert acd.is_available("bj")


def test_local_agent_still_takes_its_city_calls_first():
    """A Shanghai agent becoming available takes a waiting Shanghai call (local heap)."""
    acd, _ = make_acd()
    acd.enqueue(WaitingCall("bj-call", "local", "01088881234"))
    acd.enqueue(WaitingCall("sh-call", "local", "02188881234"))
    offers = acd.agent_available(seat("sh", "Shanghai"))
    assert [o.call.call_id for o in offers] == ["sh-call"]
    assert acd.position("bj-call") == 1


def test_overflow_zero_prefers_local_but_never_waits():
    """With overflow_after=0 a free local agent is preferred, else any city at once."""
    acd, _ = make_acd(overflow_after=0)
    acd.agent_available(seat("bj", "Beijing", idle_since=0.0))
    acd.agent_available(seat("sh", "Shanghai", idle_since=9.0))
    assert acd.enqueue(WaitingCall("c1", "local", "02112345678")).agent_id == "sh"
    assert acd.enqueue(WaitingCall("c2", "local", "02112345678")).agent_id == "bj"


def test_no_overflow_keeps_the_call_local():
    """With overflow_after=None the call only ever goes to its own city."""
    acd, clock = make_acd(overflow_after=None)
    acd.agent_available(seat("bj", "Beijing"))
    acd.enqueue(WaitingCall("c1", "local", "02112345678"))
    clock.advance(3600)
    assert acd.tick() == [] and acd.next_deadline() is None
    assert [o.agent_id for o in acd.agent_available(seat("sh", "Shanghai"))] == ["sh"]


def test_overflowed_call_keeps_its_place():
    """An overflowed call can be taken by an agent of any city, in priority/arrival order."""
    acd, clock = make_acd()
    acd.enqueue(WaitingCall("sh-call", "local", "02188881234"))
    clock.advance(31)
    assert acd.tick() == []
    acd.enqueue(WaitingCall("later", "plain", "01088881234"))
    offers = acd.agent_available(seat("gz", "Guangzhou"))
    assert [o.call.call_id for o in offers] == ["sh-call"]


def test_refiled_agent_is_not_offered_twice_by_a_promotion():
    """An available agent reported again as overflow falls due gets the promoted call once, and stays reserved."""
    acd, clock = make_acd()
    acd.agent_available(seat("bj", "Beijing"))
    acd.enqueue(WaitingCall("c1", "local", "02112345678"))
    clock.advance(31)
    offers = acd.agent_available(seat("bj", "Beijing"))
    assert [(o.call.call_id, o.agent_id) for o in offers] == [("c1", "bj")]
    assert not acd.is_available("bj")


def test_agent_moving_to_another_city_takes_that_city_calls():
    """An agent reported in another city (same skills) is filed and served under its new city."""
    acd, _ = make_acd(overflow_after=None)
    skills = {"g": 5}
    acd.agent_available(AgentInfo("a", skills, "Beijing"))
    assert acd.enqueue(WaitingCall("sh", "local", "02112345678")) is None
    offers = acd.agent_available(AgentInfo("a", skills, "Shanghai"))
    assert [(o.call.call_id, o.agent_id) for o in offers] == [("sh", "a")]
    acd.agent_available(AgentInfo("a", skills, "Shanghai"))
    assert acd.enqueue(WaitingCall("bj", "local", "01012345678")) is None
    assert acd.enqueue(WaitingCall("sh2", "local", "02187654321")).agent_id == "a"
