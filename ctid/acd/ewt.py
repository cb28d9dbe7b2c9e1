"""Estimated wait time (AC-6, 预计客户等待时间) and the figures it is made from.

Each queue keeps exponentially weighted moving averages (EWMA, weight
``alpha`` for the newest sample, the first sample taken as is):

* **handle time** (AHT), fed by :meth:`~ctid.acd.ACD.call_completed`
  (talk + hold + wrap-up of one call, seconds);
* **answer wait** (ASA), fed by :meth:`~ctid.acd.ACD.call_answered`;
* **answer gap**: seconds between two consecutive answers that both left
  calls waiting in the queue (a saturated queue), whose inverse is the
  *observed service rate* in calls per second.

With ``p`` the call's position (1 = next), ``N`` the agents serving the
queue's skill group (available, or holding a call the ACD offered) and the
averages above, :func:`observed_estimate` answers:

* ``p × AHT / N`` when AHT is known and N > 0; when the observed service rate
  ``r`` is known too and ``p / r`` is longer, ``p / r`` (agents shared with
  other queues serve this one more slowly than N/AHT: announce the
  conservative figure);
* else ``p / r`` when only the rate is known; else the average answer wait;
  else None (no figure yet, or nobody serving).

The estimator is a plain function of a :class:`WaitSnapshot`, passed to the
ACD (``ACD(..., estimator=...)``); an Erlang C estimator can replace it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Estimator", "Ewma", "QueueStats", "WaitSnapshot", "observed_estimate"]


class Ewma:
    """An exponentially weighted moving average; ``value`` is None until the first sample."""

    __slots__ = ("alpha", "value")

    def __init__(self, alpha: float):
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.value: float | None = None

    def add(self, sample: float) -> None:
        """Fold in one sample."""
        value = self.value
        self.value = sample if value is None else value + self.alpha * (sample - value)


@dataclass(frozen=True, slots=True)
class WaitSnapshot:
    """What an estimator sees: a position and the queue's figures (None when not known yet)."""

    position: int
    serving: int
    handle_time: float | None
    answer_wait: float | None
    answer_rate: float | None


#: An estimator: snapshot -> seconds, or None when it cannot tell.
Estimator = Callable[[WaitSnapshot], "float | None"]


def observed_estimate(s: WaitSnapshot) -> float | None:
    """The default estimator, from observed averages (see the module docstring)."""
    by_rate = s.position / s.answer_rate if s.answer_rate else None
    if s.handle_time is not None and s.serving > 0:
        by_staff = s.position * s.handle_time / s.serving
        return by_staff if by_rate is None else max(by_staff, by_rate)
    if by_rate is not None:
        return by_rate
    return s.answer_wait


class QueueStats:
    """The running averages of one queue."""

    __slots__ = ("handle", "wait", "gap", "_last_answer")

    def __init__(self, alpha: float):
        self.handle = Ewma(alpha)
        self.wait = Ewma(alpha)
        self.gap = Ewma(alpha)
        self._last_answer: float | None = None

    def answered(self, now: float, wait: float, backlog: bool) -> None:
        """A call of this queue was answered after ``wait`` s; ``backlog``: calls are still waiting."""
        self.wait.add(wait)
        if backlog and self._last_answer is not None:
            self.gap.add(max(now - self._last_answer, 0.0))
        self._last_answer = now if backlog else None

    def completed(self, handle_time: float) -> None:
        """A call of this queue ended after ``handle_time`` s of an agent's time."""
        self.handle.add(handle_time)

    def snapshot(self, position: int, serving: int) -> WaitSnapshot:
        """The figures for a call at ``position`` with ``serving`` agents."""
        gap = self.gap.value
        return WaitSnapshot(position, serving, self.handle.value, self.wait.value, 1.0 / gap if gap else None)
