"""Call-centre figures (RP-2, RP-3, RP-4) as pure functions of stored records.

The rows are plain named tuples (:class:`CallRow` from ``call_records``,
:class:`StateRow` from ``agent_state_log``); :mod:`ctid.stats` fetches them.
Every figure's definition, and where it comes from, is in docs/kpis.md; a
ratio with nothing to divide by is None, never 0.  Times are naive UTC
``datetime``; durations are seconds.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

__all__ = [
    "HANDLING_STATES",
    "AVAILABLE_STATES",
    "AgentLine",
    "CallRow",
    "Definitions",
    "KPIs",
    "StateRow",
    "TrunkUse",
    "Volumes",
    "agent_lines",
    "first_contact_resolution",
    "handle_time",
    "handled",
    "is_kind",
    "kpis",
    "state_time",
    "volumes",
]

#: Agent states in which the agent works on a call (talk, hold, after-call work).
HANDLING_STATES = frozenset({"talking", "hold", "wrap_up"})
#: States in which the agent waits for the next call (ready, or being offered one).
AVAILABLE_STATES = frozenset({"ready", "reserved", "ringing"})
#: Rows that are flags laid over the states, not stretches of logged-in time.
_FLAGS = frozenset({"not_hung_up", "logged_out"})


class CallRow(NamedTuple):
    """The ``call_records`` columns the figures use."""

    call_id: str
    arrived_at: datetime
    ended_at: datetime
    ani: str | None
    trunk: str | None
    queue: str | None
    agent_id: str | None
    queued_at: datetime | None
    answered_at: datetime | None
    wait_s: float | None
    talk_s: float
    wrap_up_s: float | None
    self_service: bool
    abandoned: bool
    satisfaction: int | None
    category: str | None = None  #: the agent's wrap-up classification (SetCallCategory); None: not classified


def is_kind(call: CallRow, category: str, queues: frozenset[str]) -> bool:
    """Whether ``call`` was a ``category`` call: as its agent classified it, else (not classified) by its queue."""
    return call.category == category if call.category is not None else call.queue in queues


class StateRow(NamedTuple):
    """The ``agent_state_log`` columns the figures use."""

    agent_id: str
    state: str
    entered_by: str
    started_at: datetime
    ended_at: datetime


@dataclass(frozen=True)
class Definitions:
    """The settings the definitions depend on (``[reports]``): SL target, short abandon, FCR window, call kinds."""

    answer_within: float = 20.0
    short_abandon: float = 5.0
    fcr_window: timedelta = timedelta(days=7)
    complaint_queues: frozenset[str] = frozenset({"complaints"})
    consultation_queues: frozenset[str] = frozenset({"consultation"})


@dataclass(frozen=True)
class TrunkUse:
    """One line/trunk: calls that came in on it, seconds it was occupied, and that as Erlangs over the period."""

    trunk: str
    calls: int
    seconds: float
    erlangs: float


@dataclass(frozen=True)
class Volumes:
    """RP-2: calls in the period by how they were served."""

    total: int
    self_service: int
    manual: int
    other: int
    abandoned: int
    trunks: tuple[TrunkUse, ...]


@dataclass(frozen=True)
class KPIs:
    """RP-4 for one queue (``queue``) or all of them (``queue`` None)."""

    queue: str | None
    offered: int
    answered: int
    answered_in_time: int
    abandoned: int
    short_abandoned: int
    service_level: float | None
    asa: float | None
    aht: float | None
    abandon_rate: float | None
    occupancy: float | None
    utilisation: float | None
    fcr: float | None
    satisfaction: float | None
    satisfied_share: float | None
    rated: int


@dataclass(frozen=True)
class AgentLine:
    """RP-3 for one agent: the service statistics and the monthly report's columns."""

    agent_id: str
    served: int
    complaints: int
    consultations: int
    service_total: float
    service_avg: float | None
    waits: int
    wait_avg: float | None
    no_answer: int
    not_hung_up: int
    occupancy: float | None


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def handled(call: CallRow) -> bool:
    """An agent answered the call (queued or direct)."""
    return call.agent_id is not None and call.answered_at is not None and not call.abandoned


def handle_time(call: CallRow) -> float:
    """Talk (hold included) plus after-call work, seconds."""
    return call.talk_s + (call.wrap_up_s or 0.0)


def volumes(calls: Iterable[CallRow], start: datetime, end: datetime) -> Volumes:
    """RP-2: total, self-service (IVR alone), manual (queued for or answered by an agent), trunk usage."""
    total = self_service = manual = abandoned = 0
    per_trunk: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for call in calls:
        total += 1
        if call.self_service:
            self_service += 1
        elif call.queue is not None or call.agent_id is not None:
            manual += 1
        abandoned += call.abandoned
        use = per_trunk[call.trunk or "(unknown)"]
        use[0] += 1
        use[1] += max((min(call.ended_at, end) - max(call.arrived_at, start)).total_seconds(), 0.0)
    period = (end - start).total_seconds()
    trunks = tuple(TrunkUse(name, int(n), seconds, seconds / period if period > 0 else 0.0)
                   for name, (n, seconds) in sorted(per_trunk.items()))
    return Volumes(total, self_service, manual, total - self_service - manual, abandoned, trunks)


