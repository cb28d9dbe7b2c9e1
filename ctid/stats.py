"""Statistics from the stored records: the query layer over :mod:`ctid.kpis` and :mod:`ctid.staffing`.

Every ``fetch_*``, :func:`period_stats` and :func:`search_logs` takes a
SQLAlchemy ``connection`` first and returns plain data, so it runs in a
database pool thread: ``pool.run(period_stats, start, end, options)``.
Periods are half-open ``[start, end)`` in naive UTC.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, select
from sqlalchemy.engine import Connection

from ctid.adapters.store.schema import (
    agent_state_log,
    all_busy_log,
    audit_log,
    call_records,
    queue_events,
    recordings,
    trade_log,
    voice_messages,
)
from ctid.kpis import (
    AgentLine,
    CallRow,
    Definitions,
    KPIs,
    StateRow,
    Volumes,
    agent_lines,
    handle_time,
    handled,
    kpis,
    volumes,
)
from ctid.staffing import Demand, ServiceTarget, Staffing, estimate_patience, staff

__all__ = [
    "LOGS",
    "FILTERS",
    "LogSearch",
    "PeriodStats",
    "StatsOptions",
    "demands",
    "fetch_arrivals",
    "fetch_calls",
    "fetch_states",
    "period_stats",
    "search_logs",
]

#: Most rows a log search returns.
MAX_ROWS = 100_000


@dataclass(frozen=True)
class StatsOptions:
    """How figures are computed: KPI definitions, SL target, staffing interval and patience model.

    ``patience``: ``"observed"`` (Erlang A with the patience each queue and
    interval showed, Erlang C where nobody hung up), ``"none"`` (Erlang C)
    or a mean patience in seconds.
    """

    definitions: Definitions = Definitions()
    target_level: float = 0.8
    interval: float = 1800.0
    patience: str | float = "observed"

    @property
    def target(self) -> ServiceTarget:
        """The service-level target staffing aims at."""
        return ServiceTarget(self.target_level, self.definitions.answer_within)


@dataclass(frozen=True)
class PeriodStats:
    """Everything the reports show for one period."""

    start: datetime
    end: datetime
    volumes: Volumes
    total: KPIs
    queues: tuple[KPIs, ...]
    agents: tuple[AgentLine, ...]
    staffing: tuple[Staffing, ...] = field(default=())


def fetch_calls(connection: Connection, start: datetime, end: datetime) -> list[CallRow]:
    """Calls that arrived in [start, end), oldest first."""
    c = call_records.c
    query = (select(*(c[name] for name in CallRow._fields))
             .where(c.arrived_at >= start, c.arrived_at < end).order_by(c.arrived_at))
    return [CallRow(*row) for row in connection.execute(query)]


def fetch_states(connection: Connection, start: datetime, end: datetime) -> list[StateRow]:
    """Agent state stretches overlapping [start, end), oldest first."""
    c = agent_state_log.c
    query = (select(*(c[name] for name in StateRow._fields))
             .where(c.started_at < end, c.ended_at > start).order_by(c.started_at))
    return [StateRow(*row) for row in connection.execute(query)]


def fetch_arrivals(connection: Connection, start: datetime, end: datetime) -> list[tuple[str, datetime]]:
    """(caller number, arrival) of every call with a caller number that arrived in [start, end)."""
    c = call_records.c
    query = select(c.ani, c.arrived_at).where(c.arrived_at >= start, c.arrived_at < end, c.ani.is_not(None))
    return [(ani, at) for ani, at in connection.execute(query)]


def demands(calls: list[CallRow], start: datetime, end: datetime, options: StatsOptions) -> list[Demand]:
    """What each queue was offered in each interval of [start, end), with its AHT and patience.

    An interval with no answered call takes the queue's AHT over the
    period; a queue that answered nothing in the period is left out (no
    handle time to staff for).
    """
    step = timedelta(seconds=options.interval)
    slots: dict[tuple[str, int], list[CallRow]] = defaultdict(list)
    for call in calls:
        if call.queue is not None and call.queued_at is not None and start <= call.queued_at < end:
            slots[call.queue, int((call.queued_at - start) / step)].append(call)
    queue_aht: dict[str, list[float]] = defaultdict(list)
    for (queue, _), group in slots.items():
        queue_aht[queue].extend(handle_time(c) for c in group if handled(c))
    result = []
    for (queue, index), group in sorted(slots.items()):
        times = [handle_time(c) for c in group if handled(c)] or queue_aht[queue]
        if not times:
            continue
        begin = start + index * step
        seconds = (min(begin + step, end) - begin).total_seconds()
        result.append(Demand(queue, begin, seconds, len(group), sum(times) / len(times), _patience(group, options)))
    return result


def _patience(group: list[CallRow], options: StatsOptions) -> float | None:
    if options.patience == "none":
        return None
    if options.patience != "observed":
        return float(options.patience)
    return estimate_patience(sum(1 for c in group if c.abandoned), sum(c.wait_s or 0.0 for c in group))


def period_stats(connection: Connection, start: datetime, end: datetime, options: StatsOptions) -> PeriodStats:
    """Volumes, KPIs (all queues and each), agent lines and staffing for [start, end)."""
    if end <= start:
        raise ValueError(f"the period must end after it starts: {start} .. {end}")
    calls = fetch_calls(connection, start, end)
    states = fetch_states(connection, start, end)
    later = fetch_arrivals(connection, start, end + options.definitions.fcr_window)
    definitions = options.definitions
    queues = sorted({c.queue for c in calls if c.queue is not None})
    return PeriodStats(
        start=start,
        end=end,
        volumes=volumes(calls, start, end),
        total=kpis(calls, states, later, start, end, definitions),
        queues=tuple(kpis(calls, (), later, start, end, definitions, queue=q) for q in queues),
        agents=tuple(agent_lines(calls, states, start, end, definitions)),
        staffing=tuple(staff(demand, options.target) for demand in demands(calls, start, end, options)),
    )


@dataclass(frozen=True)
class LogSpec:
    """A searchable log: its table, the time column and which column each filter matches."""

    table: Table
    time: str
    filters: dict[str, str]


#: The searchable logs (RP-1) by name.
LOGS: dict[str, LogSpec] = {
    "calls": LogSpec(call_records, "arrived_at", {"agent": "agent_id", "caller": "ani", "queue": "queue",
                                                  "extension": "dnis"}),
    "agents": LogSpec(agent_state_log, "started_at", {"agent": "agent_id"}),
    "busy": LogSpec(all_busy_log, "started_at", {"caller": "ani", "queue": "queue"}),
    "queue": LogSpec(queue_events, "at", {"agent": "agent_id", "queue": "queue"}),
    "recordings": LogSpec(recordings, "started_at", {"agent": "agent_id", "caller": "ani", "extension": "extension"}),
    "trades": LogSpec(trade_log, "at", {"agent": "agent_id"}),
    "messages": LogSpec(voice_messages, "at", {"caller": "ani", "queue": "mailbox"}),
    "audit": LogSpec(audit_log, "at", {"agent": "actor"}),
}
#: The filters a search may give.
FILTERS = ("agent", "extension", "caller", "queue")


@dataclass(frozen=True)
class LogSearch:
    """A log search's answer: column names and rows of plain values, oldest first; ``truncated`` at the limit."""

    log: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool


