"""Queueing models for staffing: Erlang B, Erlang C (M/M/N) and Erlang A (M/M/N+M).

Pure, numerically stable functions of the offered load.  Units: ``load`` is
the offered traffic in Erlangs (arrival rate × mean handle time), ``aht`` the
mean handle time, ``patience`` the callers' mean patience and ``answer_within``
the service-level threshold, all in the same time unit (seconds in ctid).

How they stay stable (docs/kpis.md, "Staffing"):

* **Erlang B** by the recursion ``B(0) = 1``, ``B(n) = A·B(n-1) / (n + A·B(n-1))``
  (Koole, *Call Center Optimization*, 2013, §5): every step stays in [0, 1], no
  factorials or powers, O(N), exact to rounding for thousands of agents.
* **Erlang C** from Erlang B: ``C = N·B / (N - A·(1 - B))`` for ``N > A``
  (Gans, Koole & Mandelbaum 2003, §4.1).
* **Erlang A** (Palm 1943; Garnett, Mandelbaum & Reiman 2002).  The
  birth-death chain's states below N are the Erlang B part; the states above
  N weigh ``r^j / ((b+1)…(b+j))`` with ``r = λ/θ`` and ``b = Nμ/θ`` (θ = 1 /
  patience).  That series, ``S_b(r)``, is summed outward from its largest
  term (found with ``lgamma``) in scaled floating point and kept as a
  logarithm, so heavy overload and long patience neither overflow nor cost
  more than O(√r) terms.  The waiting-time results follow from the closed
  solution of the queue-ahead death process (derivation in docs/kpis.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Performance",
    "erlang_a",
    "erlang_a_from_b",
    "erlang_b",
    "erlang_b_table",
    "erlang_c",
    "erlang_c_from_b",
    "erlang_c_performance",
]

#: Relative size of the last series term kept.
_EPS = 1e-17


@dataclass(frozen=True, slots=True)
class Performance:
    """What a queue with ``agents`` agents and ``load`` Erlangs offered is expected to show.

    ``service_level``: share of offered calls answered within the threshold;
    ``p_wait``: share that find every agent busy; ``asa``: mean wait of all
    offered calls (answered at once counted as 0; abandoners up to when they
    hang up); ``p_abandon``: share that hang up waiting (0 for Erlang C);
    ``occupancy``: share of the agents' time spent handling calls.  An
    overloaded Erlang C queue (``agents <= load``) waits for ever: SL 0, ASA
    infinite.
    """

    agents: int
    load: float
    service_level: float
    p_wait: float
    asa: float
    p_abandon: float
    occupancy: float


def _check(agents: int, load: float) -> None:
    if agents < 0 or load < 0 or math.isnan(load):
        raise ValueError(f"need agents >= 0 and load >= 0, got {agents} agents, {load} Erlangs")


def erlang_b_table(agents: int, load: float) -> list[float]:
    """Erlang B blocking probabilities ``[B(0, load), …, B(agents, load)]`` by the stable recursion."""
    _check(agents, load)
    table = [1.0]
    b = 1.0
    for n in range(1, agents + 1):
        b = load * b / (n + load * b)
        table.append(b)
    return table


def erlang_b(agents: int, load: float) -> float:
    """Probability that a call finds all ``agents`` busy in a loss system (Erlang B)."""
    return erlang_b_table(agents, load)[-1]


def _c_from_b(agents: int, load: float, b: float) -> float:
    if agents <= load:
        return 1.0
    return agents * b / (agents - load * (1.0 - b))


def erlang_c(agents: int, load: float) -> float:
    """Probability that a call waits (Erlang C); 1 when ``agents <= load`` (the queue grows for ever)."""
    _check(agents, load)
    return _c_from_b(agents, load, erlang_b(agents, load))


def erlang_c_from_b(agents: int, load: float, aht: float, answer_within: float, b: float) -> Performance:
    """Erlang C figures given ``b`` = Erlang B for the same agents and load (lets searches reuse the recursion)."""
    c = _c_from_b(agents, load, b)
    if agents <= load:
        return Performance(agents, load, 0.0, 1.0, math.inf, 0.0, 1.0 if agents else 0.0)
    spare = agents - load
    service_level = 1.0 - c * math.exp(-spare * answer_within / aht)
    return Performance(agents, load, service_level, c, c * aht / spare, 0.0, load / agents)


def erlang_c_performance(agents: int, load: float, aht: float, answer_within: float) -> Performance:
    """Erlang C (M/M/N, nobody hangs up): SL = 1 - C·exp(-(N - A)·t / AHT), ASA = C·AHT / (N - A)."""
    _check(agents, load)
    _positive(aht=aht)
    return erlang_c_from_b(agents, load, aht, answer_within, erlang_b(agents, load))


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0 or math.isinf(value):
            raise ValueError(f"{name} must be a positive number, got {value}")


def _series(b: float, x: float) -> tuple[float, float]:
    """``(log S_b(x), mean j)`` for ``S_b(x) = sum_j x^j / ((b+1)…(b+j))``, the weights ``j`` averaged."""
    if x <= 0.0:
        return 0.0, 0.0
    peak = max(0, math.floor(x - b))
    log_peak = peak * math.log(x) - (math.lgamma(b + peak + 1.0) - math.lgamma(b + 1.0))
    total, weighted = 1.0, float(peak)
    term, j = 1.0, peak
    while True:
        j += 1
        term *= x / (b + j)
        total += term
        weighted += j * term
        if term < _EPS * total:
            break
    term, j = 1.0, peak
    while j > 0:
        term *= (b + j) / x
        j -= 1
        total += term
        weighted += j * term
        if term < _EPS * total:
            break
    return log_peak + math.log(total), weighted / total


def erlang_a_from_b(agents: int, load: float, aht: float, patience: float, answer_within: float,
                    b: float) -> Performance:
    """Erlang A figures given ``b`` = Erlang B for the same agents and load (see :func:`erlang_a`)."""
    if agents == 0:
        return Performance(0, load, 0.0, 1.0 if load else 0.0, patience if load else 0.0,
                           1.0 if load else 0.0, 0.0)
    if load == 0.0 or b == 0.0:
        return Performance(agents, load, 1.0, 0.0, 0.0, 0.0, 0.0)
    rate_b = agents * patience / aht            # b = Nμ/θ
    rate_r = load * patience / aht              # r = λ/θ
    # S_b(r) = 1 + r/(b+1)·S_{b+1}(r): one series gives both (and the mean queue ahead).
    log_s1, mean1 = _series(rate_b + 1.0, rate_r)
    log_lead = math.log(rate_r / (rate_b + 1.0)) + log_s1
    log_s = log_lead + math.log1p(math.exp(-log_lead)) if log_lead > 0 else math.log1p(math.exp(log_lead))
    mean_ahead = math.exp(log_lead - log_s) * (mean1 + 1.0)
    odds_free = math.log1p(-b) - math.log(b) - log_s   # log P(some agent free) / P(all busy)
    p_wait = 1.0 / (1.0 + math.exp(odds_free)) if odds_free < 700.0 else 0.0
    p_abandon = p_wait * mean_ahead / rate_r
    t = answer_within / patience                # θ·t
    log_s1t, _ = _series(rate_b + 1.0, rate_r * math.exp(-t))
    log_f = -(rate_b + 1.0) * t - rate_r * math.expm1(-t)
    served_in_time = rate_b / (rate_b + 1.0) * math.exp(log_s1 - log_s) * -math.expm1(log_f + log_s1t - log_s1)
    service_level = 1.0 - p_wait + p_wait * served_in_time
    occupancy = load * (1.0 - p_abandon) / agents
    return Performance(agents, load, service_level, p_wait, p_abandon * patience, p_abandon, occupancy)


def erlang_a(agents: int, load: float, aht: float, patience: float, answer_within: float) -> Performance:
    """Erlang A (M/M/N+M: callers hang up after an exponential patience of mean ``patience``).

    ``service_level`` is the share of offered calls answered within
    ``answer_within`` (those who hang up first are not); ``asa`` the mean
    time in queue of every offered call, which equals ``p_abandon ×
    patience`` (Little's law with abandonment rate θ·E[queue]).
    """
    _check(agents, load)
    _positive(aht=aht, patience=patience)
    if answer_within < 0:
        raise ValueError(f"answer_within must not be negative, got {answer_within}")
    return erlang_a_from_b(agents, load, aht, patience, answer_within, erlang_b(agents, load))
