"""IVR benchmark: FastAGI sessions through ctid's IVR engine, with a sandbox-bank query each.

Run: ``.venv/bin/python bench/ivr.py [--sessions N] [--parallel C] [--hold H]``.

ctid's real :class:`~ctid.protocols.fastagi.FastAGIFactory` serves a bench
flow through the real :class:`~ctid.ivr.engine.IVREngine` on 127.0.0.1: the
engine answers (ANSWER), plays a prompt (STREAM FILE), reads a key (GET
DATA), asks the sandbox bank for its interest rates (SQLite on the bank's
thread pool), hands over (STREAM FILE, SET VARIABLE ×4) and the bench's
script then hangs up (HANGUP).  A pool of FastAGI clients in the same process and
reactor plays Asterisk: it sends the ``agi_`` block and answers each command
at once.  It reports:

1. **New sessions/s**: ``--sessions`` sessions, ``--parallel`` in flight.
2. **Per-command overhead**: with one session at a time, for every command
   after the first, the time from the client writing its reply to the next
   command arriving (ctid's work plus loopback; the bank query is excluded,
   it is timed on its own); and the same gap under the throughput load.
3. **Concurrent sessions held**: ``--hold`` sessions opened together, each
   kept waiting in GET DATA until all are in; the engine's running calls are
   counted, then all are released.

The clients share the one core with the server, so the figures are a floor.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver

from ctid.adapters.corebank.sandbox import SandboxBank
from ctid.adapters.corebank.sandbox_data import seed_bank
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import DatabasePool
from ctid.ivr.call import IVRHooks
from ctid.ivr.engine import IVREngine
from ctid.ivr.loader import load_library
from ctid.protocols.fastagi import FastAGIFactory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOW = """
flow: bench
start: greet
agent: agent
nodes:
  greet: {type: prompt, prompt: choose-language, next: key}
  key: {type: input, prompt: main-menu, store: choice, max: 1, terminator: "", next: rates}
  rates:
    type: operation
    op: interest_rates
    outcomes: {ok: agent}
    default: agent
  agent: {type: transfer, prompt: transferring-to-agent, queue: general}
