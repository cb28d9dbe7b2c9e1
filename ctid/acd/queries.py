"""The ACD's read-only queries and its EWT bookkeeping (a mixin of :class:`ctid.acd.ACD`).

Kept apart from :mod:`ctid.acd.distributor`, whose hot paths change state;
these only read the ACD's tables (or feed the per-queue averages).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctid.acd.calls import WaitingCall
from ctid.acd.ewt import Estimator
from ctid.acd.runtime import QueueRecord

if TYPE_CHECKING:
    from ctid.acd.distributor import Clock

__all__ = ["Queries"]


class Queries:
    """Positions, listings, all-busy and wait estimates over the ACD's queues and waiting calls."""

    _clock: Clock
    _estimator: Estimator
    _queues: dict[str, QueueRecord]
    _calls: dict[str, WaitingCall]
    _serving: dict[str, int]

    def _queue(self, name: str) -> QueueRecord:
        try:
            return self._queues[name]
        except KeyError:
            raise KeyError(f"unknown queue {name!r}") from None

    def position(self, call_id: str) -> int | None:
        """The call's rank in its queue (1 = next), O(log n); None if it is not waiting."""
        call = self._calls.get(call_id)
        return None if call is None else self._queues[call.queue].calls.position(call)

    def waiting(self, queue: str) -> list[WaitingCall]:
        """The calls waiting in ``queue``, next to be served first."""
        return self._queue(queue).calls.calls()

    def queue_length(self, queue: str) -> int:
        """How many calls wait in ``queue``."""
        return len(self._queue(queue).calls)

    def call(self, call_id: str) -> WaitingCall | None:
        """The waiting call ``call_id``, or None."""
        return self._calls.get(call_id)

    def all_busy(self, queue: str) -> bool:
        """True when no agent of any city that may take ``queue``'s calls is available (遇忙)."""
        q = self._queue(queue)
        key = q.best()
        return key is None or key >= q.limit

    def estimated_wait(self, call_id: str) -> float | None:
        """Seconds the waiting call should still wait (see :mod:`ctid.acd.ewt`); None if unknown."""
        call = self._calls.get(call_id)
        if call is None:
            return None
        queue = self._queues[call.queue]
        return self._estimator(queue.stats.snapshot(queue.calls.position(call), self._serving[queue.group]))

    def estimated_queue_wait(self, queue: str, priority: int = 0) -> float | None:
        """Seconds a new call of ``priority`` would wait in ``queue`` (behind every call of its priority)."""
        q = self._queue(queue)
        position = q.calls.ahead_of(max(priority, q.config.priority)) + 1
        return self._estimator(q.stats.snapshot(position, self._serving[q.group]))

    def call_answered(self, queue: str, wait: float) -> None:
        """A call of ``queue`` was answered by its agent after ``wait`` seconds (feeds the EWT)."""
        q = self._queue(queue)
        q.stats.answered(self._clock.seconds(), wait, backlog=len(q.calls) > 0)

    def call_completed(self, queue: str, handle_time: float) -> None:
        """A call of ``queue`` ended; ``handle_time``: seconds of agent time it took (feeds the EWT)."""
        self._queue(queue).stats.completed(handle_time)
