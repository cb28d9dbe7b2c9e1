"""The store base: engines, migrations on SQLite and MySQL, the database thread pool and its threadless twin."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import pytest_twisted
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.exc import DBAPIError

import ctid.adapters.store
from ctid.adapters.store import migrate
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import DatabasePool, DatabasePoolStopped, ThreadlessDatabasePool
from ctid.adapters.store.schema import RECORD_TABLES, agent_skills, agents, metadata, skill_groups
from ctid.adapters.store.testing import MySQLUnavailable, mysql_required, temporary_mysql_database

TABLES = {"agents", "skill_groups", "agent_skills", "customers", "customer_phones", "customer_accounts",
          "customer_contacts", "alembic_version", *RECORD_TABLES}


@pytest.fixture
def sqlite_url(tmp_path):
    """The URL of a SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'ctid.db'}"


@pytest.fixture
def mysql_url():
    """The URL of a new, empty MySQL database, dropped after the test (skip, or fail under CI, without MySQL)."""
    try:
        with temporary_mysql_database() as url:
            yield url
    except MySQLUnavailable as e:
        if mysql_required():
            pytest.fail(f"CTID_REQUIRE_MYSQL=1 but {e}")
        pytest.skip(f"{e} (set CTID_TEST_MYSQL_URL, or CTID_REQUIRE_MYSQL=1 to fail instead)")


@pytest.fixture(params=["sqlite", "mysql"])
def empty_url(request):
    """An empty database of each backend."""
    return request.getfixturevalue(f"{request.param}_url")


def schema_differences(url) -> list:
    """What Alembic's autogenerate finds between the database at ``url`` and :data:`schema.metadata`."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            # Server defaults are left out: Alembic reports '' defaults as changed on every backend.
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


# --- engines -------------------------------------------------------------------------------------


def test_sqlite_engine_sets_wal_foreign_keys_and_busy_timeout(sqlite_url):
    """Every SQLite connection is in WAL mode, enforces foreign keys and waits a bounded time on locks."""
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 10000
    engine.dispose()


def test_sqlite_memory_engine_shares_one_connection_between_threads():
    """``sqlite://`` keeps one connection, so a table made in one thread is seen from another."""
    engine = make_engine("sqlite://")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(inspect(engine).has_table("t")))
    thread.start()
    thread.join()
    assert seen == [True]


def test_mysql_engine_bounds_every_wait_without_connecting():
    """A MySQL engine pings before use, bounds its pool and adds utf8mb4; making it opens no connection."""
    engine = make_engine("mysql+pymysql://ctid:secret@192.0.2.1:3306/ctid", pool_size=3, pool_timeout=5)
    assert engine.url.query["charset"] == "utf8mb4"
    assert engine.pool._pre_ping is True
    assert engine.pool.size() == 3 and engine.pool._max_overflow == 0 and engine.pool._timeout == 5
    assert engine.pool.checkedout() == 0


def test_mysql_connections_have_timeouts_utf8mb4_and_utc(mysql_url):
    """Real MySQL connections carry connect/read/write timeouts, utf8mb4 and the UTC time zone."""
    engine = make_engine(mysql_url, connect_timeout=4, read_timeout=7, write_timeout=8)
    try:
        with engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert (raw.connect_timeout, raw._read_timeout, raw._write_timeout) == (4, 7, 8)
            assert raw.charset == "utf8mb4"
            assert connection.exec_driver_sql("SELECT @@session.time_zone").scalar() == "+00:00"
    finally:
        engine.dispose()


def test_unreachable_mysql_fails_fast():
    """Nothing listening: connecting fails within the connect timeout instead of hanging."""
    engine = make_engine("mysql+pymysql://root@127.0.0.1:1/ctid", connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(Exception, match="Can't connect"):
        engine.connect()
    assert time.monotonic() - started < 3
    engine.dispose()


# --- migrations ----------------------------------------------------------------------------------


def test_migrations_live_inside_the_package():
    """Alembic finds env.py and the revisions in the package itself, so an installed ctid can migrate."""
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    package = Path(ctid.adapters.store.__file__).parent
    assert Path(scripts.dir).resolve() == (package / "migrations").resolve()
    assert migrate.head_revision() == "0005"


def test_upgrade_creates_the_schema_in_an_empty_database(empty_url):
    """``upgrade(url)`` on an empty database creates exactly the tables of ``schema.metadata``."""
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url, pool_size=1)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()
    assert schema_differences(empty_url) == []


def test_upgrade_twice_is_a_no_op_and_downgrade_empties(empty_url):
    """Migrating an up-to-date database changes nothing; downgrading to base drops ctid's tables."""
    migrate.upgrade(empty_url)
    migrate.upgrade(empty_url)
    command.downgrade(migrate.alembic_config(empty_url), "base")
    engine = make_engine(empty_url, pool_size=1)
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        assert migrate.current_revision(engine) is None
    finally:
        engine.dispose()


def test_mysql_tables_are_innodb_utf8mb4_binary(mysql_url):
    """On MySQL the tables are InnoDB with utf8mb4_bin, so ids compare exactly as on SQLite."""
    migrate.upgrade(mysql_url)
    engine = make_engine(mysql_url, pool_size=1)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT table_name, engine, table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name <> 'alembic_version'")).all()
    finally:
        engine.dispose()
    assert sorted(rows) == [(name, "InnoDB", "utf8mb4_bin") for name in sorted(TABLES - {"alembic_version"})]


