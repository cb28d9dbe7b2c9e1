"""The record writer: batches, the spool during outages and overflows, replay without loss or doubles."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from sqlalchemy import delete, func, select
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock, deferLater
from twisted.protocols.portforward import ProxyFactory

from ctid.adapters.store import migrate
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.inserts import is_bad_data
from ctid.adapters.store.pool import DatabasePool, DatabasePoolStopped, ThreadlessDatabasePool
from ctid.adapters.store.recordprocess import ProcessDatabasePool, RemoteBadData, RemoteDatabaseError
from ctid.adapters.store.schema import audit_log, queue_events
from ctid.adapters.store.spool import Record, encode
from ctid.adapters.store.testing import MySQLUnavailable, mysql_required, temporary_mysql_database
from ctid.adapters.store.writer import RecordIds, RecordWriter


@pytest.fixture
def sqlite_url(tmp_path):
    """A migrated SQLite file."""
    url = f"sqlite:///{tmp_path / 'ctid.db'}"
    migrate.upgrade(url)
    return url


def audit(n: int) -> dict:
    return {"at": 1_700_000_000 + n / 1000, "actor": "1001", "action": "login", "outcome": "ok", "detail": f"n{n}"}


def details(url: str) -> list[str]:
    """The audit rows' details in record-id order."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(select(audit_log.c.detail).order_by(audit_log.c.record_id)))
    finally:
        engine.dispose()


def threadless_writer(url, tmp_path, clock, **options) -> RecordWriter:
    return RecordWriter(ThreadlessDatabasePool(make_engine(url)), str(tmp_path / "records.spool"), clock, **options)


# --- pure bits ---------------------------------------------------------------------------------------


