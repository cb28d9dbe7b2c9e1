"""The ACD's run-time structure (internal to :mod:`ctid.acd.distributor`).

:class:`Site` builds the queues, agent indexes and call pools from the
configuration; :class:`QueueRecord` and :class:`AgentRecord` hold what the
hot paths read; :class:`Planner` works out, once per skills and city, where
an agent is filed and which call heaps it watches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ctid.acd.calls import CallPool, CallQueue
from ctid.acd.config import QueueConfig
from ctid.acd.ewt import QueueStats
from ctid.acd.pools import AgentHeap, AgentInfo, HeapIndex, RingIndex, level_key
from ctid.acd.priority import PriorityRule, RuleBook
from ctid.acd.strategies import STRATEGIES, Metric

__all__ = ["AgentRecord", "Planner", "QueueRecord", "Site"]


class QueueRecord:
    """One queue at run time: its calls, the index it picks agents from, its rules and averages.

    Settings the call path reads are copied out of the config; ``limit``:
    agent keys below it have a level >= ``min_level``; ``agents``: the list
    of the index's heap of every city (None for round robin); ``best``
    answers the best agent key of any city; ``picked`` is None when the
    index keeps no record of offers.
    """

    __slots__ = (
        "name", "config", "group", "priority", "limit", "local", "overflow_after", "max_wait", "max_length",
        "calls", "index", "rules", "stats", "agents", "best", "picked",
    )

    def __init__(
        self, config: QueueConfig, pool: CallPool, index: HeapIndex | RingIndex, rules: RuleBook, stats: QueueStats
    ):
        self.name = config.name
        self.config = config
        self.group = config.group
        self.priority = config.priority
        self.limit = level_key(config.min_level - 1)
        self.local = config.local_preference
        self.overflow_after = config.overflow_after
        self.max_wait = config.max_wait
        self.max_length = config.max_length
        self.calls = CallQueue(config, pool)
        self.index = index
        self.rules: RuleBook | None = rules if rules else None  # None: nothing to evaluate
        self.stats = stats
        heap = isinstance(index, HeapIndex)
        self.agents: list[int] | None = index.everyone.items if heap else None
        self.best: Callable[[], int | None] = index.everyone.top if heap else index.best
        counting = not isinstance(index, HeapIndex) or index.metric is None
        self.picked: Callable[[str], None] | None = index.picked if counting else None


class Site:
    """The ACD's fixed structure, built from the queue configurations.

    One agent index per (skill group, strategy) — per queue for ``even`` —
    and one call pool per (skill group, ``min_level``); ``queues`` by name,
    ``indexes`` and ``pools`` (with the level-key limit of each pool) by
    skill group.  ``live`` is the ACD's table of available agents.
    """

    def __init__(
        self, configs: list[QueueConfig], rules: tuple[PriorityRule, ...], alpha: float, live: Mapping[int, object]
    ):
        self.queues: dict[str, QueueRecord] = {}
        self.indexes: dict[str, list[HeapIndex | RingIndex]] = {}
        self.pools: dict[str, list[tuple[int, CallPool]]] = {}

        def key(config: QueueConfig) -> tuple[str, str, str]:
            per_queue = STRATEGIES[config.strategy].kind == "count"
            return config.group, config.strategy, config.name if per_queue else ""

        local = {key(config) for config in configs if config.local_preference}
        indexes: dict[tuple[str, str, str], HeapIndex | RingIndex] = {}
        pools: dict[tuple[str, int], CallPool] = {}
        for config in configs:
            if config.name in self.queues:
                raise ValueError(f"queue {config.name} is configured twice")
            index = indexes.get(key(config))
            if index is None:
                strategy = STRATEGIES[config.strategy]
                if strategy.kind == "ring":
                    index = RingIndex(key(config) in local, live)
                else:
                    index = HeapIndex(strategy.metric, key(config) in local, live)
                indexes[key(config)] = index
                self.indexes.setdefault(config.group, []).append(index)
            pool = pools.get((config.group, config.min_level))
            if pool is None:
                pool = pools[config.group, config.min_level] = CallPool()
                self.pools.setdefault(config.group, []).append((level_key(config.min_level - 1), pool))
            rulebook = RuleBook(rules + config.rules)
            self.queues[config.name] = QueueRecord(config, pool, index, rulebook, QueueStats(alpha))


#: How an agent is filed in heaps: (metric or None, offer counts when the metric is None, ((level part, heap), …)).
Filing = tuple[Metric | None, "dict[str, int] | None", tuple[tuple[int, AgentHeap], ...]]
#: The call heaps an agent may take calls from: ((live table of a pool, (its heap lists…)), …).
Watch = tuple[tuple[dict, tuple[list[int], ...]], ...]


class AgentRecord:
    """An agent the ACD has seen: its latest info, its availability number (0: not available), its ring entries.

    The record outlives pauses and logouts, so that its plan is kept.

    Worked out by :meth:`Planner.plan` once per set of skills and city (the
    ACD re-plans when either changes): ``filing``, the heaps to file it in,
    grouped by metric so that each metric is computed once per availability;
    ``ring_plan``, the round-robin indexes with its level part; ``watch``,
    the call heaps it may take calls from (the open heap of every call pool
    whose ``min_level`` it meets, and its city's heap in pools with local
    preference).
    """

    __slots__ = ("info", "agent_id", "seq", "serving", "rings", "skills", "city", "filing", "ring_plan", "watch")

    def __init__(self, info: AgentInfo):
        self.info = info
        self.agent_id = info.agent_id
        self.seq = 0
        #: Counted in :meth:`~ctid.acd.ACD.serving` (from its first availability until unavailable).
        self.serving = False
        #: Its live ring entries, (ring, entry) pairs; None until it is planned into a ring (touches no memory).
        self.rings: list | None = None
        self.skills: Mapping[str, int] | None = None
        self.city = ""
        self.filing: tuple[Filing, ...] = ()
        self.ring_plan: tuple[tuple[RingIndex, int], ...] = ()
        self.watch: Watch = ()


#: What one (skill group, level, city) adds to a plan: heaps by metric, counted filings, rings, watch.
_Part = tuple[
    tuple[tuple[Metric, tuple[tuple[int, AgentHeap], ...]], ...],
    tuple[Filing, ...],
    tuple[tuple[RingIndex, int], ...],
    Watch,
]


class Planner:
    """Works out agents' plans from the ACD's indexes and call pools.

    The part of a plan due to one skill group at one level in one city is
    worked out once and kept (a few thousand at most), so that a plan costs a
    few dictionary look-ups per skill.
    """

    __slots__ = ("_indexes", "_pools", "_parts")

    def __init__(
        self, indexes: Mapping[str, list[HeapIndex | RingIndex]], pools: Mapping[str, list[tuple[int, CallPool]]]
    ):
        self._indexes = indexes
        self._pools = pools
        self._parts: dict[tuple[str, int, str], _Part] = {}

    def plan(self, agent: AgentRecord, info: AgentInfo) -> None:
        """Set ``agent``'s filing, ring plan and watch for ``info``'s skills and city."""
        agent.skills, agent.city = info.skills, info.city
        parts, city = self._parts, info.city
        by_metric: dict[Metric, tuple[tuple[int, AgentHeap], ...]] = {}
        filing: tuple[Filing, ...] = ()
        rings: tuple[tuple[RingIndex, int], ...] = ()
        watch: Watch = ()
        for group, level in info.skills.items():
            key = (group, level, city)
            metric_heaps, counted, part_rings, part_watch = parts.get(key) or self._part(key)
            for metric, heaps in metric_heaps:
                by_metric[metric] = by_metric.get(metric, ()) + heaps
            filing += counted
            rings += part_rings
            watch += part_watch
        agent.filing = filing + tuple((metric, None, heaps) for metric, heaps in by_metric.items())
        agent.ring_plan, agent.watch = rings, watch
        if rings and agent.rings is None:
            agent.rings = []

    def _part(self, key: tuple[str, int, str]) -> _Part:
        group, level, city = key
        part = level_key(level)
        metric_heaps: list[tuple[Metric, tuple[tuple[int, AgentHeap], ...]]] = []
        counted: list[Filing] = []
        rings: list[tuple[RingIndex, int]] = []
        watch: list[tuple[dict, tuple[list[int], ...]]] = []
        for index in self._indexes.get(group, ()):
            if isinstance(index, RingIndex):
                rings.append((index, part))
                continue
            heaps: tuple[tuple[int, AgentHeap], ...] = ((part, index.everyone),)
            if index.local:
                heaps += ((part, index.city_heap(city)),)
            if index.metric is None:
                counted.append((None, index.counts, heaps))
            else:
                metric_heaps.append((index.metric, heaps))
        for limit, pool in self._pools.get(group, ()):
            if part < limit:
                call_heaps = (pool.open.items, pool.city_heap(city).items) if pool.local else (pool.open.items,)
                watch.append((pool.live, call_heaps))
        result = self._parts[key] = (tuple(metric_heaps), tuple(counted), tuple(rings), tuple(watch))
        return result
