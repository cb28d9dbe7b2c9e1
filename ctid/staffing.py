"""Staffing (排班测算) and the modelled wait the ACD announces.

* :func:`agents_needed`: the fewest agents that reach a service-level target
  (X % of offered calls answered within Y s) for an offered load, by Erlang C,
  or by Erlang A when the callers' patience is known (:mod:`ctid.erlang`).
* :func:`staff`: the same for one queue and interval, from what was observed
  there (:class:`Demand`: calls offered, mean handle time, patience estimated
  by :func:`estimate_patience`).
* :func:`modelled_estimate`: the estimated wait of a caller at a given place
  in the queue, from the ACD's observed figures (:class:`~ctid.acd.WaitSnapshot`)
  and the Erlang A model of the callers ahead hanging up.  With no
  abandonment it gives exactly the observed estimate.  See docs/kpis.md,
  "Estimated wait".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from ctid.acd.ewt import Estimator, WaitSnapshot
from ctid.erlang import Performance, erlang_a_arrays, erlang_a_figures, erlang_b_at, erlang_c_from_b

__all__ = [
    "Demand",
    "ServiceTarget",
    "Staffing",
    "agents_needed",
    "estimate_patience",
    "modelled_estimate",
    "modelled_estimator",
    "position_wait",
    "staff",
    "staff_all",
]


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """A service-level target: ``level`` (0..1) of offered calls answered within ``answer_within`` seconds."""

    level: float = 0.8
    answer_within: float = 20.0

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"service level target must be between 0 and 1 (exclusive), got {self.level}")
        if not 0.0 <= self.answer_within < math.inf:
            raise ValueError(f"answer_within must be a non-negative number of seconds, got {self.answer_within}")


@dataclass(frozen=True, slots=True)
class Demand:
    """What one queue was offered in one interval: ``calls`` in ``seconds``, mean handle time ``aht`` (s).

    ``patience``: the callers' mean patience in seconds (see
    :func:`estimate_patience`), or None to staff by Erlang C.
    """

    queue: str
    start: datetime
    seconds: float
    calls: int
    aht: float
    patience: float | None = None

    @property
    def load(self) -> float:
        """Offered load in Erlangs: arrival rate × mean handle time."""
        return self.calls * self.aht / self.seconds


@dataclass(frozen=True, slots=True)
class Staffing:
    """The agents one queue needs in one interval, and the figures the model expects with them."""

    queue: str
    start: datetime
    performance: Performance

    @property
    def agents(self) -> int:
        """Agents needed."""
        return self.performance.agents


def estimate_patience(abandoned: int, time_waited: float) -> float | None:
    """Mean patience (s) from ``abandoned`` hang-ups and ``time_waited``, the total queue time of all calls.

    The maximum-likelihood estimate for exponential patience under censoring
    (a caller answered before hanging up tells only that patience exceeded
    the wait): θ = abandonments / total time waited, patience = 1 / θ
    (Brown et al. 2005, §6.3).  None when nobody hung up: no abandonment to model.
    """
    if abandoned < 0 or time_waited < 0:
        raise ValueError("abandoned and time_waited must not be negative")
    if abandoned == 0 or time_waited == 0:
        return None
    return time_waited / abandoned


def agents_needed(load: float, aht: float, target: ServiceTarget, patience: float | None = None) -> Performance:
    """The fewest agents whose expected service level reaches ``target`` for ``load`` Erlangs.

    Erlang C when ``patience`` is None, else Erlang A.  No load needs no agents.
    """
    _check(load, aht, patience)
    if load == 0:
        return Performance(0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0)
    if patience is None:
        return _erlang_c_search([load], [aht], target)[0]
    return _erlang_a_search([load], [aht], [patience], target)[0]


def _check(load: float, aht: float, patience: float | None) -> None:
    if not load >= 0 or math.isinf(load):
        raise ValueError(f"load must be a non-negative number of Erlangs, got {load}")
    if not aht > 0 or math.isinf(aht):
        raise ValueError(f"aht must be a positive number of seconds, got {aht}")
    if patience is not None and (not patience > 0 or math.isinf(patience)):
        raise ValueError(f"patience must be a positive number of seconds, got {patience}")


def _erlang_c_search(loads: list[float], ahts: list[float], target: ServiceTarget) -> list[Performance]:
    """The fewest agents by Erlang C for many queues (loads > 0).

    Each walks the Erlang B recursion up from the first agent count above
    its load, where B is computed for all the queues at once (O(1) each).
    """
    starts = [math.floor(load) + 1 for load in loads]
    found = []
    for n, b, load, aht in zip(starts, erlang_b_at(starts, loads).tolist(), loads, ahts, strict=True):
        while 1.0 - n * b / (n - load * (1.0 - b)) * math.exp(-(n - load) * target.answer_within / aht) < target.level:
            n += 1
            b = load * b / (n + load * b)
        found.append(erlang_c_from_b(n, load, aht, target.answer_within, b))
    return found


def _erlang_a_search(loads: list[float], ahts: list[float], patiences: list[float],
                     target: ServiceTarget) -> list[Performance]:
    """The fewest agents by Erlang A for many queues (loads > 0) at once, vectorised over the queues.

    Each queue's search starts from its Erlang C answer (usually a few agents
    off): gallop away from it to bracket the answer, then bisect; every step
    evaluates all the queues still searching in one :func:`erlang_a_arrays`.
    """
    load, aht, patience = (np.asarray(v, dtype=float) for v in (loads, ahts, patiences))

    def meets(index: NDArray[np.intp], agents: NDArray[np.int64]) -> NDArray[np.bool_]:
        level, _, _ = erlang_a_arrays(agents, load[index], aht[index], patience[index], target.answer_within,
                                      erlang_b_at(agents, load[index]))
        return level >= target.level

    high = np.array([p.agents for p in _erlang_c_search(loads, ahts, target)], dtype=np.int64)
    low = np.zeros_like(high)                   # no agents never meet a target: a failing bound
    ok = meets(np.arange(len(high)), high)
    step = np.ones_like(high)
    index = np.flatnonzero(~ok)                 # Erlang C's answer is too few: gallop up
    while index.size:
        low[index] = high[index]
        high[index] += step[index]
        step[index] *= 2
        index = index[~meets(index, high[index])]
    step[:] = 1
    index = np.flatnonzero(ok)                  # it is enough: gallop down until a count falls short
    while index.size:
        probe = high[index] - step[index]
        inside = probe > low[index]
        index, probe = index[inside], probe[inside]
        good = meets(index, probe)
        high[index[good]] = probe[good]
        low[index[~good]] = probe[~good]
        step[index] *= 2
        index = index[good]
    index = np.flatnonzero(high - low > 1)
    while index.size:
        middle = (low[index] + high[index]) // 2
        good = meets(index, middle)
        high[index[good]] = middle[good]
        low[index[~good]] = middle[~good]
        index = index[high[index] - low[index] > 1]
    levels, waits, abandons = erlang_a_arrays(high, load, aht, patience, target.answer_within, erlang_b_at(high, load))
    return [erlang_a_figures(int(n), a, p, float(sl), float(pw), float(pa))
            for n, a, p, sl, pw, pa in zip(high, loads, patiences, levels, waits, abandons, strict=True)]


def staff(demand: Demand, target: ServiceTarget) -> Staffing:
    """The agents ``demand``'s queue needs in its interval to reach ``target``."""
    return staff_all([demand], target)[0]


