"""Reports (RP-5): the ctid-report command on a seeded SQLite file, the monthly schedule, the CTI report desk."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock

from ctid.adapters.store import migrate
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import ThreadlessDatabasePool
from ctid.config import ConfigError, parse
from ctid.protocols.ctiapi import CTIError
from ctid.reportdesk import MAX_ROWS, ReportDesk
from ctid.reports import local_period
from ctid.reportschedule import MonthlyReportService, month_bounds, next_run
from ctid.reportsettings import ReportSettings
from tests.test_stats import insert_scenario

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ctid-report"
SHANGHAI = ReportSettings(timezone="Asia/Shanghai")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> str:
    """A migrated SQLite file holding the hand-computed hour of tests/test_stats.py (4 May 2026, 09:00 UTC)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'ctid.db'}"
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=1)
    with engine.begin() as connection:
        insert_scenario(connection)
    engine.dispose()
    return url


def run_report(*args: str) -> subprocess.CompletedProcess:
    """Run scripts/ctid-report as a user would."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120,
                          cwd=ROOT)


def test_cli_stats_as_a_table(seeded):
    """The terminal table shows the hand-computed figures: SL 60 %, ASA 15 s, AHT 197.5 s."""
    out = run_report("--database", seeded, "stats", "--from", "2026-05-04T09:00", "--to", "2026-05-04T10:00")
    assert out.returncode == 0, out.stderr
    all_queues = next(line for line in out.stdout.splitlines() if line.startswith("all queues"))
    assert all_queues.split()[2:] == ["5", "4", "1", "1", "60.0", "%", "15.0", "s", "197.5", "s", "20.0", "%",
                                      "50.0", "%", "4.00"]
    assert "Staffing (agents needed for 80 % target)" in out.stdout


def test_cli_monthly_as_csv_in_a_time_zone(seeded):
    """The monthly CSV: one row per agent with the RP-3 columns (1001 also took c9 on 6 May: 170 + 10 s)."""
    out = run_report("--database", seeded, "--timezone", "Asia/Shanghai", "--format", "csv", "monthly",
                     "--month", "2026-05")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["agent"], r["calls served"], r["complaints"], r["consultations"], r["service time"],
             r["no answer"], r["not hung up"]) for r in rows] == [
        ("1001", "3", "0", "1", "390.0", "1", "0"), ("1002", "2", "1", "0", "580.0", "0", "1")]


def test_cli_html_has_charts(seeded, tmp_path):
    """The HTML page is self-contained: inline SVG charts, nothing fetched from anywhere, the figures in tables."""
    page = tmp_path / "stats.html"
    out = run_report("--database", seeded, "--format", "html", "--output", str(page), "stats",
                     "--from", "2026-05-04", "--to", "2026-05-05")
    assert out.returncode == 0, out.stderr
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<svg") >= 5
    assert "src=" not in text and 'href="http' not in text and "<link" not in text
    assert "60.0 %" in text and "Lines and trunks" in text


def test_cli_search_logs(seeded):
    """RP-1 from the command line: calls of agent 1001, recordings by extension, a caller prefix."""
    out = run_report("--database", seeded, "--format", "csv", "search", "calls", "--from", "2026-05-04",
                     "--to", "2026-05-05", "--agent", "1001")
    assert out.returncode == 0, out.stderr
    assert [r["call_id"] for r in csv.DictReader(io.StringIO(out.stdout))] == ["c1", "c7"]
    out = run_report("--database", seeded, "search", "recordings", "--from", "2026-05-04", "--to", "2026-05-05",
                     "--extension", "PJSIP/1002")
    assert out.returncode == 0 and "recordings log: 2 rows" in out.stdout


def test_cli_refuses_bad_requests(seeded):
    """A filter the log lacks, a reversed period or no database: a one-line error and exit status 2."""
    out = run_report("--database", seeded, "search", "agents", "--from", "2026-05-04", "--to", "2026-05-05",
                     "--caller", "138")
    assert (out.returncode, out.stderr.strip()) == (2, "ctid-report: the agents log cannot be searched by caller "
                                                       "(by: agent)")
    out = run_report("--database", seeded, "stats", "--from", "2026-05-05", "--to", "2026-05-04")
    assert out.returncode == 2 and "must end after it starts" in out.stderr
    out = run_report("stats", "--from", "2026-05-04", "--to", "2026-05-05")
    assert out.returncode == 2 and "--database" in out.stderr


def test_cli_reads_the_configuration(seeded, tmp_path):
    """--config takes [database] url and [reports]: a 1-second answer target leaves 1 call of 5 in time."""
    ini = tmp_path / "ctid.ini"
    ini.write_text(f"[ami]\nsecret = x\n[database]\nurl = {seeded}\n[reports]\nanswer_within = 5\n")
    out = run_report("--config", str(ini), "--format", "csv", "stats", "--from", "2026-05-04", "--to", "2026-05-05")
    assert out.returncode == 0, out.stderr
    all_queues = next(r for r in csv.reader(io.StringIO(out.stdout)) if r and r[0] == "all queues")
    assert all_queues[5] == "0.2"


def test_reports_section_is_validated():
    """[reports] keys are typed and whitelisted."""
    base = "[ami]\nsecret = x\n[reports]\n"
    assert parse(base + "timezone = Asia/Shanghai\npatience = 90\n").reports.patience == 90.0
    with pytest.raises(ConfigError, match=r"\[reports\] timezone: unknown time zone"):
        parse(base + "timezone = Mars/Olympus\n")
    with pytest.raises(ConfigError, match=r"\[reports\] service_level"):
        parse(base + "service_level = 1\n")
    with pytest.raises(ConfigError, match=r"\[reports\] patience"):
        parse(base + "patience = sometimes\n")
    with pytest.raises(ConfigError, match=r"\[reports\] colour: unknown setting"):
        parse(base + "colour = blue\n")


def test_period_and_month_bounds_in_a_time_zone():
    """Shanghai's May starts at 16:00 UTC on 30 April; local ISO times become naive UTC."""
    assert month_bounds(2026, 5, SHANGHAI) == (datetime(2026, 4, 30, 16), datetime(2026, 5, 31, 16))
    assert month_bounds(2026, 12, ReportSettings()) == (datetime(2026, 12, 1), datetime(2027, 1, 1))
    assert local_period("2026-05-04", "2026-05-04T12:00", ZoneInfo("Asia/Shanghai")) == (
        datetime(2026, 5, 3, 16), datetime(2026, 5, 4, 4))
    with pytest.raises(ValueError, match="ISO date"):
        local_period("yesterday", "2026-05-04", ZoneInfo("UTC"))


