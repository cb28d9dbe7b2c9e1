"""Waiting calls and the per-queue priority queue.

Calls are ordered by priority (higher first), then by ``seq``: one counter
for the whole ACD, so calls of one priority are served first in, first out,
and calls of different queues compare fairly when an agent serving several
queues picks one.  A call put back at the head of its queue after a
ring-no-answer gets a *negative* sequence, smaller than every other, so it
goes ahead of every call of its priority (the latest one put back first).
Both are packed in one integer, cheap to compare, with a generation number
in the low bits that changes whenever the call is filed again (moved,
overflowed, re-prioritised), so that copies left in heaps die::

    key = (-priority << 64  +  seq + 2**62) << 20  +  generation

Each waiting call is kept

* in its :class:`CallPool` (the queues of one skill group with one
  ``min_level``): in ``live`` (key → call) and in one heap for matching —
  ``open`` (any agent of the pool may take it) or, for a queue with local
  preference, the heap of the caller's city until the call overflows (it is
  then filed again in ``open``).  Heaps use lazy deletion: a key no longer
  in ``live`` is popped when it surfaces — mostly when a call is filed in
  the heap, which sweeps its top, rather than when an agent reads it — and a
  heap is compacted (in place: the list keeps its identity, so the ACD may
  hold it) when it has doubled since its last compaction (+64);
* in its :class:`CallQueue`'s order, a ``SortedList`` of keys, for positions
  (O(log n) rank) and listings.  The order is brought up to date only when
  asked (:meth:`CallQueue.position`, :meth:`CallQueue.calls`,
  :meth:`CallQueue.ahead_of`): filing and taking a call only note the key in
  a set of keys added or removed since then, and a call taken before
  anybody asked never touches the ``SortedList``.  Each key still enters and
  leaves the ``SortedList`` at most once: O(log n) amortised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from types import MappingProxyType
from typing import TYPE_CHECKING

from sortedcontainers import SortedList

if TYPE_CHECKING:
    from ctid.acd.config import QueueConfig

__all__ = ["CallHeap", "CallPool", "CallQueue", "WaitingCall", "call_key"]

_NO_DATA: Mapping[str, str] = MappingProxyType({})
_SEQ_OFFSET = 1 << 62
_GEN_BITS = 20
_GEN_MASK = (1 << _GEN_BITS) - 1


def call_key(priority: int, seq: int, generation: int = 0) -> int:
    """The ordering key of a call: smaller is served first."""
    return (((-priority << 64) + seq + _SEQ_OFFSET) << _GEN_BITS) + (generation & _GEN_MASK)


@dataclass(eq=False, slots=True)
class WaitingCall:
    """A call asking the ACD for an agent.

    The caller sets ``call_id``, ``queue``, ``caller`` (the ANI), ``data``
    (what the IVR collected, e.g. ``{"customer_class": "vip"}``) and
    optionally ``priority`` (a floor for the priority rules).  The ACD fills
    in the rest when the call is queued: the effective ``priority``, the
    caller's ``city`` (local-preference queues only), ``enqueued_at`` (first
    time queued; kept by moves and re-queues), ``seq`` and ``overflowed``
    (the call may go to an agent of any city).  ``key``, ``generation`` and
    ``located`` are the ACD's bookkeeping.  Compared by identity.
    """

    call_id: str
    queue: str
    caller: str = ""
    data: Mapping[str, str] = field(default_factory=lambda: _NO_DATA)
    priority: int | None = None
    city: str | None = field(default=None, init=False)
    enqueued_at: float | None = field(default=None, init=False)
    seq: int = field(default=0, init=False)
    overflowed: bool = field(default=False, init=False)
    key: int = field(default=0, init=False, repr=False)
    generation: int = field(default=0, init=False, repr=False)
    located: bool = field(default=False, init=False, repr=False)


class CallHeap:
    """A heap of call keys with lazy deletion against its pool's ``live`` table."""

    __slots__ = ("items", "limit", "live")

    def __init__(self, live: Mapping[int, WaitingCall]):
        self.items: list[int] = []
        self.limit = 64
        self.live = live

    def push(self, key: int) -> None:
        """Add a live key: sweep dead keys off the top, compact (in place) when the heap has doubled since."""
        items, live = self.items, self.live
        while items and items[0] not in live:
            heappop(items)
        if len(items) >= self.limit:
            items[:] = [k for k in items if k in live]
            heapify(items)
            self.limit = 2 * len(items) + 64
        heappush(items, key)

    def top(self) -> int | None:
        """The most urgent live key, or None."""
        items, live = self.items, self.live
        while items:
            key = items[0]
            if key in live:
                return key
            heappop(items)
        return None


