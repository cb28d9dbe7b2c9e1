"""Queue configuration for the ACD: one frozen, validated :class:`QueueConfig` per queue."""

from __future__ import annotations

from dataclasses import dataclass

from ctid.acd.priority import PriorityRule
from ctid.acd.strategies import STRATEGIES

__all__ = ["QueueConfig"]


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One ACD queue.

    ``group``: the skill group whose agents serve it.  ``strategy``: a name in
    :data:`~ctid.acd.strategies.STRATEGIES`.  ``min_level``: agents below this
    level in ``group`` never get its calls (higher levels are always offered
    first).  ``priority``: base priority of its calls; ``rules``: priority
    rules added to the ACD-wide ones.  ``local_preference``: offer calls first
    to agents of the caller's city; ``overflow_after``: seconds after which
    such a call may go to any city (None: never; 0: at once when no local
    agent is free).  ``max_wait`` (seconds) and ``max_length`` bound the
    queue: calls waiting longer are handed back by
    :meth:`~ctid.acd.ACD.expired`, and :meth:`~ctid.acd.ACD.enqueue` refuses
    a call beyond ``max_length`` (queue-overflow routing, AC-5).
    """

    name: str
    group: str
    strategy: str = "longest_idle"
    min_level: int = 1
    priority: int = 0
    rules: tuple[PriorityRule, ...] = ()
    local_preference: bool = False
    overflow_after: float | None = None
    max_wait: float | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.group:
            raise ValueError("a queue needs a name and a skill group")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"queue {self.name}: unknown strategy {self.strategy!r} (one of {', '.join(STRATEGIES)})")
        if not 1 <= self.min_level <= 9:
            raise ValueError(f"queue {self.name}: min_level must be 1..9, not {self.min_level}")
        for key in ("overflow_after", "max_wait", "max_length"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ValueError(f"queue {self.name}: {key} must not be negative")
        object.__setattr__(self, "rules", tuple(self.rules))
