"""Service level so far today, per queue, for the supervisors' live view (SV-2).

:class:`ServiceLevels` counts, per queue and local day, the calls answered,
answered within ``answer_within`` seconds of being queued, abandoned, and
abandoned within ``short_abandon`` seconds.  The service level is answered
in time ÷ (queued − short abandons): the same definition as the reports
(docs/kpis.md), over today only.  A call counts in the queue it was last in;
a call a route rule sends out of the queue (voice message, external number)
counts nowhere.  Pure: time comes from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any


@dataclass
class QueueCounts:
    """One queue's calls today (``abandoned`` includes the short abandons)."""

    answered: int = 0
    answered_in_time: int = 0
    abandoned: int = 0
    short_abandoned: int = 0

    def view(self) -> dict[str, Any]:
        """The counts and the service level (None before any call)."""
        offered = self.answered + self.abandoned - self.short_abandoned
        return {"answered": self.answered, "answered_in_time": self.answered_in_time,
                "abandoned": self.abandoned, "short_abandoned": self.short_abandoned, "offered": offered,
                "level": round(self.answered_in_time / offered, 4) if offered else None}


@dataclass
class _Tracked:
    queue: str
    enqueued_at: float
    answered: bool = False


class ServiceLevels:
    """Per-queue answered/abandoned counters for the current local day."""

    def __init__(self, answer_within: float = 20.0, short_abandon: float = 5.0, tz: tzinfo = UTC):
        self.answer_within, self.short_abandon, self.tz = answer_within, short_abandon, tz
        self._calls: dict[str, _Tracked] = {}
        self._counts: dict[str, QueueCounts] = {}
        self._day: date | None = None

    def _today(self, now: float) -> None:
        day = datetime.fromtimestamp(now, self.tz).date()
        if day != self._day:
            self._day, self._counts = day, {}

    def _count(self, queue: str) -> QueueCounts:
        counts = self._counts.get(queue)
        if counts is None:
            counts = self._counts[queue] = QueueCounts()
        return counts

    def waiting(self, call_id: str, queue: str, enqueued_at: float) -> None:
        """The call is (still) queued in ``queue`` since ``enqueued_at``."""
        tracked = self._calls.get(call_id)
        if tracked is None:
            self._calls[call_id] = _Tracked(queue, enqueued_at)
        else:
            tracked.queue = queue

    def answered(self, call_id: str, at: float) -> str | None:
        """An agent answered the call at ``at``; returns its queue when it was counted (once per call)."""
        tracked = self._calls.get(call_id)
        if tracked is None or tracked.answered:
            return None
        tracked.answered = True
        self._today(at)
        counts = self._count(tracked.queue)
        counts.answered += 1
        if at - tracked.enqueued_at <= self.answer_within:
            counts.answered_in_time += 1
        return tracked.queue

    def ended(self, call_id: str, at: float) -> str | None:
        """The call ended at ``at``; an unanswered one is abandoned.  Returns its queue when counted."""
        tracked = self._calls.pop(call_id, None)
        if tracked is None or tracked.answered:
            return None
        self._today(at)
        counts = self._count(tracked.queue)
        counts.abandoned += 1
        if at - tracked.enqueued_at < self.short_abandon:
            counts.short_abandoned += 1
        return tracked.queue

    def forget(self, call_id: str) -> None:
        """The call left the queues another way (a route rule sent it out): it counts nowhere."""
        tracked = self._calls.get(call_id)
        if tracked is not None and not tracked.answered:
            del self._calls[call_id]

    def queue_of(self, call_id: str) -> str | None:
        """The queue a followed call is (or was last) in."""
        tracked = self._calls.get(call_id)
        return None if tracked is None else tracked.queue

    def view(self, queue: str, now: float) -> dict[str, Any]:
        """``queue``'s counts today (zero on a new day)."""
        self._today(now)
        counts = self._counts.get(queue)
        return (counts or QueueCounts()).view()