class CallPool:
    """The waiting calls agents take alike: those of the queues of one skill group and ``min_level``.

    An agent who becomes available looks at the heads of its pools only (not
    of every queue): ``open`` and, when some queue of the pool has local
    preference, the heap of its own city.
    """

    __slots__ = ("live", "open", "cities", "local")

    def __init__(self) -> None:
        self.live: dict[int, WaitingCall] = {}
        self.open = CallHeap(self.live)
        self.cities: dict[str, CallHeap] = {}
        self.local = False

    def city_heap(self, city: str) -> CallHeap:
        """The heap of the calls waiting for an agent of ``city`` (created empty)."""
        heap = self.cities.get(city)
        if heap is None:
            heap = self.cities[city] = CallHeap(self.live)
        return heap


class CallQueue:
    """The calls waiting in one queue: an order-statistics list of keys kept up to date on demand.

    ``added`` and ``removed`` hold the keys filed and taken out since the
    ``SortedList`` was last brought up to date; ``size`` counts the calls.
    """

    __slots__ = ("config", "pool", "size", "added", "removed", "_order")

    def __init__(self, config: QueueConfig, pool: CallPool):
        self.config = config
        self.pool = pool
        self.size = 0
        self.added: set[int] = set()
        self.removed: set[int] = set()
        self._order = SortedList()
        pool.local = pool.local or config.local_preference

    def __len__(self) -> int:
        return self.size

    def insert(self, call: WaitingCall) -> None:
        """Queue ``call``: in its city's heap while it waits for a local agent, else in ``open``."""
        call.generation += 1
        assert call.priority is not None  # set by the ACD's enqueue
        key = call.key = call_key(call.priority, call.seq, call.generation)
        self.added.add(key)
        self.size += 1
        pool = self.pool
        pool.live[key] = call
        if call.city is None or call.overflowed or not self.config.local_preference:
            pool.open.push(key)
        else:
            pool.city_heap(call.city).push(key)

    def forget(self, key: int) -> None:
        """A call left the pool (its ``live`` entry is gone): note it for the order."""
        self.size -= 1
        if key in self.added:
            self.added.remove(key)
        else:
            self.removed.add(key)

    def remove(self, call: WaitingCall) -> None:
        """Take ``call`` out of this queue (its heap entries die lazily)."""
        del self.pool.live[call.key]
        self.forget(call.key)

    def open_up(self, call: WaitingCall) -> None:
        """Overflow: from now on any agent of the group may take ``call`` (filed again, in ``open``)."""
        self.remove(call)
        call.overflowed = True
        self.insert(call)

    def reprioritise(self, call: WaitingCall, priority: int) -> None:
        """Give a queued call a new priority, keeping its sequence."""
        self.remove(call)
        call.priority = priority
        self.insert(call)

    def order(self) -> SortedList:
        """The keys of the waiting calls, in order, brought up to date (O(log n) per change since last time)."""
        order, removed, added = self._order, self.removed, self.added
        if removed:
            if 4 * len(removed) > len(order):
                self._order = order = SortedList(key for key in order if key not in removed)
            else:
                for key in removed:
                    order.remove(key)
            removed.clear()
        if added:
            order.update(added)
            added.clear()
        return order

    def position(self, call: WaitingCall) -> int:
        """1 for the next call to be served: O(log n) (amortised)."""
        return self.order().index(call.key) + 1

    def ahead_of(self, priority: int) -> int:
        """How many waiting calls a new call of ``priority`` would have ahead of it."""
        return self.order().bisect_left(call_key(priority - 1, -_SEQ_OFFSET))

    def calls(self) -> list[WaitingCall]:
        """The waiting calls, next to be served first."""
        live = self.pool.live
        return [live[key] for key in self.order()]
