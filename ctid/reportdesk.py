"""The supervisors' ``Report`` command over the CTI protocol: statistics, the monthly report, log searches.

:meth:`ReportDesk.report` takes the session's login identity (``{"agent",
"roles", ...}``) and the command's arguments, and answers the report as
data (:func:`ctid.reports.as_data`).  Only supervisors, admins and leaders
may ask.  Arguments (times in ``[reports] timezone``):

* ``{"kind": "stats", "from": "2026-05-04", "to": "2026-05-05"}``;
* ``{"kind": "monthly", "month": "2026-05"}``;
* ``{"kind": "search", "log": "calls", "from": …, "to": …, "agent"?, "extension"?, "caller"?, "queue"?,
  "limit"?}`` (logs: :data:`ctid.stats.LOGS`; ``caller`` may end with ``*`` for a prefix).

Each table holds at most :data:`MAX_ROWS` rows (``truncated`` says so).
The SQL runs on the database pool, never on the reactor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ctid.protocols.ctiapi import CTIError
from ctid.reports import as_data, local_period, log_report, monthly_report, stats_report
from ctid.reportschedule import month_bounds
from ctid.reportsettings import ReportSettings
from ctid.stats import FILTERS, period_stats, search_logs

__all__ = ["MAX_ROWS", "REPORT_ROLES", "ReportDesk"]

#: Most rows per table in one answer (CTI lines stay small).
MAX_ROWS = 500
#: Roles that may ask for reports.
REPORT_ROLES = frozenset({"supervisor", "admin", "leader"})
_MONTH = re.compile(r"(\d{4})-(\d{2})\Z")
_KINDS = ("stats", "monthly", "search")


def _text(params: Mapping[str, Any], name: str, required: bool = True, longest: int = 64) -> str:
    value = params.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value or len(value) > longest:
        raise CTIError("bad_request", f"{name} must be a non-empty string of at most {longest} characters")
    return value


class ReportDesk:
    """Answers supervisors' report requests from the records in ``pool``."""

    def __init__(self, pool, settings: ReportSettings):
        self._pool = pool
        self._settings = settings

    async def report(self, identity: Mapping[str, Any] | None, params: Mapping[str, Any]) -> dict[str, Any]:
        """The report ``params`` ask for, as data; CTIError ``forbidden`` or ``bad_request`` when refused."""
        roles = set((identity or {}).get("roles", ()))
        if not roles & REPORT_ROLES:
            raise CTIError("forbidden", "reports are for supervisors, admins and leaders")
        kind = params.get("kind")
        if kind not in _KINDS:
            raise CTIError("bad_request", f"kind must be one of {', '.join(_KINDS)}")
        try:
            if kind == "monthly":
                return await self._monthly(params)
            if kind == "stats":
                return await self._stats(params)
            return await self._search(params)
        except ValueError as e:
            raise CTIError("bad_request", str(e)) from None

    async def _stats(self, params: Mapping[str, Any]) -> dict[str, Any]:
        tz = self._settings.tz
        start, end = local_period(_text(params, "from"), _text(params, "to"), tz)
        stats = await self._pool.run(period_stats, start, end, self._settings.options)
        return as_data(stats_report(stats, tz, self._settings.service_level), MAX_ROWS)

    async def _monthly(self, params: Mapping[str, Any]) -> dict[str, Any]:
        match = _MONTH.match(_text(params, "month"))
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise CTIError("bad_request", "month must look like 2026-05")
        start, end = month_bounds(int(match.group(1)), int(match.group(2)), self._settings)
        stats = await self._pool.run(period_stats, start, end, self._settings.options)
        return as_data(monthly_report(stats, self._settings.tz), MAX_ROWS)

    async def _search(self, params: Mapping[str, Any]) -> dict[str, Any]:
        tz = self._settings.tz
        start, end = local_period(_text(params, "from"), _text(params, "to"), tz)
        log = _text(params, "log")
        filters = {name: _text(params, name, required=False) for name in FILTERS if params.get(name) is not None}
        limit = params.get("limit", MAX_ROWS)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_ROWS:
            raise CTIError("bad_request", f"limit must be a whole number from 1 to {MAX_ROWS}")
        found = await self._pool.run(search_logs, log, start, end, filters, limit)
        return dict(as_data(log_report(found, f"{log} log", tz)), truncated=found.truncated)
