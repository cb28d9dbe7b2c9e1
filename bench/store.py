"""Records write-behind benchmark: records written per second, and what the writer costs routing.

Run: ``.venv/bin/python bench/store.py`` (a few minutes; ``--seconds N``, ``--rate CALLS_PER_S``,
``--rounds N``, ``--backends sqlite,mysql``, ``--pool process,thread``; MySQL/MariaDB from
``CTID_TEST_MYSQL_URL``, default root@127.0.0.1:3306).

Calls arrive as they do in the daemon, over a socket: a separate *caller*
process sends one line per call, ``--rate`` calls per second, each stamped
with the system's monotonic clock when sent.  The reactor reads them and
routes each through an :class:`ctid.acd.ACD` (one queue, 500 agents; the
call is offered to an agent, who becomes available again).  The *routing
latency* of a call is from the stamp to the moment its offer is made, so
anything that holds up the reactor — the writer's work on the reactor
thread, or a database thread holding the GIL the reactor needs — shows in
it, and the reactor's timer granularity (about 1 ms) does not: nothing
waits on a timer.

Each routed call also writes the records a real call leaves — 1 call
record, 2 legs, 3 queue events, 5 agent stretches: 11 records — through a
:class:`RecordWriter` on a fresh migrated database, its database work in a
child process (``--pool process``, :class:`ProcessDatabasePool`, what the
daemon uses) or on a thread (``--pool thread``, :class:`DatabasePool`, for
comparison).  Every round runs once without and once with the writer; the
machine may be shared, so the figures printed are the best (lowest) p99 of
``--rounds`` rounds of each.  Printed per backend and pool: records written
per second (committed during the loaded runs ÷ their length), whether the
writer kept up (nothing spooled, queue drained within 2 s of a run's end), routing p50/p99 without
and with the writer, and MET / NOT MET for the target: records for 1,000
calls/s written with routing p99 changed by less than 10 %.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, ensureDeferred  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from ctid.acd import ACD, AgentInfo, QueueConfig, WaitingCall  # noqa: E402
from ctid.adapters.store import migrate  # noqa: E402
from ctid.adapters.store.engine import make_engine  # noqa: E402
from ctid.adapters.store.pool import DatabasePool  # noqa: E402
from ctid.adapters.store.recordprocess import ProcessDatabasePool  # noqa: E402
from ctid.adapters.store.testing import MySQLUnavailable, temporary_mysql_database  # noqa: E402
from ctid.adapters.store.writer import RecordWriter  # noqa: E402

AGENTS = 500
STATES = ("ready", "reserved", "ringing", "talking", "wrap_up")


def call_records(writer: RecordWriter, n: int, now: float) -> None:
    """The 11 records one routed call leaves."""
    call_id, agent = f"17000.{n}", str(1000 + n % AGENTS)
    writer.write("call_records", {
        "call_id": call_id, "ani": "13800138000", "dnis": "95566", "trunk": "PJSIP/trunk", "queue": "general",
        "agent_id": agent, "arrived_at": now - 40, "queued_at": now - 30, "answered_at": now - 25, "ended_at": now,
        "wait_s": 5.0, "talk_s": 25.0, "hold_s": 0.0, "wrap_up_s": 3.0, "hangup_side": "caller",
        "hangup_cause": 16, "ivr_path": "main>balance", "self_service": False, "abandoned": False})
    for leg in (1, 2):
        writer.write("call_legs", {"call_id": call_id, "uniqueid": f"{call_id}{leg}", "channel": f"PJSIP/x-{leg}",
                                   "joined_at": now - 40, "answered_at": now - 25, "left_at": now,
                                   "hangup_cause": 16})
    for kind in ("enqueue", "offer", "answer"):
        writer.write("queue_events", {"at": now, "queue": "general", "call_id": call_id, "kind": kind,
                                      "agent_id": agent, "wait_s": 5.0})
    for state in STATES:
        writer.write("agent_state_log", {"agent_id": agent, "state": state, "entered_by": "x", "left_by": "y",
                                         "call_id": call_id, "started_at": now - 5, "ended_at": now,
                                         "duration_s": 5.0})


def caller(path: str, rate: int, seconds: float) -> None:
    """The caller process: connect to ``path`` and send ``rate`` stamped calls a second for ``seconds``."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        start = time.monotonic()
        for n in range(int(rate * seconds)):
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.sendall(b"%d %.9f\n" % (n, time.monotonic()))


class Router(Protocol):
    """Reads stamped calls and routes each at once, noting its latency (and writing its records)."""

    def __init__(self, acd: ACD, writer: RecordWriter | None, latencies: list[float], done: Deferred):
        self.acd, self.writer, self.latencies, self.done = acd, writer, latencies, done
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        """Route every complete line."""
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            number, stamp = line.split()
            n = int(number)
            offer = self.acd.enqueue(WaitingCall(f"c{n}", "general", caller="13800138000"))
            self.latencies.append(time.monotonic() - float(stamp))
            if offer is not None:
                self.acd.agent_available(AgentInfo(offer.agent_id, {"accounts": 5}, "", reactor.seconds()))
            if self.writer is not None:
                call_records(self.writer, n, reactor.seconds())

    def connectionLost(self, reason: object = None) -> None:
        """The caller is done."""
        self.done.callback(None)


