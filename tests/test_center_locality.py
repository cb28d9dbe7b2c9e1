"""Local preference end to end (AC-4): a caller's city from its number; other cities after overflow_after."""

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.test_center import signed_in, states

LOCAL = pytest.mark.queue("local_preference = yes\noverflow_after = 2\nstrategy = longest_idle\n")
NO_IVR = pytest.mark.sim(agi_script="queue")


def pops(events):
    return [e.data for e in events if e.name == "Delivered"]


@LOCAL
@NO_IVR
@pytest_twisted.ensureDeferred
async def test_caller_goes_to_an_agent_of_its_city_before_a_longer_idle_one_elsewhere(daemon):
    """1001 (Shanghai) has waited longest, but a Beijing caller (010…) goes to 1003 (Beijing)."""
    shanghai, shanghai_events = await signed_in(daemon, "1001")
    await deferLater(reactor, 0.2, lambda: None)
    beijing, beijing_events = await signed_in(daemon, "1003")
    trunk = daemon.call_in("01066660000", "95566", patience=30)
    await daemon.until(lambda: pops(beijing_events), "the Beijing agent's screen pop")
    assert pops(beijing_events)[0]["call"] == trunk.linkedid and not pops(shanghai_events)
    await daemon.until(lambda: "talking" in states(beijing_events), "the Beijing agent to talk")
    await shanghai.close()
    await beijing.close()


@LOCAL
@NO_IVR
@pytest_twisted.ensureDeferred
async def test_caller_overflows_to_another_city_after_overflow_after(daemon):
    """Only a Beijing agent is ready: a Shanghai caller (021…) waits, then overflows to it after 2 s."""
    center = daemon.root.getServiceNamed("center")
    beijing, events = await signed_in(daemon, "1003")
    trunk = daemon.call_in("02166660000", "95566", patience=30)
    await daemon.until(lambda: center.acd.call(trunk.linkedid), "the Shanghai caller to wait")
    await deferLater(reactor, 1.0, lambda: None)
    assert center.acd.call(trunk.linkedid) and not pops(events), "offered to another city before overflow_after"
    await daemon.until(lambda: pops(events), "the overflow to the Beijing agent")
    (pop,) = pops(events)
    assert pop["call"] == trunk.linkedid and pop["waited"] >= 2.0
    await beijing.close()