def test_record_ids_are_unique_and_sort_in_write_order():
    """Ids grow with every record and with the start time; two writers started together differ."""
    first, second = RecordIds(1_700_000_000.0), RecordIds(1_700_000_000.0)
    ids = [first.next() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000 and all(len(i) == 32 for i in ids)
    assert second.next() != ids[0]
    assert RecordIds(1_700_000_001.0).next() > ids[-1]


def test_unknown_tables_and_columns_are_refused_at_once(sqlite_url, tmp_path):
    """A typo in a table or column name is a ValueError for the caller, not a lost record later."""
    writer = threadless_writer(sqlite_url, tmp_path, Clock())
    with pytest.raises(ValueError, match="no record table 'audit'"):
        writer.write("audit", {})
    with pytest.raises(ValueError, match="audit_log has no column colour"):
        writer.write("audit_log", {"colour": "red"})


# --- batches on a fake clock ---------------------------------------------------------------------


def test_records_are_written_in_batches_by_size_and_by_time(sqlite_url, tmp_path):
    """A full batch is written at once; the rest when the flush interval passes; nothing before."""
    clock = Clock()
    writer = threadless_writer(sqlite_url, tmp_path, clock, batch_size=4, flush_interval=0.5)
    writer.startService()
    for n in range(6):
        writer.write("audit_log", audit(n))
    assert details(sqlite_url) == ["n0", "n1", "n2", "n3"] and writer.stats().queued == 2
    clock.advance(0.5)
    assert details(sqlite_url) == [f"n{n}" for n in range(6)]
    assert writer.stats().written == 6
    writer.stopService()


def test_times_keep_their_microseconds(sqlite_url, tmp_path):
    """Epoch seconds become UTC datetimes with microseconds."""
    writer = threadless_writer(sqlite_url, tmp_path, Clock(), batch_size=1)
    writer.startService()
    writer.write("audit_log", audit(0) | {"at": 1_700_000_000.123456})
    writer.stopService()
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        at = connection.scalar(select(audit_log.c.at))
    engine.dispose()
    assert (at.isoformat(), at.tzinfo) == ("2023-11-14T22:13:20.123456", None)


def test_an_outage_spools_and_the_retry_replays_in_order(sqlite_url, tmp_path):
    """The pool down: the failed batch and every later record go to the spool; when it is back, all arrive once."""
    clock = Clock()
    writer = threadless_writer(sqlite_url, tmp_path, clock, batch_size=2, flush_interval=0.1, retry_initial=1)
    writer.startService()
    writer.write("audit_log", audit(0))
    writer.write("audit_log", audit(1))
    writer.pool.stopService()  # the database is gone
    for n in range(2, 7):
        writer.write("audit_log", audit(n))
    clock.advance(0.1)
    stats = writer.stats()
    assert stats.spooling and stats.spooled == 5 and stats.queued == 0 and stats.failures == 1
    clock.advance(1)  # retry: still down, next in 2 s
    assert writer.stats().failures == 2
    writer.pool.startService()
    writer.write("audit_log", audit(7))
    clock.advance(2)
    stats = writer.stats()
    assert (stats.spooling, stats.replayed, stats.spool_bytes, stats.written) == (False, 6, 0, 2)
    assert details(sqlite_url) == [f"n{n}" for n in range(8)]
    assert writer.spool.path.stat().st_size == 0
    writer.stopService()


def test_replaying_records_already_committed_does_not_double_them(sqlite_url, tmp_path):
    """A spool whose records were committed before a crash (not yet emptied) is replayed without doubles."""
    clock = Clock()
    writer = threadless_writer(sqlite_url, tmp_path, clock)
    writer.startService()
    ids = [writer.write("audit_log", audit(n)) for n in range(3)]
    writer.stopService()
    spool = tmp_path / "records.spool"
    spool.write_bytes(b"".join(encode(Record(i, "audit_log", audit(n))) for n, i in enumerate(ids))
                      + encode(Record("f" * 32, "audit_log", audit(3))))
    again = threadless_writer(sqlite_url, tmp_path, clock)
    again.startService()
    assert details(sqlite_url) == ["n0", "n1", "n2", "n3"] and not again.stats().spooling
    again.stopService()


@pytest.mark.allow_logged_errors
def test_a_bad_record_is_set_aside_and_the_rest_of_its_batch_written(sqlite_url, tmp_path):
    """A row the database refuses (CHECK) goes to the .rejected file; its batch-mates are written."""
    writer = threadless_writer(sqlite_url, tmp_path, Clock(), batch_size=3)
    writer.startService()
    row = {"at": 1.5, "queue": "general", "call_id": "c1"}
    writer.write("queue_events", row | {"kind": "enqueue"})
    writer.write("queue_events", row | {"kind": "bogus"})
    writer.write("queue_events", row | {"kind": "answer"})
    writer.stopService()
    engine = make_engine(sqlite_url)
    with engine.begin() as connection:
        kinds = list(connection.scalars(select(queue_events.c.kind).order_by(queue_events.c.record_id)))
        connection.execute(delete(queue_events))
    engine.dispose()
    assert kinds == ["enqueue", "answer"] and writer.stats().rejected == 1
    rejected = [json.loads(line) for line in (tmp_path / "records.spool.rejected").read_text().splitlines()]
    assert [(r["row"]["kind"], "CHECK" in r["error"]) for r in rejected] == [("bogus", True)]


def test_records_written_while_stopped_are_spooled_and_replayed_at_the_next_start(sqlite_url, tmp_path):
    """Stopping flushes the queue; later records (calls ending during shutdown) wait in the spool."""
    clock = Clock()
    writer = threadless_writer(sqlite_url, tmp_path, clock)
    writer.startService()
    writer.write("audit_log", audit(0))
    writer.stopService()
    assert details(sqlite_url) == ["n0"]
    writer.write("audit_log", audit(1))
    assert writer.stats().spooled == 1
    writer.pool = ThreadlessDatabasePool(make_engine(sqlite_url))
    writer.startService()
    assert details(sqlite_url) == ["n0", "n1"]
    writer.stopService()


# --- real threads ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_overflow_spills_the_batch_in_flight_without_doubling_it(sqlite_url, tmp_path):
    """Past max_queue the queue and the batch in flight go to the spool; the batch commits once all the same."""
    pool = DatabasePool(make_engine(sqlite_url), reactor, name="records", max_threads=1)
    writer = RecordWriter(pool, str(tmp_path / "records.spool"), reactor, batch_size=50, max_queue=100)
    writer.startService()
    for n in range(400):  # the first batch is in flight on the pool's thread while the rest pile up
        writer.write("audit_log", audit(n))
    stats = writer.stats()
    assert stats.spooling and stats.spooled >= 350
    await wait_until(lambda: not writer.stats().spooling)
    await writer.stopService()
    assert details(sqlite_url) == [f"n{n}" for n in range(400)]


async def wait_until(condition, timeout: float = 30.0) -> None:
    """Let the reactor run until ``condition()`` holds (fail after ``timeout`` seconds)."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await deferLater(reactor, 0.02)
    raise AssertionError("condition not met in time")


class CutProxy:
    """A TCP proxy on loopback that can be cut (listener closed, connections dropped) and restored."""

    def __init__(self, host: str, port: int):
        self.factory = ProxyFactory(host, port)
        self.connections: list = []
        self.port = None
        self.number = 0
        original = self.factory.buildProtocol

        def build(address):
            protocol = original(address)
            self.connections.append(protocol)
            return protocol

        self.factory.buildProtocol = build

    def start(self) -> None:
        self.port = reactor.listenTCP(self.number, self.factory, interface="127.0.0.1")
        self.number = self.port.getHost().port

    async def cut(self) -> None:
        await self.port.stopListening()
        for protocol in self.connections:
            if protocol.transport is not None:
                protocol.transport.abortConnection()
        self.connections.clear()


Factory.noisy = False


@pytest.fixture
def mysql_url():
    """A new, migrated MariaDB database (skipped without one, failed under CI)."""
    try:
        with temporary_mysql_database() as url:
            migrate.upgrade(url)
            yield url
    except MySQLUnavailable as e:
        if mysql_required():
            pytest.fail(f"CTID_REQUIRE_MYSQL=1 but {e}")
        pytest.skip(str(e))


@pytest.mark.parametrize("kind", ["thread", "process"])
@pytest_twisted.ensureDeferred
async def test_mariadb_cut_mid_traffic_loses_nothing_doubles_nothing_keeps_order(mysql_url, tmp_path, kind):
    """Records keep coming while the link to MariaDB is cut and restored: every one arrives once, in order.

    Both with the database work on a thread and in the writer's database process (the daemon's).
    """
    from sqlalchemy.engine import make_url

    target = make_url(mysql_url)
    proxy = CutProxy(target.host, target.port or 3306)
    proxy.start()
    url = target.set(host="127.0.0.1", port=proxy.number)
    options = dict(pool_size=2, connect_timeout=2, read_timeout=5, write_timeout=5)
    pool = (DatabasePool(make_engine(url, **options), reactor, name="records", max_threads=2) if kind == "thread" else
            ProcessDatabasePool(url.render_as_string(hide_password=False), reactor, engine_options=options))
    writer = RecordWriter(pool, str(tmp_path / "records.spool"), reactor, batch_size=20, flush_interval=0.02,
                          retry_initial=0.05, retry_max=0.2)
    writer.startService()
    n = 0

    async def traffic(count: int) -> None:
        nonlocal n
        for _ in range(count):
            writer.write("audit_log", audit(n))
            n += 1
            if n % 10 == 0:
                await deferLater(reactor, 0.005)

    await traffic(300)
    await proxy.cut()
    await traffic(300)
    await wait_until(lambda: writer.stats().spooling)
    await traffic(200)
    assert writer.stats().spooling
    proxy.start()
    await traffic(200)
    await wait_until(lambda: not writer.stats().spooling and writer.stats().queued == 0)
    stats = writer.stats()
    await writer.stopService()
    assert details(str(mysql_url)) == [f"n{i}" for i in range(1000)]
    assert stats.spooled > 0 and stats.failures > 0 and stats.rejected == stats.lost == 0
    assert stats.written + stats.replayed >= 1000
    await proxy.cut()


def test_the_writer_is_a_service_named_records(sqlite_url, tmp_path):
    """The daemon finds it by name."""
    assert threadless_writer(sqlite_url, tmp_path, Clock()).name == "records"


@pytest_twisted.ensureDeferred
async def test_stopping_waits_for_the_batch_in_flight(sqlite_url, tmp_path):
    """stopService fires after the last batch committed, with nothing left queued or spooled."""
    pool = DatabasePool(make_engine(sqlite_url), reactor, name="records", max_threads=1)
    writer = RecordWriter(pool, str(tmp_path / "records.spool"), reactor, batch_size=10)
    writer.startService()
    for n in range(25):
        writer.write("audit_log", audit(n))
    done: Deferred = writer.stopService()
    await done
    assert details(sqlite_url) == [f"n{n}" for n in range(25)] and writer.stats().spooled == 0
    assert not pool.running



# --- the writer's database process ---------------------------------------------------------------


def process_id(connection, number: int) -> tuple[int, int]:
    """Run in the pool: (this process's id, ``number`` + rows in audit_log)."""
    import os

    return os.getpid(), number + connection.scalar(select(func.count()).select_from(audit_log))


def die(connection) -> None:
    """Run in the pool: the child process dies in the middle of the work."""
    import os

    os._exit(3)


def insert_bad_row(connection) -> None:
    """Run in the pool: an audit row without its required columns (refused by the database)."""
    connection.execute(audit_log.insert().values(record_id="bad"))


def echo_lengths(connection, items: list, pairs: tuple) -> tuple[int, int, str, str]:
    """Run in the pool: what arrived of two long arguments (sent in slices)."""
    return len(items), len(pairs), type(items).__name__, type(pairs).__name__


@pytest_twisted.ensureDeferred
async def test_process_pool_runs_work_in_a_child_process_and_restarts_it(sqlite_url):
    """Work runs in another process, long arguments arrive whole; a dead child fails its call and is replaced."""
    import os
    import signal

    pool = ProcessDatabasePool(sqlite_url, reactor)
    pool.startService()
    try:
        pid, value = await pool.run(process_id, 5)
        assert pid != os.getpid() and value == 5 and pool.child_pid == pid
        assert await pool.run(echo_lengths, list(range(1000)), tuple(range(130))) == (1000, 130, "list", "tuple")
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: pool.child_pid is None)
        second, _ = await pool.run(process_id, 0)
        assert second not in (pid, os.getpid())
        with pytest.raises(RemoteDatabaseError, match="went away"):
            await pool.run(die)
        third, _ = await pool.run(process_id, 0)
        assert third not in (pid, second)
    finally:
        await pool.stopService()
    assert pool.child_pid is None
    with pytest.raises(DatabasePoolStopped):
        await pool.run(process_id, 0)


