"""Erlang B/C/A (ctid.erlang) and staffing (ctid.staffing) against published values and independent computations."""

from __future__ import annotations

import math
from datetime import datetime
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctid.acd.ewt import WaitSnapshot, observed_estimate
from ctid.erlang import (
    _log_s,
    _series,
    erlang_a,
    erlang_a_arrays,
    erlang_b,
    erlang_b_at,
    erlang_c,
    erlang_c_performance,
)
from ctid.staffing import (
    Demand,
    ServiceTarget,
    agents_needed,
    estimate_patience,
    modelled_estimate,
    modelled_estimator,
    position_wait,
    staff,
    staff_all,
)


def exact_erlang_c(agents: int, load: int) -> Fraction:
    """Erlang C straight from its textbook definition, in exact rationals."""
    last = Fraction(load**agents, math.factorial(agents)) * Fraction(agents, agents - load)
    below = sum(Fraction(load**k, math.factorial(k)) for k in range(agents))
    return last / (below + last)


def test_erlang_b_published_table_values():
    """Erlang B matches the classic traffic tables (e.g. 5 Erlangs on 10 circuits blocks 1.84 %)."""
    assert erlang_b(10, 5.0) == pytest.approx(0.018385, abs=1e-6)
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_b(0, 3.0) == 1.0


def test_erlang_c_published_examples():
    """The usual worked examples: A=10 Erlangs on 11 agents waits 68.21 %; 14 agents give 80/20 at 88.8 %, ASA 7.8 s."""
    assert erlang_c(11, 10.0) == pytest.approx(0.6821, abs=1e-4)
    p = erlang_c_performance(14, 10.0, aht=180, answer_within=20)
    assert p.p_wait == pytest.approx(0.1741, abs=1e-4)
    assert p.service_level == pytest.approx(0.8883, abs=1e-4)
    assert p.asa == pytest.approx(7.84, abs=0.01)
    assert p.occupancy == pytest.approx(10 / 14)


@pytest.mark.parametrize("agents,load", [(2, 1), (11, 10), (30, 25), (60, 50), (120, 100)])
def test_erlang_c_equals_exact_rational_definition(agents, load):
    """The stable recursion agrees with the factorial definition computed exactly."""
    assert erlang_c(agents, float(load)) == pytest.approx(float(exact_erlang_c(agents, load)), rel=1e-12)


def test_erlang_c_hundreds_of_agents_and_high_traffic_stay_finite():
    """No overflow where factorials would: 2,000 agents on 1,950 Erlangs gives a probability in (0, 1)."""
    c = erlang_c(2000, 1950.0)
    assert 0.0 < c < 1.0
    assert erlang_c(5, 5.0) == 1.0 and erlang_c(5, 6.0) == 1.0


def test_erlang_c_overloaded_waits_for_ever():
    """With no more agents than Erlangs the queue never empties: SL 0, infinite ASA."""
    p = erlang_c_performance(10, 10.0, 180, 20)
    assert (p.service_level, p.p_wait, p.asa) == (0.0, 1.0, math.inf)


def brute_force_erlang_a(agents, load, aht, patience, answer_within, depth=600, steps=4000):
    """Erlang A by solving the truncated birth-death chain, and the SL by integrating the queue-ahead ODE (RK4)."""
    mu, theta = 1 / aht, 1 / patience
    lam = load * mu
    weights = [1.0]
    for n in range(1, agents + depth):
        rate_down = min(n, agents) * mu + max(n - agents, 0) * theta
        weights.append(weights[-1] * lam / rate_down)
    total = sum(weights)
    probs = [w / total for w in weights]
    p_wait = sum(probs[agents:])
    queue = sum((n - agents) * p for n, p in enumerate(probs) if n > agents)
    p_abandon = theta * queue / lam
    # A caller arriving with j ahead: the queue ahead shrinks at agents*mu + j*theta; the caller leaves at theta.
    state = probs[agents:]
    served, dt = 0.0, answer_within / steps

    def derivative(v):
        out = []
        for j, x in enumerate(v):
            inflow = (agents * mu + (j + 1) * theta) * v[j + 1] if j + 1 < len(v) else 0.0
            out.append(-(agents * mu + j * theta + theta) * x + inflow)
        return out

    def step(v, k, h):
        return [x + h * dx for x, dx in zip(v, k, strict=True)]

    for _ in range(steps):
        k1 = derivative(state)
        k2 = derivative(step(state, k1, dt / 2))
        k3 = derivative(step(state, k2, dt / 2))
        k4 = derivative(step(state, k3, dt))
        flows = [agents * mu * v[0] for v in (state, step(state, k1, dt / 2), step(state, k2, dt / 2),
                                                 step(state, k3, dt))]
        served += dt / 6 * (flows[0] + 2 * flows[1] + 2 * flows[2] + flows[3])
        state = [x + dt / 6 * (a + 2 * b + 2 * c + d) for x, a, b, c, d in zip(state, k1, k2, k3, k4, strict=True)]
    return p_wait, p_abandon, 1 - p_wait + served