async def run(rate: int, seconds: float, writer: RecordWriter | None) -> tuple[list[float], float]:
    """Route ``rate`` calls/s from a caller process for ``seconds``; returns the latencies (s) and the run's length."""
    acd = ACD([QueueConfig("general", "accounts")], reactor)
    for a in range(AGENTS):
        acd.agent_available(AgentInfo(str(1000 + a), {"accounts": 5}, "", reactor.seconds()))
    latencies: list[float] = []
    done: Deferred[None] = Deferred()
    path = str(Path(tempfile.mkdtemp()) / "calls.sock")
    port = reactor.listenUNIX(path, Factory.forProtocol(lambda: Router(acd, writer, latencies, done)))
    process = multiprocessing.get_context("spawn").Process(target=caller, args=(path, rate, seconds))
    started = time.monotonic()
    process.start()
    await done
    length = time.monotonic() - started
    await port.stopListening()
    process.join()
    return latencies, length


@dataclass
class Figures:
    """What the rounds of one backend and pool measured."""

    base_p50: list[float]
    base_p99: list[float]
    loaded_p50: list[float]
    loaded_p99: list[float]
    written: int = 0
    offered: int = 0
    seconds: float = 0.0
    spooled: int = 0
    queued: int = 0


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, in µs."""
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] * 1e6


def make_pool(kind: str, url: str):
    """The writer's database pool: in a child process (the daemon's) or on a thread."""
    if kind == "process":
        return ProcessDatabasePool(url, reactor, engine_options={"pool_size": 1})
    return DatabasePool(make_engine(url, pool_size=1), reactor, name="records-db", max_threads=1)


async def backend(name: str, url: str, kind: str, args: argparse.Namespace) -> bool:
    """Measure one backend with one kind of pool; print its lines; True when the target is met."""
    migrate.upgrade(url)
    spool = Path(tempfile.mkdtemp()) / "records.spool"
    writer = RecordWriter(make_pool(kind, url), str(spool), reactor)
    writer.startService()
    figures = Figures([], [], [], [])
    for _ in range(args.rounds):
        baseline, _ = await run(args.rate, args.seconds, None)
        before = writer.stats()
        loaded, length = await run(args.rate, args.seconds, writer)
        after = writer.stats()
        for _ in range(20):  # kept up: what is queued at the end is written within a second or two
            if not writer.stats().queued:
                break
            await deferLater(reactor, 0.1, lambda: None)
        figures.queued = max(figures.queued, writer.stats().queued)
        figures.written += after.written + after.replayed - before.written - before.replayed
        figures.offered += len(loaded) * 11
        figures.seconds += length
        for values, p50, p99 in ((baseline, figures.base_p50, figures.base_p99),
                                 (loaded, figures.loaded_p50, figures.loaded_p99)):
            p50.append(quantile(values, 0.50))
            p99.append(quantile(values, 0.99))
    figures.spooled = writer.stats().spooled
    await writer.stopService()
    return report(f"{name} ({kind})", figures)


def report(label: str, f: Figures) -> bool:
    """Print one backend's figures; True when the target is met."""
    base, loaded = min(f.base_p99), min(f.loaded_p99)
    change = (loaded / base - 1) * 100
    kept_up = f.spooled == 0 and f.queued == 0
    met = kept_up and change < 10.0
    print(f"{label:19} {f.written / f.seconds:9,.0f} rec/s  ({f.written:,} of {f.offered:,} records committed during"
          f" the runs; spooled {f.spooled}, still queued 2 s after a run {f.queued})")
    print(f"{'':19} routing p50 {min(f.base_p50):7.0f} µs → {min(f.loaded_p50):7.0f} µs   p99 {base:7.0f} µs →"
          f" {loaded:7.0f} µs  ({change:+.1f} %)  [p99 per round: {', '.join(f'{v:.0f}' for v in f.base_p99)} →"
          f" {', '.join(f'{v:.0f}' for v in f.loaded_p99)}]")
    print(f"{'':19} {'MET' if met else 'NOT MET'}")
    return met


async def main(args: argparse.Namespace) -> None:
    """Every backend with every pool kind asked for."""
    print(f"{args.rate} calls/s × 11 records = {args.rate * 11:,} records/s offered, {args.seconds:.0f} s per run,"
          f" {args.rounds} rounds (best p99 of each)")
    for kind in args.pool.split(","):
        for name in args.backends.split(","):
            if name == "sqlite":
                await backend("SQLite", f"sqlite:///{tempfile.mkdtemp()}/ctid.db", kind, args)
                continue
            try:
                with temporary_mysql_database() as url:
                    await backend("MariaDB", str(url.render_as_string(hide_password=False)), kind, args)
            except MySQLUnavailable as e:
                print(f"MariaDB skipped: {e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,mysql")
    parser.add_argument("--pool", default="process,thread")
    arguments = parser.parse_args()
    gc.freeze()
    reactor.callWhenRunning(lambda: ensureDeferred(main(arguments)).addBoth(
        lambda r: (r.printTraceback() if hasattr(r, "printTraceback") else None, reactor.stop())))
    reactor.run()
