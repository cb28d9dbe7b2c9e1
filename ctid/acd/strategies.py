"""Distribution strategies (AC-2, 话务分配策略): which available agent gets a call.

A strategy only matters when several qualified agents are available at once;
when calls are waiting, an agent who becomes available takes the most urgent
call it may take (see :mod:`ctid.acd.distributor`).

Every agent index sorts its entries by the **skill level first** (higher level
first, 9 is the best), then by the strategy's metric (lower first), then by
``idle_since`` (earlier first), then by the order in which the agents became
available.  In other words: level tiers, and the strategy decides within the
top tier that has an available agent.  The metrics:

================== ============================ =====================================================
name               Chinese                      metric (lower is offered first)
================== ============================ =====================================================
``longest_idle``   最长空闲时间优先             ``idle_since`` (the earliest-idle agent first)
``longest_avg_idle`` 平均空闲最长时间优先       ``-(idle_time_total / idle_periods)``; 0 with no period
``least_talk``     最少回答时间优先             ``talk_time_total``
``least_avg_talk`` 平均最少回答时间优先         ``talk_time_total / answered``; 0 with no call answered
``fewest_answered`` 回答次数最少优先            ``answered``
``even``           平均分配                     calls this queue offered the agent since the last
                                                :meth:`~ctid.acd.ACD.reset_daily`; index per queue
``round_robin``    轮流分配                     ring order = ``agent_id`` order: the next agent after
                                                the last one this index offered, wrapping around
================== ============================ =====================================================

The agent's figures are the ones in the :class:`~ctid.acd.pools.AgentInfo` it
became available with; they do not change while it stays available.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctid.acd.pools import AgentInfo

__all__ = ["STRATEGIES", "Strategy"]

#: metric(info) -> sort key, lower first.
Metric = Callable[["AgentInfo"], float]


@dataclass(frozen=True, slots=True)
class Strategy:
    """One distribution strategy: its name, its Chinese name and how it ranks agents.

    ``kind`` says how its index works: ``"metric"`` (a heap keyed by
    ``metric(info)``), ``"count"`` (a heap keyed by the offers this queue made
    to the agent: one index per queue) or ``"ring"`` (round robin).
    """

    name: str
    label: str
    kind: str
    metric: Metric | None = None


def _longest_avg_idle(info: AgentInfo) -> float:
    return -(info.idle_time_total / info.idle_periods) if info.idle_periods else 0.0


def _least_avg_talk(info: AgentInfo) -> float:
    return info.talk_time_total / info.answered if info.answered else 0.0


#: The strategies by configuration name.
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("longest_idle", "最长空闲时间优先", "metric", attrgetter("idle_since")),
        Strategy("longest_avg_idle", "平均空闲最长时间优先", "metric", _longest_avg_idle),
        Strategy("least_talk", "最少回答时间优先", "metric", attrgetter("talk_time_total")),
        Strategy("least_avg_talk", "平均最少回答时间优先", "metric", _least_avg_talk),
        Strategy("fewest_answered", "回答次数最少优先", "metric", attrgetter("answered")),
        Strategy("round_robin", "轮流分配", "ring"),
        Strategy("even", "平均分配", "count"),
    )
}