@pytest_twisted.ensureDeferred
async def test_process_pool_tells_bad_rows_from_an_unreachable_database(sqlite_url, tmp_path):
    """A refused row comes back as bad data (set aside by the writer); a database that cannot open, as an outage."""
    pool = ProcessDatabasePool(sqlite_url, reactor)
    unreachable = ProcessDatabasePool(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}", reactor)
    pool.startService()
    unreachable.startService()
    try:
        with pytest.raises(RemoteBadData) as bad:
            await pool.run(insert_bad_row)
        assert is_bad_data(bad.value) and "IntegrityError" in str(bad.value)
        with pytest.raises(RemoteDatabaseError) as down:
            await unreachable.run(process_id, 0)
        assert not is_bad_data(down.value)
    finally:
        await pool.stopService()
        await unreachable.stopService()


@pytest_twisted.ensureDeferred
async def test_writer_with_its_database_process_writes_everything_in_order(sqlite_url, tmp_path):
    """The daemon's arrangement: records written behind by the child process, all of them, in order, once."""
    writer = RecordWriter(ProcessDatabasePool(sqlite_url, reactor), str(tmp_path / "records.spool"), reactor,
                          batch_size=100, flush_interval=0.05)
    writer.startService()
    for n in range(1000):
        writer.write("audit_log", audit(n))
    await wait_until(lambda: writer.stats().written == 1000)
    await writer.stopService()
    assert details(sqlite_url) == [f"n{n}" for n in range(1000)]
    assert writer.stats().spooled == 0