@pytest.mark.parametrize("agents,load,patience", [(10, 9.0, 60.0), (8, 10.0, 120.0), (20, 16.0, 30.0)])
def test_erlang_a_matches_brute_force_chain(agents, load, patience):
    """P(wait), P(abandon) and SL agree with a truncated chain and a numerically integrated wait."""
    p = erlang_a(agents, load, aht=120.0, patience=patience, answer_within=20.0)
    p_wait, p_abandon, service_level = brute_force_erlang_a(agents, load, 120.0, patience, 20.0, steps=400)
    assert p.p_wait == pytest.approx(p_wait, rel=1e-9)
    assert p.p_abandon == pytest.approx(p_abandon, rel=1e-9)
    assert p.service_level == pytest.approx(service_level, abs=1e-7)
    assert p.asa == pytest.approx(p_abandon * patience, rel=1e-9)


def test_erlang_a_tends_to_erlang_c_with_endless_patience():
    """Callers who never hang up make Erlang A into Erlang C (the Westbay example: 48 Erlangs, 55 agents, 15 s)."""
    c = erlang_c_performance(55, 48.0, 240, 15)
    a = erlang_a(55, 48.0, 240, 1e9, 15)
    assert c.p_wait == pytest.approx(0.2387, abs=1e-4) and c.service_level == pytest.approx(0.8459, abs=1e-4)
    assert a.p_wait == pytest.approx(c.p_wait, rel=1e-6)
    assert a.service_level == pytest.approx(c.service_level, rel=1e-6)
    assert a.asa == pytest.approx(c.asa, rel=1e-5)


def test_erlang_a_stable_overloaded_at_scale():
    """1,000 agents under 1,200 Erlangs is stable with abandonment: about 1/6 hang up (flow balance), no overflow."""
    p = erlang_a(1000, 1200.0, 240.0, 100.0, 15.0)
    assert p.p_abandon == pytest.approx(1 / 6, rel=1e-3)
    assert 0.0 < p.service_level < 1.0 and p.occupancy <= 1.0 + 1e-12


@settings(max_examples=60, deadline=None)
@given(agents=st.integers(1, 300), load=st.floats(0.01, 400.0), patience=st.floats(1.0, 3000.0),
       within=st.floats(0.0, 120.0))
def test_erlang_a_figures_are_probabilities(agents, load, patience, within):
    """Whatever the inputs, the figures are finite, in range, and SL never exceeds the share answered."""
    p = erlang_a(agents, load, 180.0, patience, within)
    for value in (p.service_level, p.p_wait, p.p_abandon, p.occupancy):
        assert -1e-9 <= value <= 1.0 + 1e-9
    assert p.service_level <= 1.0 - p.p_abandon + 1e-9
    assert math.isfinite(p.asa)


def test_agents_needed_erlang_c_callcentre_example():
    """100 calls in 30 min of 180 s at 80/20 need 14 agents (13 reach 79.6 %)."""
    p = agents_needed(10.0, 180.0, ServiceTarget(0.8, 20.0))
    assert p.agents == 14
    assert erlang_c_performance(13, 10.0, 180.0, 20.0).service_level == pytest.approx(0.7956, abs=1e-4)


def test_agents_needed_is_the_fewest_for_erlang_a():
    """The Erlang A search returns N meeting the target while N - 1 does not; patience lowers the need."""
    target = ServiceTarget(0.8, 20.0)
    p = agents_needed(48.0, 240.0, target, patience=300.0)
    assert p.service_level >= 0.8
    assert erlang_a(p.agents - 1, 48.0, 240.0, 300.0, 20.0).service_level < 0.8
    assert p.agents <= agents_needed(48.0, 240.0, target).agents


