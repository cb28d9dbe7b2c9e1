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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctid.acd.pools import AgentInfo

__all__ = ["STRATEGIES", "Strategy"]

#: metric(info, offers_in_this_queue_by_agent_id) -> sort key, lower first.
Metric = Callable[["AgentInfo", Mapping[str, int]], float]


@dataclass(frozen=True, slots=True)
class Strategy:
    """One distribution strategy: its name, its Chinese name and how it ranks agents.

    ``metric`` is None for ring strategies (round robin), which keep their own
    ordered ring instead of a heap.  ``per_queue`` strategies keep one index
    per queue rather than one per skill group (their metric counts per queue).
    """

    name: str
    label: str
    metric: Metric | None
    per_queue: bool = False


def _longest_idle(info: AgentInfo, counts: Mapping[str, int]) -> float:
    return info.idle_since


def _longest_avg_idle(info: AgentInfo, counts: Mapping[str, int]) -> float:
    return -(info.idle_time_total / info.idle_periods) if info.idle_periods else 0.0


def _least_talk(info: AgentInfo, counts: Mapping[str, int]) -> float:
    return info.talk_time_total


def _least_avg_talk(info: AgentInfo, counts: Mapping[str, int]) -> float:
    return info.talk_time_total / info.answered if info.answered else 0.0


def _fewest_answered(info: AgentInfo, counts: Mapping[str, int]) -> float:
    return info.answered


def _even(info: AgentInfo, counts: Mapping[str, int]) -> float:
    return counts.get(info.agent_id, 0)


#: The strategies by configuration name.
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("longest_idle", "最长空闲时间优先", _longest_idle),
        Strategy("longest_avg_idle", "平均空闲最长时间优先", _longest_avg_idle),
        Strategy("least_talk", "最少回答时间优先", _least_talk),
        Strategy("least_avg_talk", "平均最少回答时间优先", _least_avg_talk),
        Strategy("fewest_answered", "回答次数最少优先", _fewest_answered),
        Strategy("round_robin", "轮流分配", None),
        Strategy("even", "平均分配", _even, per_queue=True),
    )
}
