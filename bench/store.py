"""Records write-behind benchmark: records written per second, and what the writer costs routing.

Run: ``.venv/bin/python bench/store.py`` (about a minute; ``--seconds N``, ``--rate CALLS_PER_S``,
``--backends sqlite,mysql``; MySQL/MariaDB from ``CTID_TEST_MYSQL_URL``, default root@127.0.0.1:3306).

The reactor routes ``--rate`` calls per second through an :class:`ctid.acd.ACD`
(one queue, 500 agents; every 10 ms a tick enqueues the calls due, each
is offered to an agent, and the agent becomes available again):
the *routing latency* of a call is from the moment its tick was due (start + k × 10 ms) to the
moment its offer is made, so time the reactor spends elsewhere (the writer's
work on the reactor thread) shows in it.  Each routed call also writes the
records a real call leaves — 1 call record, 2 legs, 3 queue events, 5 agent
stretches: 11 records — through a :class:`RecordWriter` on a fresh migrated
database.  Printed per backend: records written per second (sustained:
committed during the run, divided by its length), whether the writer kept up
(nothing spilled to the spool, queue drained at the end), and routing p50/p99
with and without the writer.  Target: 1,000 calls/s written with routing p99
changed by less than 10 %.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, ensureDeferred  # noqa: E402

from ctid.acd import ACD, AgentInfo, QueueConfig, WaitingCall  # noqa: E402
from ctid.adapters.store import migrate  # noqa: E402
from ctid.adapters.store.engine import make_engine  # noqa: E402
from ctid.adapters.store.pool import DatabasePool  # noqa: E402
from ctid.adapters.store.testing import MySQLUnavailable, temporary_mysql_database  # noqa: E402
from ctid.adapters.store.writer import RecordWriter  # noqa: E402

TICK = 0.01
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


async def run(rate: int, seconds: float, writer: RecordWriter | None) -> tuple[list[float], float]:
    """Route ``rate`` calls/s for ``seconds``; returns the routing latencies (s) and the run's length."""
    acd = ACD([QueueConfig("general", "accounts")], reactor)
    for a in range(AGENTS):
        acd.agent_available(AgentInfo(str(1000 + a), {"accounts": 5}, "", reactor.seconds()))
    latencies: list[float] = []
    per_tick = rate * TICK
    state = {"n": 0, "owed": 0.0}
    started = time.perf_counter()
    end = reactor.seconds() + seconds
    finished: Deferred = Deferred()

    def tick(due: float) -> None:
        state["owed"] += per_tick
        while state["owed"] >= 1:
            state["owed"] -= 1
            n = state["n"] = state["n"] + 1
            offer = acd.enqueue(WaitingCall(f"c{n}", "general", caller="13800138000"))
            latencies.append(reactor.seconds() - due)
            if offer is not None:
                acd.agent_available(AgentInfo(offer.agent_id, {"accounts": 5}, "", reactor.seconds()))
            if writer is not None:
                call_records(writer, n, reactor.seconds())
        if due + TICK >= end:
            finished.callback(None)
        else:  # a late tick is followed at once by the next one: no call is skipped
            reactor.callLater(max(0.0, due + TICK - reactor.seconds()), tick, due + TICK)

    tick(reactor.seconds())
    await finished
    return latencies, time.perf_counter() - started


async def backend(name: str, url: str, rate: int, seconds: float) -> None:
    migrate.upgrade(url)
    spool = Path(tempfile.mkdtemp()) / "records.spool"
    pool = DatabasePool(make_engine(url, pool_size=1), reactor, name="records-db", max_threads=1)
    writer = RecordWriter(pool, str(spool), reactor)
    writer.startService()
    baseline, _ = await run(rate, seconds, None)
    loaded, length = await run(rate, seconds, writer)
    written = writer.stats().written + writer.stats().replayed
    stats_at_end = writer.stats()
    await writer.stopService()
    p = lambda values, q: statistics.quantiles(values, n=1000)[int(q * 10) - 1] * 1e6  # noqa: E731
    print(f"{name:7} {written / length:10,.0f} rec/s  ({written:,} of {len(loaded) * 11:,} records in {length:.1f} s;"
          f" queued at end {stats_at_end.queued}, spooled {stats_at_end.spooled})")
    p99_base, p99_loaded = p(baseline, 99), p(loaded, 99)
    print(f"        routing p50 {p(baseline, 50):7.1f} µs → {p(loaded, 50):7.1f} µs   "
          f"p99 {p99_base:7.1f} µs → {p99_loaded:7.1f} µs  ({(p99_loaded / p99_base - 1) * 100:+.1f} %)")


async def main(args: argparse.Namespace) -> None:
    print(f"{args.rate} calls/s × 11 records = {args.rate * 11:,} records/s offered, {args.seconds:.0f} s per run")
    for name in args.backends.split(","):
        if name == "sqlite":
            await backend("SQLite", f"sqlite:///{tempfile.mkdtemp()}/ctid.db", args.rate, args.seconds)
            continue
        try:
            with temporary_mysql_database() as url:
                await backend("MariaDB", str(url.render_as_string(hide_password=False)), args.rate, args.seconds)
        except MySQLUnavailable as e:
            print(f"MariaDB skipped: {e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,mysql")
    arguments = parser.parse_args()
    gc.freeze()

    def finish(result: object) -> None:
        reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(main(arguments)).addBoth(
        lambda r: (r.printTraceback() if hasattr(r, "printTraceback") else None, reactor.stop())))
    reactor.run()