def test_agents_needed_no_load_and_bad_input():
    """No calls need no agents; nonsense is refused with a clear error."""
    assert agents_needed(0.0, 180.0, ServiceTarget()).agents == 0
    with pytest.raises(ValueError, match="load"):
        agents_needed(-1.0, 180.0, ServiceTarget())
    with pytest.raises(ValueError, match="aht"):
        agents_needed(1.0, 0.0, ServiceTarget())
    with pytest.raises(ValueError, match="patience"):
        agents_needed(1.0, 10.0, ServiceTarget(), patience=0.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        ServiceTarget(1.0, 20.0)


def test_staff_per_queue_and_interval():
    """Observed demand per queue and half hour becomes agents needed: 100 calls × 180 s in 1,800 s = 14 agents."""
    start = datetime(2026, 5, 4, 9, 0)
    demands = [Demand("general", start, 1800.0, 100, 180.0), Demand("vip", start, 1800.0, 0, 200.0),
               Demand("cards", start, 1800.0, 100, 180.0, patience=estimate_patience(12, 3600.0))]
    result = staff_all(demands, ServiceTarget(0.8, 20.0))
    assert [(s.queue, s.agents) for s in result][:2] == [("general", 14), ("vip", 0)]
    assert result[2].agents <= 14 and result[2].performance.p_abandon > 0
    with pytest.raises(ValueError, match="general"):
        staff(Demand("general", start, 0.0, 1, 180.0), ServiceTarget())


def fewest_by_walking(load, aht, target, patience):
    """The fewest agents by trying every count from one up (the definition, no search)."""
    n = 1
    while True:
        p = (erlang_a(n, load, aht, patience, target.answer_within) if patience is not None
             else erlang_c_performance(n, load, aht, target.answer_within))
        if p.service_level >= target.level:
            return n
        n += 1


@settings(max_examples=25, deadline=None)
@given(queues=st.lists(st.tuples(st.integers(1, 400), st.floats(30.0, 600.0),
                                 st.one_of(st.none(), st.floats(2.0, 2000.0))), min_size=1, max_size=6),
       level=st.floats(0.05, 0.95), within=st.floats(0.0, 90.0))
def test_staff_all_finds_the_fewest_agents_for_every_queue(queues, level, within):
    """Searching many queues together gives, for each, the fewest agents meeting the target (C and A mixed)."""
    start = datetime(2026, 5, 4, 9, 0)
    target = ServiceTarget(level, within)
    demands = [Demand(f"q{i}", start, 1800.0, calls, aht, patience) for i, (calls, aht, patience) in enumerate(queues)]
    for demand, staffing in zip(demands, staff_all(demands, target), strict=True):
        assert staffing.agents == fewest_by_walking(demand.load, demand.aht, target, demand.patience), demand


@pytest.mark.parametrize("agents,load", [(0, 3.0), (5, 0.0), (10, 5.0), (1000, 950.0), (3, 400.0), (40, 5000.0)])
def test_erlang_b_at_one_count_equals_the_recursion(agents, load):
    """B at one agent count in O(1) agrees with the recursion, also where the Poisson tail underflows (N << A)."""
    assert float(erlang_b_at(agents, load)) == pytest.approx(erlang_b(agents, load), rel=1e-11)


@pytest.mark.parametrize("b,x", [(2.0, 0.01), (5000.0, 100.0), (20000.0, 14000.0), (50.0, 48.0), (300.0, 900.0)])
def test_erlang_a_series_closed_form_and_summed_agree(b, x):
    """log S_b(x) from the incomplete gamma function equals the summed series (the fallback below b/4 or underflow)."""
    bs, xs = np.array([b]), np.array([x])
    log_s, mean = _log_s(bs, xs)
    expected_log, expected_mean = _series(b, x)
    assert log_s[0] == pytest.approx(expected_log, rel=1e-11)
    assert mean[0] == pytest.approx(expected_mean, rel=1e-7, abs=1e-12)


def test_erlang_a_arrays_is_erlang_a_for_each_queue():
    """The vectorised model gives exactly the figures of the one-queue function, edge cases included."""
    cases = [(0, 5.0), (10, 0.0), (10, 9.0), (300, 320.0), (2000, 1000.0)]
    agents, loads = zip(*cases, strict=True)
    levels, waits, abandons = erlang_a_arrays(agents, loads, 180.0, 90.0, 20.0, erlang_b_at(agents, loads))
    for i, (n, load) in enumerate(cases):
        p = erlang_a(n, load, 180.0, 90.0, 20.0)
        assert (levels[i], waits[i], abandons[i]) == pytest.approx((p.service_level, p.p_wait, p.p_abandon))


def test_estimate_patience():
    """Patience = total time waited / hang-ups; nobody hanging up gives no estimate."""
    assert estimate_patience(4, 1000.0) == 250.0
    assert estimate_patience(0, 1000.0) is None


def test_position_wait_with_and_without_abandonment():
    """Third in line, one agent freeing every 50 s: 150 s; callers ahead who may hang up make it shorter."""
    assert position_wait(3, 1 / 50) == pytest.approx(150.0)
    expected = 1 / (1 / 50) + 1 / (1 / 50 + 1 / 100) + 1 / (1 / 50 + 2 / 100)
    assert position_wait(3, 1 / 50, patience=100.0) == pytest.approx(expected)
    with pytest.raises(ValueError):
        position_wait(0, 1.0)


@given(position=st.integers(1, 50), serving=st.integers(0, 20),
       handle=st.one_of(st.none(), st.floats(0.0, 1000.0)), wait=st.one_of(st.none(), st.floats(0.0, 500.0)),
       rate=st.one_of(st.none(), st.floats(0.001, 10.0)))
def test_modelled_estimate_without_abandonment_is_the_observed_one(position, serving, handle, wait, rate):
    """With no patience configured the modelled estimate is exactly the ACD's observed estimate."""
    snapshot = WaitSnapshot(position, serving, handle, wait, rate)
    expected = observed_estimate(snapshot)
    got = modelled_estimate(snapshot)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_modelled_estimator_accounts_for_callers_ahead_hanging_up():
    """The estimator the ACD takes: 4th in line, 3 agents at 150 s AHT: 200 s observed, less with 120 s patience."""
    snapshot = WaitSnapshot(4, 3, 150.0, None, None)
    assert modelled_estimator(None)(snapshot) == pytest.approx(200.0)
    assert modelled_estimator(120.0)(snapshot) == pytest.approx(sum(1 / (3 / 150 + j / 120) for j in range(4)))
    with pytest.raises(ValueError):
        modelled_estimator(0.0)
