"""Automatic call distribution (ACD, 自动呼叫分配): queues, priorities, strategies, local preference, EWT.

Pure domain code (no I/O, time from an injected clock).  The pieces:

* :mod:`ctid.acd.distributor` — :class:`ACD`, the matcher, and :class:`Offer`;
* :mod:`ctid.acd.config` — :class:`QueueConfig`;
* :mod:`ctid.acd.calls` — :class:`WaitingCall` and the per-queue priority queue;
* :mod:`ctid.acd.pools` — :class:`AgentInfo` and the indexes of available agents;
* :mod:`ctid.acd.strategies` — the seven distribution strategies;
* :mod:`ctid.acd.priority` — VIP / priority rules;
* :mod:`ctid.acd.locality` — caller number → city;
* :mod:`ctid.acd.ewt` — estimated wait time;
* :mod:`ctid.acd.runtime` — the ACD's internal structure: queue and agent records, agents' plans;
* :mod:`ctid.acd.queries` — positions, listings, all-busy and wait estimates.

See ``docs/acd.md``.
"""

from ctid.acd.calls import WaitingCall
from ctid.acd.config import QueueConfig
from ctid.acd.distributor import ACD, Clock, Offer, QueueFull
from ctid.acd.ewt import Estimator, WaitSnapshot, observed_estimate
from ctid.acd.locality import CHINA_AREA_CODES, CityTable, national
from ctid.acd.pools import AgentInfo
from ctid.acd.priority import PriorityRule
from ctid.acd.strategies import STRATEGIES, Strategy

__all__ = [
    "ACD",
    "CHINA_AREA_CODES",
    "STRATEGIES",
    "AgentInfo",
    "CityTable",
    "Clock",
    "Estimator",
    "Offer",
    "PriorityRule",
    "QueueConfig",
    "QueueFull",
    "Strategy",
    "WaitSnapshot",
    "WaitingCall",
    "national",
    "observed_estimate",
]