def state_time(states: Iterable[StateRow], start: datetime, end: datetime) -> dict[str, dict[str, float]]:
    """Seconds each agent spent in each state within [start, end) (stretches clipped to the period)."""
    seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in states:
        if row.state in _FLAGS:
            continue
        clipped = (min(row.ended_at, end) - max(row.started_at, start)).total_seconds()
        if clipped > 0:
            seconds[row.agent_id][row.state] += clipped
    return seconds


def _occupancy(times: dict[str, float]) -> tuple[float, float, float]:
    """(handling, available, logged-in) seconds from one agent's (or everyone's) time by state."""
    handling = sum(times.get(state, 0.0) for state in HANDLING_STATES)
    available = sum(times.get(state, 0.0) for state in AVAILABLE_STATES)
    return handling, available, sum(times.values())


def first_contact_resolution(answered: Iterable[CallRow], later: Iterable[tuple[str, datetime]],
                             window: timedelta) -> float | None:
    """Share of answered calls (with a caller number) not followed by another call from it within ``window``.

    ``later``: (ani, arrived_at) of every call from the period's start to
    its end plus ``window``, so calls near the end are judged too.
    """
    arrivals: dict[str, list[datetime]] = defaultdict(list)
    for ani, at in later:
        arrivals[ani].append(at)
    for times in arrivals.values():
        times.sort()
    judged = resolved = 0
    for call in answered:
        if not call.ani:
            continue
        judged += 1
        times = arrivals.get(call.ani, [])
        following = bisect_right(times, call.arrived_at)
        if following == len(times) or times[following] > call.arrived_at + window:
            resolved += 1
    return _ratio(resolved, judged)


def kpis(calls: Sequence[CallRow], states: Iterable[StateRow], later: Iterable[tuple[str, datetime]],
         start: datetime, end: datetime, definitions: Definitions, queue: str | None = None) -> KPIs:
    """RP-4 over ``calls`` (all queued calls, or ``queue``'s only when given); occupancy from ``states``."""
    queued = [c for c in calls if c.queue is not None and (queue is None or c.queue == queue)]
    short = [c for c in queued if c.abandoned and (c.wait_s or 0.0) < definitions.short_abandon]
    abandoned = [c for c in queued if c.abandoned and (c.wait_s or 0.0) >= definitions.short_abandon]
    answered = [c for c in queued if handled(c)]
    in_time = [c for c in answered if (c.wait_s or 0.0) <= definitions.answer_within]
    offered = len(queued) - len(short)
    worked = [c for c in calls if handled(c) and (queue is None or c.queue == queue)]
    scores = [c.satisfaction for c in worked if c.satisfaction is not None]
    handling = available = logged_in = 0.0
    if queue is None:
        for times in state_time(states, start, end).values():
            h, a, t = _occupancy(times)
            handling, available, logged_in = handling + h, available + a, logged_in + t
    return KPIs(
        queue=queue,
        offered=offered,
        answered=len(answered),
        answered_in_time=len(in_time),
        abandoned=len(abandoned),
        short_abandoned=len(short),
        service_level=_ratio(len(in_time), offered),
        asa=_mean([c.wait_s or 0.0 for c in answered]),
        aht=_mean([handle_time(c) for c in worked]),
        abandon_rate=_ratio(len(abandoned), offered),
        occupancy=_ratio(handling, handling + available),
        utilisation=_ratio(handling, logged_in),
        fcr=first_contact_resolution(worked, later, definitions.fcr_window),
        satisfaction=_mean(scores),
        satisfied_share=_ratio(sum(1 for s in scores if s >= 4), len(scores)),
        rated=len(scores),
    )


def agent_lines(calls: Iterable[CallRow], states: Sequence[StateRow], start: datetime, end: datetime,
                definitions: Definitions) -> list[AgentLine]:
    """RP-3 per agent, sorted by agent id: every agent who handled a call or has a state row in the period."""
    served: dict[str, list[CallRow]] = defaultdict(list)
    for call in calls:
        if handled(call) and call.agent_id is not None:
            served[call.agent_id].append(call)
    no_answer: dict[str, int] = defaultdict(int)
    not_hung_up: dict[str, int] = defaultdict(int)
    for row in states:
        if not start <= row.started_at < end:
            continue
        if row.state == "locked" and row.entered_by == "lock":
            no_answer[row.agent_id] += 1
        elif row.state == "not_hung_up":
            not_hung_up[row.agent_id] += 1
    times = state_time(states, start, end)
    lines = []
    for agent in sorted(set(served) | set(times) | set(no_answer) | set(not_hung_up)):
        own = served.get(agent, [])
        service = [handle_time(c) for c in own]
        waited = [c.wait_s for c in own if c.wait_s]
        handling, available, _ = _occupancy(times.get(agent, {}))
        lines.append(AgentLine(
            agent_id=agent,
            served=len(own),
            complaints=sum(1 for c in own if is_kind(c, "complaint", definitions.complaint_queues)),
            consultations=sum(1 for c in own if is_kind(c, "consultation", definitions.consultation_queues)),
            service_total=sum(service),
            service_avg=_mean(service),
            waits=len(waited),
            wait_avg=_mean(waited),
            no_answer=no_answer.get(agent, 0),
            not_hung_up=not_hung_up.get(agent, 0),
            occupancy=_ratio(handling, handling + available),
        ))
    return lines
