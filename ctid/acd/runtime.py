"""The ACD's run-time records of queues and agents (internal to :mod:`ctid.acd.distributor`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ctid.acd.calls import CallPool, CallQueue
from ctid.acd.config import QueueConfig
from ctid.acd.ewt import QueueStats
from ctid.acd.pools import AgentInfo, HeapIndex, RingIndex, level_key
from ctid.acd.priority import RuleBook

__all__ = ["AgentRecord", "QueueRecord"]


class QueueRecord:
    """One queue at run time: its calls, the index it picks agents from, its rules and averages.

    Settings the call path reads are copied out of the config; ``limit``:
    agent keys below it have a level >= ``min_level``; ``best`` answers the
    best agent key of any city; ``picked`` is None when the index keeps no
    record of offers.
    """

    __slots__ = (
        "name", "config", "group", "priority", "limit", "local", "overflow_after", "max_wait", "max_length",
        "calls", "index", "rules", "stats", "best", "picked",
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
        self.rules = rules
        self.stats = stats
        self.best: Callable[[], int | None] = index.everyone.top if isinstance(index, HeapIndex) else index.best
        counting = isinstance(index, RingIndex) or index.metric is None
        self.picked: Callable[[str], None] | None = index.picked if counting else None


class AgentRecord:
    """A serving agent: its latest info, its availability number (0: not available), its ring entries.

    ``plan`` (the indexes to file it in, with its level part) and ``serves``
    (the call pools whose ``min_level`` it meets) are worked out once per set
    of skills (:meth:`~ctid.acd.ACD.agent_available` re-plans when they change).
    """

    __slots__ = ("info", "seq", "rings", "skills", "plan", "serves")

    def __init__(self, info: AgentInfo):
        self.info = info
        self.seq = 0
        self.rings: list = []
        self.skills: Mapping[str, int] | None = None
        self.plan: tuple[tuple[HeapIndex | RingIndex, int], ...] = ()
        self.serves: tuple[CallPool, ...] = ()
