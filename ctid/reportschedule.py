"""The monthly report on a schedule (RP-5): last month's agent report, written as HTML and CSV.

:class:`MonthlyReportService` (the ``reports`` child of the service tree)
wakes at 01:00 on the 1st of each month in ``[reports] timezone`` and
writes ``monthly-YYYY-MM.html`` and ``.csv`` into ``output_dir``; at start-up
it also writes last month's if it is missing (the daemon was down on the
1st), once the schema upgrade it is given is over.  The SQL, the rendering and the file writes run in a database pool
thread; files are replaced atomically.  A failure is logged and the next
month is tried as usual.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Connection
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ctid.reports import monthly_report, render
from ctid.reportsettings import ReportSettings
from ctid.stats import StatsOptions, period_stats

__all__ = ["MonthlyReportService", "month_bounds", "next_run", "previous_month", "report_paths", "write_monthly"]

log = Logger()

#: Local hour of the 1st at which last month's report is written.
RUN_HOUR = 1


def _first_of(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def month_bounds(year: int, month: int, settings: ReportSettings) -> tuple[datetime, datetime]:
    """The month in the report time zone as a naive-UTC half-open period."""
    tz = settings.tz
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(*_first_of(year, month), 1, tzinfo=tz)
    return start.astimezone(UTC).replace(tzinfo=None), end.astimezone(UTC).replace(tzinfo=None)


def next_run(now: float, settings: ReportSettings) -> float:
    """POSIX time of the next 1st-of-the-month run strictly after ``now``."""
    local = datetime.fromtimestamp(now, settings.tz)
    candidate = datetime(local.year, local.month, 1, RUN_HOUR, tzinfo=settings.tz)
    if candidate.timestamp() <= now:
        candidate = datetime(*_first_of(local.year, local.month), 1, RUN_HOUR, tzinfo=settings.tz)
    return candidate.timestamp()


def previous_month(now: float, settings: ReportSettings) -> tuple[int, int]:
    """(year, month) before the one ``now`` falls in, in the report time zone."""
    local = datetime.fromtimestamp(now, settings.tz)
    first = datetime(local.year, local.month, 1) - timedelta(days=1)
    return first.year, first.month


def report_paths(year: int, month: int, output_dir: str) -> tuple[str, str]:
    """(html, csv) file names of a month's report."""
    stem = os.path.join(output_dir, f"monthly-{year:04d}-{month:02d}")
    return stem + ".html", stem + ".csv"


def _replace(path: str, text: str) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


def write_monthly(connection: Connection, year: int, month: int, settings: ReportSettings,
                  options: StatsOptions | None = None) -> tuple[str, str]:
    """Runs in a database pool: compute and write a month's report; its (html, csv) paths."""
    start, end = month_bounds(year, month, settings)
    stats = period_stats(connection, start, end, options or settings.options)
    report = monthly_report(stats, settings.tz)
    os.makedirs(settings.output_dir, exist_ok=True)
    html_path, csv_path = report_paths(year, month, settings.output_dir)
    _replace(html_path, render(report, "html"))
    _replace(csv_path, render(report, "csv"))
    return html_path, csv_path


class MonthlyReportService(Service):
    """Writes last month's report on the 1st of each month (and at start-up when missing)."""

    def __init__(self, pool, settings: ReportSettings, clock: IReactorTime, schema=None, name: str = "reports"):
        self.setName(name)
        self._pool = pool
        self._schema = schema
        self._settings = settings
        self._clock = clock
        self._call: IDelayedCall | None = None
        self._running_job: Deferred | None = None

    def startService(self) -> None:
        """Wait for the next 1st; once ``schema`` (a started SchemaUpgrade) is done, catch up last month."""
        super().startService()
        self._schedule()
        ready = getattr(self._schema, "done", None) or succeed(None)
        ready.addBoth(self._catch_up)

    def _catch_up(self, result: object = None) -> object:
        """Write last month's report if it is missing; passes ``result`` on untouched."""
        year, month = previous_month(self._clock.seconds(), self._settings)
        if self.running and not os.path.exists(report_paths(year, month, self._settings.output_dir)[0]):
            self._run(year, month)
        return result

    def stopService(self) -> Deferred[None]:
        """Stop waiting; fires when a report being written is done."""
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        job = self._running_job
        if job is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        job.addBoth(lambda _: done.callback(None))
        return done

    def _schedule(self) -> None:
        now = self._clock.seconds()
        self._call = self._clock.callLater(next_run(now, self._settings) - now, self._due)

    def _due(self) -> None:
        self._call = None
        year, month = previous_month(self._clock.seconds(), self._settings)
        self._run(year, month)
        if self.running:
            self._schedule()

    def _run(self, year: int, month: int) -> None:
        job = self._running_job = self._pool.run(write_monthly, year, month, self._settings)

        def written(paths: tuple[str, str]) -> None:
            log.info("monthly report {month} written to {html} and {csv}", month=f"{year:04d}-{month:02d}",
                     html=paths[0], csv=paths[1])

        def failed(failure) -> None:
            log.failure("monthly report {month} could not be written", failure, month=f"{year:04d}-{month:02d}")

        def finished(_) -> None:
            if self._running_job is job:
                self._running_job = None

        job.addCallbacks(written, failed)
        job.addBoth(finished)