def staff_all(demands: Iterable[Demand], target: ServiceTarget) -> list[Staffing]:
    """:func:`staff` for every queue and interval, in order; the Erlang A ones are searched together."""
    demands = list(demands)
    for demand in demands:
        if not demand.seconds > 0:
            raise ValueError(f"interval of queue {demand.queue} must last more than 0 s")
        _check(demand.load, demand.aht, demand.patience)
    performances: list[Performance] = [Performance(0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0)] * len(demands)
    by_c = [i for i, d in enumerate(demands) if d.load > 0 and d.patience is None]
    by_a = [i for i, d in enumerate(demands) if d.load > 0 and d.patience is not None]
    if by_c:
        found = _erlang_c_search([demands[i].load for i in by_c], [demands[i].aht for i in by_c], target)
        for i, performance in zip(by_c, found, strict=True):
            performances[i] = performance
    if by_a:
        found = _erlang_a_search([demands[i].load for i in by_a], [demands[i].aht for i in by_a],
                                 [demands[i].patience or 0.0 for i in by_a], target)
        for i, performance in zip(by_a, found, strict=True):
            performances[i] = performance
    return [Staffing(d.queue, d.start, p) for d, p in zip(demands, performances, strict=True)]


def position_wait(position: int, service_rate: float, patience: float | None = None) -> float:
    """Expected wait (s) of the caller at ``position`` (1 = next) when agents free up at ``service_rate``/s.

    While ``j`` callers are ahead the caller moves up at ``service_rate + j /
    patience`` (an answer, or one of them hanging up): the wait is the sum
    of ``1 / (service_rate + j / patience)`` for j = 0 … position - 1, which
    is ``position / service_rate`` without abandonment.
    """
    if position < 1 or not service_rate > 0:
        raise ValueError(f"need position >= 1 and service_rate > 0, got {position}, {service_rate}")
    if patience is None:
        return position / service_rate
    return sum(1.0 / (service_rate + j / patience) for j in range(position))


def modelled_estimate(snapshot: WaitSnapshot, patience: float | None = None) -> float | None:
    """The ACD's estimated wait: observed service rate, callers ahead hanging up as the model says.

    The service rate is the slower of ``serving / AHT`` and the observed
    answer rate (whichever are known); :func:`position_wait` turns it into
    seconds.  With ``patience`` None this equals
    :func:`ctid.acd.observed_estimate`.  With no rate known, the average
    answer wait, else None.
    """
    rates = []
    if snapshot.handle_time is not None and snapshot.serving > 0:
        rates.append(snapshot.serving / snapshot.handle_time if snapshot.handle_time else math.inf)
    if snapshot.answer_rate:
        rates.append(snapshot.answer_rate)
    if not rates:
        return snapshot.answer_wait
    return position_wait(snapshot.position, min(rates), patience)


def modelled_estimator(patience: float | None) -> Estimator:
    """An estimator for ``ACD(..., estimator=...)``: :func:`modelled_estimate` with this mean patience (s)."""
    if patience is not None and not patience > 0:
        raise ValueError(f"patience must be positive, got {patience}")

    def estimate(snapshot: WaitSnapshot) -> float | None:
        return modelled_estimate(snapshot, patience)

    return estimate