"""
KEY = "bench-sandbox-key-0123456"


class FakeAsterisk(LineOnlyReceiver):
    """One AGI() call: the env block, then an immediate reply to each command; GET DATA may be held."""

    delimiter = b"\n"

    def connectionMade(self) -> None:
        self.factory.opened += 1
        n = self.factory.opened
        env = ["agi_network_script: bench", f"agi_channel: PJSIP/trunk-{n:08x}", f"agi_uniqueid: {n}.0",
               "agi_callerid: 13800138000", "agi_dnid: 95566", ""]
        self.transport.write("".join(line + "\n" for line in env).encode())
        self.replied = None

    def lineReceived(self, line: bytes) -> None:
        now = time.perf_counter()
        if self.replied is not None and not line.startswith(b"GET DATA"):
            self.factory.gaps.append(now - self.replied)
        if line.startswith(b"GET DATA") and self.factory.hold is not None:
            self.factory.holding.append(self)
            if len(self.factory.holding) == self.factory.hold_count:
                self.factory.hold.callback(None)
            return
        self.reply(line)

    def reply(self, line: bytes) -> None:
        answer = b"200 result=1\n" if line.startswith((b"GET DATA", b"HANGUP", b"SET")) else b"200 result=0\n"
        self.transport.write(answer)
        # After GET DATA the flow asks the bank: that gap is the bank's, not a command's overhead.
        self.replied = None if line.startswith(b"GET DATA") else time.perf_counter()

    def connectionLost(self, reason: object) -> None:
        self.factory.closed += 1
        waiter = self.factory.done.pop(0) if self.factory.done else None
        if waiter is not None:
            waiter.callback(None)


class Pool(Factory):
    protocol = FakeAsterisk

    def __init__(self) -> None:
        self.opened = self.closed = 0
        self.gaps: list[float] = []
        self.done: list[Deferred] = []
        self.hold: Deferred | None = None
        self.hold_count = 0
        self.holding: list[FakeAsterisk] = []


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def one_session(endpoint, pool: Pool) -> None:
    ended: Deferred = Deferred()
    pool.done.append(ended)
    await endpoint.connect(pool)
    await ended


async def throughput(endpoint, pool: Pool, sessions: int, parallel: int) -> float:
    started = time.perf_counter()
    remaining = [sessions]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await one_session(endpoint, pool)

    await Deferred.fromCoroutine(_gather([worker() for _ in range(parallel)]))
    return sessions / (time.perf_counter() - started)


async def _gather(coroutines) -> None:
    from twisted.internet.defer import gatherResults

    await gatherResults([Deferred.fromCoroutine(c) for c in coroutines], consumeErrors=True)


async def held(endpoint, pool: Pool, engine: IVREngine, count: int) -> int:
    pool.hold, pool.hold_count, pool.holding = Deferred(), count, []
    connecting = [endpoint.connect(pool) for _ in range(count)]
    for d in connecting:
        d.addErrback(lambda failure: print("connect failed:", failure.getErrorMessage()))
    await pool.hold
    running = len(engine.calls)
    pool.hold, waiting = None, []
    for client in pool.holding:
        ended: Deferred = Deferred()
        pool.done.append(ended)
        waiting.append(ended)
        client.reply(b"GET DATA")
    for d in waiting:
        await d
    return running


async def main(args) -> None:
    folder = tempfile.mkdtemp(prefix="ctid-bench-ivr-")
    with open(os.path.join(folder, "bench.yaml"), "w") as f:
        f.write(FLOW)
    library = load_library(folder, os.path.join(ROOT, "conf", "prompts", "manifest.yaml"))
    bank_pool = DatabasePool(make_engine(f"sqlite:///{folder}/bank.sqlite"), reactor, name="bank-db", max_threads=4)
    bank_pool.startService()
    bank = SandboxBank(bank_pool, KEY, reactor)
    await bank.create_tables()
    await bank_pool.run(seed_bank, KEY, 1, 0, None, 16)
    queried = time.perf_counter()
    for _ in range(200):
        await bank.interest_rates()
    bank_ms = (time.perf_counter() - queried) / 200 * 1000
    engine = IVREngine(library, bank, reactor, hooks=IVRHooks(lambda end: None, lambda m: None, lambda f: None))
    factory = FastAGIFactory.for_scripts({}, clock=reactor, command_timeout=30)
    engine.serve(factory.handler)

    async def then_hang_up(session) -> None:
        await engine.run("bench", session)
        await session.hangup()

    factory.handler.routes["bench"] = then_hang_up
    port = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=4096)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port, timeout=30)
    pool = Pool()
    await throughput(endpoint, pool, min(500, args.sessions), args.parallel)  # warm-up
    rate = await throughput(endpoint, pool, args.sessions, args.parallel)
    loaded, pool.gaps = pool.gaps, []
    await throughput(endpoint, pool, 1000, 1)
    gaps = pool.gaps
    print(f"sandbox bank interest_rates query: {bank_ms:.2f} ms each (SQLite, pool threads)")
    print(f"new sessions/s: {rate:,.0f} ({args.sessions} sessions, {args.parallel} in flight; "
          "9 commands + a bank query each)")
    print(f"per-command overhead, one session at a time: p50 {percentile(gaps, 0.5) * 1e3:.3f} ms, "
          f"p99 {percentile(gaps, 0.99) * 1e3:.3f} ms over {len(gaps):,} commands")
    print(f"command turnaround under the throughput load: p50 {percentile(loaded, 0.5) * 1e3:.1f} ms, "
          f"p99 {percentile(loaded, 0.99) * 1e3:.1f} ms (queueing behind {args.parallel} sessions)")
    running = await held(endpoint, pool, engine, args.hold)
    print(f"concurrent sessions held: {running:,} (asked for {args.hold:,}), all released and closed")
    port.stopListening()
    await bank_pool.stopService()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--parallel", type=int, default=200)
    parser.add_argument("--hold", type=int, default=9_000)
    options = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if 2 * options.hold + 100 > hard:
        options.hold = (hard - 100) // 2
        print(f"note: RLIMIT_NOFILE {hard} allows {options.hold} held sessions (client and server in one process)")

    def run() -> None:
        d = Deferred.fromCoroutine(main(options))
        d.addErrback(lambda failure: failure.printTraceback())
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