def test_constraints_are_enforced(empty_url):
    """Foreign keys (SQLite needs its pragma for that) and the 1..9 level check hold on both backends."""
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url, pool_size=1)
    try:
        with engine.begin() as connection:
            connection.execute(insert(agents).values(agent_id="1001", name="Li Na"))
            connection.execute(insert(skill_groups).values(name="accounts"))
        for bad in ({"agent_id": "9999", "skill_group": "accounts", "level": 1},
                    {"agent_id": "1001", "skill_group": "nosuch", "level": 1},
                    {"agent_id": "1001", "skill_group": "accounts", "level": 10}):
            # IntegrityError, or OperationalError for MariaDB's CHECK.
            with pytest.raises(DBAPIError), engine.begin() as connection:
                connection.execute(insert(agent_skills).values(**bad))
        with engine.connect() as connection:
            row = connection.execute(select(agents)).one()
        assert row.enabled is True and row.roles == "agent" and row.manages == "" and row.created_at is not None
    finally:
        engine.dispose()


# --- the pool ------------------------------------------------------------------------------------


def _whereabouts(connection, tag):
    """Runs in the pool: the thread it ran on and a query's plain result."""
    return threading.current_thread().name, threading.current_thread() is threading.main_thread(), \
        connection.execute(text("SELECT :tag"), {"tag": tag}).scalar()


@pytest_twisted.ensureDeferred
async def test_pool_runs_work_on_its_own_threads(sqlite_url):
    """``run`` calls ``fn(connection, *args)`` on one of the pool's named threads, never the reactor's."""
    pool = DatabasePool(make_engine(sqlite_url), name="store")
    pool.startService()
    try:
        name, on_main, value = await pool.run(_whereabouts, "hello")
    finally:
        await pool.stopService()
    assert not on_main and name.startswith("PoolThread-ctid-store") and value == "hello"


def _insert_group(connection, name, fail):
    """Runs in the pool: insert a skill group, then maybe raise."""
    connection.execute(insert(skill_groups).values(name=name))
    if fail:
        raise KeyError(name)
    return name


def _group_names(connection):
    """Runs in the pool: the skill groups' names (plain data)."""
    return sorted(connection.execute(select(skill_groups.c.name)).scalars())


@pytest.fixture(params=["threads", "threadless"])
def pool(request, sqlite_url):
    """A started pool of each kind on a migrated SQLite file; stopped after the test."""
    migrate.upgrade(sqlite_url)
    if request.param == "threads":
        pool = DatabasePool(make_engine(sqlite_url), min_threads=1, max_threads=2)
    else:
        pool = ThreadlessDatabasePool(make_engine(sqlite_url))
    pool.startService()
    yield pool
    if pool.running:
        pytest_twisted.blockon(pool.stopService())


@pytest_twisted.ensureDeferred
async def test_pool_commits_on_return_and_rolls_back_on_error(pool):
    """A job's writes are committed when it returns and rolled back when it raises; the error reaches the caller."""
    assert await pool.run(_insert_group, "accounts", False) == "accounts"
    with pytest.raises(KeyError):
        await pool.run(_insert_group, "complaints", True)
    assert await pool.run(_group_names) == ["accounts"]


@pytest_twisted.ensureDeferred
async def test_pool_refuses_results_bound_to_the_connection(pool):
    """A job returning a live ``Result`` fails with TypeError: jobs return plain data."""
    with pytest.raises(TypeError, match="plain data"):
        await pool.run(lambda connection: connection.execute(select(skill_groups)))


@pytest_twisted.ensureDeferred
async def test_stopped_pool_refuses_work(pool):
    """After stopService, ``run`` fails at once with DatabasePoolStopped."""
    await pool.stopService()
    with pytest.raises(DatabasePoolStopped):
        await pool.run(_group_names)


def test_threadless_pool_fires_at_once_in_the_calling_thread(sqlite_url):
    """The threadless pool runs the job before ``run`` returns, in the caller's thread (for unit tests)."""
    pool = ThreadlessDatabasePool(make_engine(sqlite_url))
    pool.startService()
    results = []
    pool.run(_whereabouts, "now").addCallback(results.append)
    pool.stopService()
    assert results == [("MainThread", True, "now")]


@pytest_twisted.ensureDeferred
async def test_pool_is_bounded_and_stop_waits_for_submitted_work(sqlite_url):
    """At most ``max_threads`` jobs run at once; stopping lets queued jobs finish, joins the threads, then fires."""
    pool = DatabasePool(make_engine(sqlite_url), name="bounded", min_threads=0, max_threads=2)
    pool.startService()
    lock, active, peak = threading.Lock(), [0], [0]

    def job(connection, n):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return n

    results = [pool.run(job, n) for n in range(6)]
    finished = []
    for d in results:
        d.addCallback(finished.append)
    await pool.stopService()
    assert sorted(finished) == list(range(6)) and peak[0] == 2
    assert not [t for t in threading.enumerate() if t.name.startswith("PoolThread-ctid-bounded")]


@pytest_twisted.ensureDeferred
async def test_migrations_run_inside_a_pool_job(sqlite_url):
    """``pool.run(upgrade_connection)`` migrates off the reactor: what the daemon does at start-up."""
    pool = DatabasePool(make_engine(sqlite_url))
    pool.startService()
    try:
        await pool.run(migrate.upgrade_connection)
        revision = await pool.run(migrate.current_revision)
    finally:
        await pool.stopService()
    assert revision == migrate.head_revision()
