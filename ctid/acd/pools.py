"""Indexes of available agents, one per skill group and strategy (per queue for ``even``).

An agent who becomes available gets an *availability sequence number*
(``seq``, unique, increasing) registered in the ACD's ``live`` table, and one
entry in every index of every skill group it has; an index serving a queue
with local preference also files the entry under the agent's city.

Heap strategies (:class:`HeapIndex`) keep binary heaps of integer keys::

    key = (9 - level) << 104  +  (int(metric * 1000) + 2**63) << 40  +  seq

so a key sorts by level (higher first), then by the strategy's metric
(lower first, in thousandths: seconds to the millisecond), then by ``seq`` (the agent that became
available first — for agents idle since their availability, the longest idle).
One integer per entry keeps comparisons cheap.  Deletion is *lazy*: an
availability that ends is dropped from ``live`` (O(1)); an entry whose
``key & SEQ_MASK`` is no longer live is popped when it reaches the top.  The
ACD sweeps the dead keys off the top of a heap when it files an agent in it
(so the decisions, which read the top, seldom meet one), and a heap is
compacted (in place: the ACD holds the lists of the heaps it reads and
writes) when it grows past twice its live size after the last compaction
(+16).  Live entries of a heap never outnumber the members of its group (or
city), so memory stays bounded and every operation is amortised O(log n).

Round robin (:class:`RingIndex`) keeps a ``SortedList`` of
``(9 - level, agent_id, seq)`` per index and city (a :class:`Ring`) and
finds the successor of the last offered agent by bisection.  Its entries die
lazily too: the ACD counts them dead (:func:`bury`, O(1) each),
:meth:`RingIndex.best` steps over them and a ring is rebuilt once a quarter
of it is dead.  :meth:`RingIndex.best` answers a key of the same shape
(metric 0).

Indexes answer keys; the ACD reads the level with :func:`level_of` and the
availability with ``key & SEQ_MASK``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from heapq import heapify, heappop, heappush
from types import MappingProxyType
from typing import Any, NamedTuple

from sortedcontainers import SortedList

from ctid.acd.strategies import Metric

__all__ = [
    "METRIC_OFFSET", "METRIC_SHIFT", "SEQ_MASK", "AgentHeap", "AgentInfo", "HeapIndex", "Ring", "RingIndex", "bury",
    "file_agent", "level_key", "level_of",
]

_NO_SKILLS: Mapping[str, int] = MappingProxyType({})
_LEVEL_SHIFT = 104
#: Where the metric part of a key starts, and the offset that keeps it positive.
METRIC_SHIFT, METRIC_OFFSET = 40, 1 << 63
#: Dead keys a heap may gather beyond twice its live size before it is compacted.
_SLACK = 16
#: The availability sequence number in the low bits of a key.
SEQ_MASK = (1 << 40) - 1


def level_key(level: int) -> int:
    """The level part of a key: smaller for higher levels."""
    return (9 - level) << _LEVEL_SHIFT


def level_of(key: int) -> int:
    """The skill level of the agent behind ``key``."""
    return 9 - (key >> _LEVEL_SHIFT)


class AgentInfo(NamedTuple):
    """What the ACD needs to know about an agent, as it becomes available.

    Built by the integration from the agent board (a named tuple: cheap to
    build at every state change).  ``skills`` maps a skill group (业务分组)
    to the agent's level in it, 1..9, 9 the most skilled.  ``city`` is used by
    queues with local preference.  The figures feed the strategies:
    ``idle_since`` is the clock time the agent became idle; ``answered``,
    ``talk_time_total`` (s), ``idle_time_total`` (s) and ``idle_periods`` are
    the day's totals (finite numbers).  Treat ``skills`` as immutable: pass a
    new mapping when an agent's skills change (the ACD re-plans an agent when
    it receives another mapping with other levels, or another city, and
    keeps its plan otherwise — across :meth:`~ctid.acd.ACD.agent_unavailable` too).
    """

    agent_id: str
    skills: Mapping[str, int] = _NO_SKILLS
    city: str = ""
    idle_since: float = 0.0
    answered: int = 0
    talk_time_total: float = 0.0
    idle_time_total: float = 0.0
    idle_periods: int = 0


class AgentHeap:
    """A heap of agent keys with lazy deletion against the shared ``live`` table."""

    __slots__ = ("items", "limit", "live")

    def __init__(self, live: Mapping[int, Any]):
        self.items: list[int] = []
        self.limit = _SLACK
        self.live = live

    def push(self, key: int) -> None:
        """Add a live key, compacting first when the heap has doubled since the last compaction."""
        if len(self.items) >= self.limit:
            self.compact()
        heappush(self.items, key)

    def compact(self) -> None:
        """Drop the dead keys, in place (amortised O(1) per push: the limit doubles with the live size)."""
        live, items = self.live, self.items
        items[:] = [k for k in items if k & SEQ_MASK in live]
        heapify(items)
        self.limit = 2 * len(items) + _SLACK

    def top(self) -> int | None:
        """The best live key (dead ones on top are dropped), or None."""
        items, live = self.items, self.live
        while items:
            key = items[0]
            if key & SEQ_MASK in live:
                return key
            heappop(items)
        return None


class HeapIndex:
    """Available agents of one skill group, ordered by level, then a strategy metric, then seq.

    ``metric`` None means the metric is the count of offers this index made to
    the agent (``even``): such an index serves one queue.
    """

    __slots__ = ("metric", "local", "everyone", "cities", "counts", "live")

    def __init__(self, metric: Metric | None, local: bool, live: Mapping[int, Any]):
        self.metric = metric
        self.local = local
        self.live = live
        self.everyone = AgentHeap(live)
        self.cities: dict[str, AgentHeap] = {}
        #: Offers per agent since the last reset (kept and used when ``metric`` is None).
        self.counts: dict[str, int] = {}

    def add(self, info: AgentInfo, level_part: int, seq: int, rings: list) -> None:
        """File an available agent (and under its city when this index serves local queues)."""
        metric = self.metric
        value = metric(info) if metric is not None else self.counts.get(info.agent_id, 0)
        key = level_part + ((int(value * 1000) + METRIC_OFFSET) << METRIC_SHIFT) + seq
        self.everyone.push(key)
        if self.local:
            self.city_heap(info.city).push(key)

    def city_heap(self, city: str) -> AgentHeap:
        """The heap of the agents of ``city`` (created empty)."""
        heap = self.cities.get(city)
        if heap is None:
            heap = self.cities[city] = AgentHeap(self.live)
        return heap

    def best(self, city: str | None = None) -> int | None:
        """The best key, of any city (None) or of ``city``."""
        if city is None:
            return self.everyone.top()
        heap = self.cities.get(city)
        return heap.top() if heap is not None else None

    def picked(self, agent_id: str) -> None:
        """Record an offer to ``agent_id`` (counted when the index counts offers)."""
        if self.metric is None:
            self.counts[agent_id] = self.counts.get(agent_id, 0) + 1


def file_agent(plan: Iterable[tuple[HeapIndex | RingIndex, int]], info: AgentInfo, seq: int, rings: list) -> None:
    """File an available agent in each ``(index, level part)`` of ``plan``.

    The ACD files in heap indexes itself (inlined, each metric computed once
    per availability: see :class:`~ctid.acd.runtime.AgentRecord`); it uses this for the rings.
    """
    for index, level_part in plan:
        index.add(info, level_part, seq, rings)


class Ring(SortedList):
    """A sorted list of ring entries, with a count of the entries whose availability has ended."""

    def __init__(self) -> None:
        super().__init__()
        self.dead = 0


class RingIndex:
    """Available agents of one skill group in a ring (``agent_id`` order) per level tier: round robin.

    With a ``live`` table (the ACD's), deletion is lazy: the ACD counts an
    entry as dead in its ring when the availability ends (:func:`bury`),
    :meth:`best` steps over dead entries, and :meth:`add` rebuilds a ring
    once more than a quarter of its entries (+4) are dead (amortised O(1)
    per entry, and a removal costs one increment instead of a ``SortedList``
    deletion).  Without a table every entry is live (the caller removes
    entries itself).
    """

    __slots__ = ("local", "everyone", "cities", "counts", "last", "live")

    def __init__(self, local: bool, live: Mapping[int, Any] | None = None):
        self.local = local
        self.live = live
        self.everyone = Ring()
        self.cities: dict[str, Ring] = {}
        self.counts: dict[str, int] = {}
        #: The agent this index offered last.
        self.last = ""

    def add(self, info: AgentInfo, level_part: int, seq: int, rings: list) -> None:
        """File an available agent in the ring (and its city's ring); note where in ``rings``."""
        entry = (level_part >> _LEVEL_SHIFT, info.agent_id, seq)
        self._add(self.everyone, entry, rings)
        if self.local:
            ring = self.cities.get(info.city)
            if ring is None:
                ring = self.cities[info.city] = Ring()
            self._add(ring, entry, rings)

    def _add(self, ring: Ring, entry: tuple[int, str, int], rings: list) -> None:
        if 4 * ring.dead > len(ring) + 16:
            live = self.live
            assert live is not None  # entries only die with a live table
            kept = [e for e in ring if e[2] in live]
            ring.clear()
            ring.update(kept)
            ring.dead = 0
        ring.add(entry)
        rings.append((ring, entry))

    def best(self, city: str | None = None) -> int | None:
        """In the top level tier, the first agent after the last one offered (wrapping), or None."""
        ring = self.everyone if city is None else self.cities.get(city)
        if not ring:
            return None
        live, last = self.live, self.last
        for first in ring:
            if live is None or first[2] in live:
                break
        else:
            return None
        tier = first[0]
        chosen = first
        for entry in ring.irange((tier, last)):
            if entry[0] != tier:
                break
            if entry[1] != last and (live is None or entry[2] in live):
                chosen = entry
                break
        return (chosen[0] << _LEVEL_SHIFT) + chosen[2]

    def picked(self, agent_id: str) -> None:
        """Move the ring's pointer to ``agent_id``."""
        self.last = agent_id


def bury(rings: list[tuple[Ring, tuple[int, str, int]]]) -> None:
    """An availability ended: count its ring entries as dead (they go lazily), and forget them."""
    for ring, _ in rings:
        ring.dead += 1
    rings.clear()
