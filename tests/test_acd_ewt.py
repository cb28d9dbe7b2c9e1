"""Queue position and estimated wait time (AC-6, 预计客户等待时间)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ctid.acd import ACD, AgentInfo, QueueConfig, WaitingCall, WaitSnapshot, observed_estimate
from ctid.acd.ewt import Ewma


def busy_queue(alpha: float = 0.5) -> tuple[ACD, Clock]:
    """Three agents of group ``g`` all busy on calls of ``q``, then four calls waiting (c1..c4)."""
    clock = Clock()
    acd = ACD([QueueConfig("q", "g"), QueueConfig("other", "h")], clock, alpha=alpha)
    for name in ("a1", "a2", "a3"):
        acd.agent_available(AgentInfo(name, {"g": 5}))
        assert acd.enqueue(WaitingCall(f"busy-{name}", "q")) is not None
    for name in ("c1", "c2", "c3", "c4"):
        assert acd.enqueue(WaitingCall(name, "q")) is None
    return acd, clock


def test_worked_example():
    """AHT 150 s (EWMA of 120 and 180 at alpha 0.5), 3 agents serving: position p waits p x 150 / 3 s."""
    acd, _ = busy_queue()
    acd.call_completed("q", 120.0)
    acd.call_completed("q", 180.0)
    assert acd.serving("g") == 3
    assert [acd.position(c) for c in ("c1", "c2", "c3", "c4")] == [1, 2, 3, 4]
    assert acd.estimated_wait("c4") == pytest.approx(200.0)
    assert acd.estimated_wait("c1") == pytest.approx(50.0)
    assert acd.estimated_queue_wait("q") == pytest.approx(250.0)  # a new caller would be 5th
    assert acd.estimated_queue_wait("q", priority=1) == pytest.approx(50.0)  # ahead of all four
    acd.abandon("c2")
    assert acd.position("c4") == 3 and acd.estimated_wait("c4") == pytest.approx(150.0)
    assert acd.estimated_wait("gone") is None and acd.position("gone") is None


def test_fewer_agents_serving_means_longer_waits():
    """An agent leaving (logout, pause, lock) counts no more: N drops from 3 to 2."""
    acd, _ = busy_queue()
    acd.call_completed("q", 150.0)
    acd.agent_unavailable("a1")
    assert acd.serving("g") == 2
    assert acd.estimated_wait("c4") == pytest.approx(300.0)


def test_observed_service_rate_gives_the_conservative_figure():
    """When answers under backlog come slower than N/AHT says, the observed rate decides."""
    acd, clock = busy_queue()
    acd.call_completed("q", 150.0)
    acd.call_answered("q", 10.0)
    clock.advance(100)
    acd.call_answered("q", 30.0)  # one answer per 100 s while calls wait
    assert acd.estimated_wait("c4") == pytest.approx(400.0)


def test_no_figures_yet():
    """Without handle times the average answer wait is used; without anything, None."""
    acd, _ = busy_queue()
    assert acd.estimated_wait("c1") is None
    acd.call_answered("q", 42.0)
    assert acd.estimated_wait("c1") == pytest.approx(42.0)


def test_estimator_is_pluggable():
    """The ACD hands a WaitSnapshot to the estimator it was given (e.g. a future Erlang C)."""
    seen = []

    def estimator(snapshot: WaitSnapshot) -> float:
        seen.append(snapshot)
        return 7.0

    acd = ACD([QueueConfig("q", "g")], Clock(), estimator=estimator)
    acd.enqueue(WaitingCall("c1", "q"))
    acd.call_completed("q", 100.0)
    assert acd.estimated_wait("c1") == 7.0
    assert seen == [WaitSnapshot(position=1, serving=0, handle_time=100.0, answer_wait=None, answer_rate=None)]


def test_ewma():
    """The first sample is taken as is; later ones weigh alpha."""
    average = Ewma(0.25)
    assert average.value is None
    average.add(100.0)
    average.add(200.0)
    assert average.value == pytest.approx(125.0)
    with pytest.raises(ValueError):
        Ewma(0)


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (WaitSnapshot(2, 4, 100.0, 30.0, None), 50.0),
        (WaitSnapshot(2, 4, 100.0, 30.0, 0.5), 50.0),
        (WaitSnapshot(2, 4, 100.0, 30.0, 0.01), 200.0),
        (WaitSnapshot(2, 0, 100.0, 30.0, 0.1), 20.0),
        (WaitSnapshot(2, 0, 100.0, 30.0, None), 30.0),
        (WaitSnapshot(2, 0, None, None, None), None),
    ],
)
def test_observed_estimate(snapshot, expected):
    """The default estimator: p x AHT / N, the slower observed rate if known, then fallbacks."""
    assert observed_estimate(snapshot) == (expected if expected is None else pytest.approx(expected))
