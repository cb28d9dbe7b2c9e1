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
* **Erlang B at one N** (for searches that start near the answer) from the
  Poisson distribution: ``B = p(N; A) / P(X <= N)``, the tail by SciPy's
  regularized incomplete gamma function ``Q(N+1, A)`` and the term in
  logarithms; where that tail underflows (N far below A) the recursion.
* **Erlang A** (Palm 1943; Garnett, Mandelbaum & Reiman 2002).  The
  birth-death chain's states below N are the Erlang B part; the states above
  N weigh ``r^j / ((b+1)…(b+j))`` with ``r = λ/θ`` and ``b = Nμ/θ`` (θ = 1 /
  patience).  That series is ``S_b(r) = b·r^-b·e^r·γ(b, r)``
  (Mandelbaum & Zeltyn's ``A(b, r)``), taken in logarithms from the
  regularized incomplete gamma function ``P(b, r)``: O(1) for any load.
  Where ``P`` would underflow, or ``r < b/4`` (where the closed form's mean
  cancels), the series is summed outward from its largest term in scaled
  floating point instead — it converges fast there.  The waiting-time results
  follow from the closed solution of the queue-ahead death process
  (derivation in docs/kpis.md).  :func:`erlang_a_arrays` evaluates many
  queues at once (NumPy), which is how staffing searches run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, gammainc, gammaincc, gammaln

__all__ = [
    "Performance",
    "erlang_a",
    "erlang_a_arrays",
    "erlang_a_figures",
    "erlang_a_from_b",
    "erlang_b",
    "erlang_b_at",
    "erlang_b_table",
    "erlang_c",
    "erlang_c_from_b",
    "erlang_c_performance",
]

#: Relative size of the last series term kept.
_EPS = 1e-17
#: Below this an incomplete-gamma value is too close to underflow to divide by or take the log of.
_TINY = 1e-200


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


def erlang_b_at(agents: ArrayLike, load: ArrayLike) -> NDArray[np.float64]:
    """Erlang B for each (``agents``, ``load``) pair at once, in O(1) each (the recursion where the tail underflows)."""
    n, a = np.broadcast_arrays(np.asarray(agents, dtype=float), np.asarray(load, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        tail = gammaincc(n + 1.0, a)
        result = np.exp(n * np.log(a) - a - gammaln(n + 1.0)) / tail
    result = np.where(a == 0.0, np.where(n == 0.0, 1.0, 0.0), result)
    for i in np.flatnonzero((tail < _TINY) & (a > 0.0)):
        result.flat[i] = erlang_b(int(n.flat[i]), float(a.flat[i]))
    return result


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


def _log_s(b: NDArray[np.float64], x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """:func:`_series` for arrays: ``log S_b(x) = x - b·log x + log Γ(b+1) + log P(b, x)``, mean ``x - b + b/S``.

    The mean is ``x·d/dx log S_b(x)``.  Elements where ``P`` is near
    underflow or ``x < b/4`` are summed by :func:`_series`.
    """
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        lower = gammainc(b, x)
        log_s = x - b * np.log(x) + gammaln(b + 1.0) + np.log(lower)
        mean = np.maximum(x - b + b * np.exp(-log_s), 0.0)
    for i in np.flatnonzero((lower < _TINY) | (x < b / 4.0)):
        log_s[i], mean[i] = _series(float(b[i]), float(x[i]))
    return log_s, mean


def erlang_a_arrays(agents: ArrayLike, load: ArrayLike, aht: ArrayLike, patience: ArrayLike,
                    answer_within: ArrayLike, b: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    """Erlang A for many queues at once: ``(service_level, p_wait, p_abandon)`` arrays.

    Each argument is an array (or a scalar broadcast to the others);
    ``b`` is Erlang B for the same agents and load (:func:`erlang_b_at`).
    Inputs are assumed valid (see :func:`erlang_a`).
    """
    n, a, h, p, w, blocking = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(
        agents, load, aht, patience, answer_within, b))
    n, a, h, p, w, blocking = (v.reshape(-1) for v in (n, a, h, p, w, blocking))
    rate_b = n * p / h                          # b = Nμ/θ
    rate_r = a * p / h                          # r = λ/θ
    busy = (n > 0) & (a > 0) & (blocking > 0)
    safe_r = np.where(busy, rate_r, 1.0)
    # S_b(r) = 1 + r/(b+1)·S_{b+1}(r): one series gives both (and the mean queue ahead).
    log_s1, mean1 = _log_s(rate_b + 1.0, safe_r)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
        log_lead = np.log(safe_r / (rate_b + 1.0)) + log_s1
        log_s = np.logaddexp(0.0, log_lead)
        mean_ahead = np.exp(log_lead - log_s) * (mean1 + 1.0)
        odds_free = np.log1p(-blocking) - np.log(blocking) - log_s   # log P(some agent free) / P(all busy)
        p_wait = expit(-odds_free)
        p_abandon = p_wait * mean_ahead / safe_r
        t = w / p                                   # θ·t
        log_s1t, _ = _log_s(rate_b + 1.0, safe_r * np.exp(-t))
        log_f = -(rate_b + 1.0) * t - safe_r * np.expm1(-t)
        served_in_time = rate_b / (rate_b + 1.0) * np.exp(log_s1 - log_s) * -np.expm1(log_f + log_s1t - log_s1)
    service_level = 1.0 - p_wait + p_wait * served_in_time
    idle = (n > 0) & ~busy                      # no load, or agents so many nobody waits
    nobody = n == 0                             # no agents: every call waits until it hangs up
    service_level = np.where(nobody, 0.0, np.where(idle, 1.0, service_level))
    p_wait = np.where(nobody, (a > 0) * 1.0, np.where(idle, 0.0, p_wait))
    p_abandon = np.where(nobody, (a > 0) * 1.0, np.where(idle, 0.0, p_abandon))
    return service_level, p_wait, p_abandon


def erlang_a_from_b(agents: int, load: float, aht: float, patience: float, answer_within: float,
                    b: float) -> Performance:
    """Erlang A figures given ``b`` = Erlang B for the same agents and load (see :func:`erlang_a`)."""
    service_level, p_wait, p_abandon = (float(v[0]) for v in erlang_a_arrays(
        agents, load, aht, patience, answer_within, b))
    return erlang_a_figures(agents, load, patience, service_level, p_wait, p_abandon)


def erlang_a_figures(agents: int, load: float, patience: float, service_level: float, p_wait: float,
                  p_abandon: float) -> Performance:
    """The :class:`Performance` of an Erlang A queue from its three modelled probabilities."""
    asa = p_abandon * patience
    occupancy = load * (1.0 - p_abandon) / agents if agents else 0.0
    return Performance(agents, load, service_level, p_wait, asa, p_abandon, occupancy)


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