def _match(column, value: str):
    """Exact match, or a prefix when ``value`` ends with ``*`` (LIKE wildcards in it taken literally)."""
    if value.endswith("*"):
        prefix = value[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(prefix + "%", escape="\\")
    return column == value


def search_logs(connection: Connection, log: str, start: datetime, end: datetime, filters: dict[str, str],
                limit: int = 1000) -> LogSearch:
    """Rows of ``log`` whose time is in [start, end) and that match every filter (agent, extension, caller, queue)."""
    spec = LOGS.get(log)
    if spec is None:
        raise ValueError(f"unknown log {log!r} (one of {', '.join(LOGS)})")
    if not 1 <= limit <= MAX_ROWS:
        raise ValueError(f"limit must be 1..{MAX_ROWS}, got {limit}")
    columns = [c for c in spec.table.c if c.name != "record_id"]
    time = spec.table.c[spec.time]
    conditions = [time >= start, time < end]
    for name, value in filters.items():
        if name not in spec.filters:
            known = ", ".join(spec.filters) or "none"
            raise ValueError(f"the {log} log cannot be searched by {name} (by: {known})")
        if value:
            conditions.append(_match(spec.table.c[spec.filters[name]], value))
    query = select(*columns).where(and_(*conditions)).order_by(time).limit(limit + 1)
    rows = [tuple(row) for row in connection.execute(query)]
    return LogSearch(log, tuple(c.name for c in columns), tuple(rows[:limit]), len(rows) > limit)