def test_next_run_is_the_first_at_one_in_the_morning():
    """From mid-May the next run is 1 June 01:00 local; exactly at a run time, the month after."""
    mid_may = datetime(2026, 5, 15, 12, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    june = datetime(2026, 6, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    assert next_run(mid_may, SHANGHAI) == june
    assert next_run(june, SHANGHAI) == datetime(2026, 7, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


@pytest.fixture
def pool(seeded):
    """A threadless pool on the seeded file."""
    pool = ThreadlessDatabasePool(make_engine(seeded, pool_size=1))
    pool.startService()
    yield pool
    pool.stopService()


class FakeSchema:
    """Stands for a started SchemaUpgrade whose ``done`` fires when the test says."""

    def __init__(self):
        self.done: Deferred[None] = Deferred()


def test_monthly_schedule_catches_up_after_the_schema_then_runs_on_the_first(pool, tmp_path):
    """Started mid-June: May's report once the schema is ready; June's at 01:00 on 1 July; stop cancels the wait."""
    settings = ReportSettings(schedule=True, output_dir=str(tmp_path / "out"), timezone="Asia/Shanghai")
    clock = Clock()
    clock.advance(datetime(2026, 6, 15, 10, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp())
    schema = FakeSchema()
    service = MonthlyReportService(pool, settings, clock, schema=schema)
    service.startService()
    assert not (tmp_path / "out").exists()
    schema.done.callback(None)
    may = tmp_path / "out" / "monthly-2026-05.csv"
    assert may.exists() and (tmp_path / "out" / "monthly-2026-05.html").read_text().count("<svg") == 1
    assert [r["agent"] for r in csv.DictReader(may.open())] == ["1001", "1002"]
    clock.advance(datetime(2026, 7, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() - clock.seconds())
    assert (tmp_path / "out" / "monthly-2026-06.csv").read_text().startswith("agent,calls served")
    assert len(clock.getDelayedCalls()) == 1
    stopped = []
    service.stopService().addCallback(stopped.append)
    assert stopped == [None] and clock.getDelayedCalls() == []


def test_monthly_schedule_skips_a_report_already_written(pool, tmp_path):
    """A restart does not rewrite last month's report when it is there."""
    settings = ReportSettings(schedule=True, output_dir=str(tmp_path), timezone="UTC")
    (tmp_path / "monthly-2026-05.html").write_text("kept")
    clock = Clock()
    clock.advance(datetime(2026, 6, 2, tzinfo=ZoneInfo("UTC")).timestamp())
    service = MonthlyReportService(pool, settings, clock)
    service.startService()
    assert (tmp_path / "monthly-2026-05.html").read_text() == "kept"
    service.stopService()


@pytest.mark.allow_logged_errors
def test_monthly_schedule_logs_a_failure_and_keeps_going(tmp_path):
    """A database that fails is logged; the service still waits for the next month."""
    broken = ThreadlessDatabasePool(make_engine(f"sqlite:///{tmp_path / 'empty.db'}", pool_size=1))
    broken.startService()
    clock = Clock()
    clock.advance(datetime(2026, 6, 2, tzinfo=ZoneInfo("UTC")).timestamp())
    service = MonthlyReportService(broken, ReportSettings(output_dir=str(tmp_path / "out")), clock)
    service.startService()
    assert not (tmp_path / "out" / "monthly-2026-05.csv").exists()
    assert len(clock.getDelayedCalls()) == 1
    service.stopService()
    broken.stopService()


def ask(desk: ReportDesk, identity, params):
    """The desk's answer (the threadless pool makes it synchronous), or the CTIError it raised."""
    out = []
    ensureDeferred(desk.report(identity, params)).addBoth(out.append)
    if hasattr(out[0], "value"):
        raise out[0].value
    return out[0]


SUPERVISOR = {"agent": "1900", "roles": ["agent", "supervisor"]}


def test_report_desk_gives_supervisors_the_figures(pool):
    """Stats, the monthly report and a log search as data for a supervisor."""
    desk = ReportDesk(pool, ReportSettings())
    stats = ask(desk, SUPERVISOR, {"kind": "stats", "from": "2026-05-04", "to": "2026-05-05"})
    queues = next(s for s in stats["sections"] if s["title"] == "Queues")
    assert queues["rows"][-1][:6] == ["all queues", 5, 4, 1, 1, 0.6]
    monthly = ask(desk, SUPERVISOR, {"kind": "monthly", "month": "2026-05"})
    assert [row[0] for row in monthly["sections"][0]["rows"]] == ["1001", "1002"]
    found = ask(desk, {"roles": ["leader"]}, {"kind": "search", "log": "calls", "from": "2026-05-04",
                                              "to": "2026-05-05", "caller": "13800138000", "limit": 1})
    section = found["sections"][0]
    assert found["truncated"] is True and len(section["rows"]) == 1
    assert section["rows"][0][section["columns"].index("arrived_at")] == "2026-05-04T09:00:00+00:00"


@pytest.mark.parametrize("identity,params,code", [
    ({"agent": "1001", "roles": ["agent"]}, {"kind": "stats"}, "forbidden"),
    (None, {"kind": "stats"}, "forbidden"),
    (SUPERVISOR, {"kind": "everything"}, "bad_request"),
    (SUPERVISOR, {"kind": "monthly", "month": "2026-13"}, "bad_request"),
    (SUPERVISOR, {"kind": "stats", "from": "2026-05-04"}, "bad_request"),
    (SUPERVISOR, {"kind": "stats", "from": "2026-05-05", "to": "2026-05-04"}, "bad_request"),
    (SUPERVISOR, {"kind": "search", "log": "agents", "from": "2026-05-04", "to": "2026-05-05", "caller": "1"},
     "bad_request"),
    (SUPERVISOR, {"kind": "search", "log": "calls", "from": "2026-05-04", "to": "2026-05-05",
                  "limit": MAX_ROWS + 1}, "bad_request"),
])
def test_report_desk_refusals(pool, identity, params, code):
    """Agents are refused; malformed requests get bad_request with a reason."""
    with pytest.raises(CTIError) as e:
        ask(ReportDesk(pool, ReportSettings()), identity, params)
    assert e.value.code == code and e.value.message


@pytest_twisted.ensureDeferred
async def test_report_desk_runs_on_a_threaded_pool(seeded):
    """With the daemon's threaded pool the SQL runs off the reactor and the answer arrives."""
    from ctid.adapters.store.pool import DatabasePool

    pool = DatabasePool(make_engine(seeded, pool_size=1), max_threads=1)
    pool.startService()
    try:
        answer = await ReportDesk(pool, ReportSettings()).report(SUPERVISOR, {"kind": "monthly", "month": "2026-05"})
    finally:
        await pool.stopService()
    assert answer["title"] == "Monthly agent report 2026-05"


def test_service_tree_has_the_schedule_when_asked(tmp_path):
    """[reports] schedule = yes adds the named child ``reports``; without it there is none."""
    from twisted.internet.testing import MemoryReactorClock

    from ctid.service import makeService

    base = f"[ami]\nsecret = x\n[database]\nurl = sqlite:///{tmp_path / 'c.db'}\n"
    with_schedule = makeService(parse(base + "[reports]\nschedule = yes\n"), MemoryReactorClock())
    assert isinstance(with_schedule.getServiceNamed("reports"), MonthlyReportService)
    assert "reports" not in [s.name for s in makeService(parse(base), MemoryReactorClock())]
