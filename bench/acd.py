"""ACD routing benchmark: decisions per second, decision latency, and agent-idle → Redirect latency.

Run: ``.venv/bin/python bench/acd.py`` (about a minute; options: ``--decisions N``,
``--sizes 1000,10000,50000``, ``--strategies a,b``, ``--breakdown``, ``--no-gc``, ``--no-freeze``,
``--redirects N``, ``--redirect-sizes 10000``).

**Decisions.**  For each agent population (1,000 / 10,000 / 50,000 logged-in
agents) and each strategy (all 100 queues on one strategy, then ``mixed``:
the seven spread over the queues), the benchmark builds an
:class:`ctid.acd.ACD` with 20 skill groups and 100 queues (5 per group; one
in five with local preference and a 20 s overflow, one in five with
``min_level`` 3), agents with 3 skills (levels 1–9) in 10 cities, a VIP rule
on IVR data and a VIP number list (5 % of calls are VIP).  Every agent has
been ready once and then paused (the morning's logins: the ACD knows them).
It then runs on a fake clock advancing 5 ms per step:

* a call arrives in a random queue (``enqueue``), or a random busy agent
  becomes available again with updated figures (``agent_available``), half
  and half — but a call arrives whenever more than 1 % of the agents are
  idle, and an agent comes back whenever more than 0.5 % of the agent count
  (20 at least) calls wait: a loaded centre near the balance point, where
  both kinds of decision happen;
* 1 %: a caller abandons; 1 %: an agent pauses (``agent_unavailable``,
  back later with ``agent_available``); every simulated second, ``tick``.

A *decision* is one offer made.  Every ACD call is timed with
``time.perf_counter_ns``; the table shows

* ``dec/s``: decisions / total time spent inside all ACD calls (including
  those that made no decision: filing an agent with no call to take, queueing
  a call with no agent, abandons, pauses, ticks) — the end-to-end cost;
* ``dec/s (deciding calls)``: decisions / time inside the calls that made one
  — the figure the target (≥ 250,000/s at 10,000 agents) is judged on;
* p50 / p99 / p99.9 latency of the calls that made a decision (µs; target:
  p99 < 10 µs at 10,000 agents);
* ``by agent``: the share of decisions made when an agent became available.

**Agent idle → Redirect written.**  The real :class:`ctid.center.CallCenter`
with the real :class:`ctid.agents.AgentBoard`, ACD (``longest_idle``, same
queues), :class:`ctid.adapters.asterisk.AsteriskPBX` and
:class:`ctid.protocols.ami.AMIProtocol`, logging at ``info`` as JSON (to
``/dev/null``) like the daemon.  The protocol's transport is an in-memory
switch that answers every action at once (the switch's own round trips are
not counted).  With every agent logged in and not ready, each sample queues
a call (as the centre does for a parked caller) in a queue of a random
agent's skill, then times ``board.ready(agent)`` until the ``Redirect``
action's bytes are written (after the two ``Setvar`` actions and their
responses); the agent then rings, answers and hangs up (wrap-up).  Target:
p99 under 1 ms.

Setup objects are frozen out of the garbage collector (``gc.freeze()``) after
setup unless ``--no-freeze``, as the daemon does once the reactor runs.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from ctid.acd import ACD, STRATEGIES, AgentInfo, CityTable, Offer, PriorityRule, QueueConfig, WaitingCall  # noqa: E402
from ctid.adapters.asterisk import AsteriskPBX  # noqa: E402
from ctid.agents import AgentBoard  # noqa: E402
from ctid.calls import CallModel  # noqa: E402
from ctid.center import CallCenter  # noqa: E402
from ctid.delivery import Delivery  # noqa: E402
from ctid.logs import JSONLogService  # noqa: E402
from ctid.protocols.ami import AMIProtocol, EventDispatcher  # noqa: E402

GROUPS, SKILLS_PER_AGENT, QUEUES, VIP_SHARE = 20, 3, 100, 0.05
CITIES = {"021": "Shanghai", "010": "Beijing", "020": "Guangzhou", "0755": "Shenzhen", "0571": "Hangzhou",
          "025": "Nanjing", "027": "Wuhan", "028": "Chengdu", "029": "Xian", "023": "Chongqing"}
TARGET_AGENTS, TARGET_RATE, TARGET_P99_US, TARGET_REDIRECT_P99_US = 10_000, 250_000, 10.0, 1000.0


class FakeClock:
    """A settable clock whose ``seconds()`` is a C-level call, like the reactor's ``time.time``."""

    def __init__(self) -> None:
        self.now = 0.0
        self.seconds = functools.partial(getattr, self, "now")


def queue_configs(strategy: str) -> list[QueueConfig]:
    """100 queues, 5 per skill group; ``mixed`` spreads the strategies over them."""
    names = list(STRATEGIES)
    configs = []
    for i in range(QUEUES):
        kind = i // GROUPS  # 0..4: the five queues of a group
        configs.append(QueueConfig(
            name=f"q{i}", group=f"g{i % GROUPS}", strategy=names[i % len(names)] if strategy == "mixed" else strategy,
            min_level=3 if kind == 1 else 1, local_preference=kind == 2, overflow_after=20.0 if kind == 2 else None))
    return configs


def make_agents(n: int, rng: random.Random) -> list[AgentInfo]:
    """``n`` agents with 3 distinct skills each, levels 1..9, spread over the cities."""
    cities = list(CITIES.values())
    agents = []
    for i in range(n):
        skills = {f"g{g}": rng.randint(1, 9) for g in rng.sample(range(GROUPS), SKILLS_PER_AGENT)}
        agents.append(AgentInfo(f"A{i:05d}", skills, rng.choice(cities), idle_since=-rng.random() * 600,
                                answered=rng.randrange(60), talk_time_total=rng.random() * 10_000,
                                idle_time_total=rng.random() * 5_000, idle_periods=rng.randrange(1, 60)))
    return agents


class Meter:
    """Times ACD calls: totals, per kind, and the latency of each call that made offers."""

    def __init__(self) -> None:
        self.made = self.total_ns = self.deciding_ns = self.by_agent = 0
        self.latencies: list[int] = []
        self.kinds: dict[str, list[int]] = {}

    def record(self, kind: str, ns: int, offers: int) -> None:
        """One ACD call of ``kind`` took ``ns`` and made ``offers`` offers."""
        self.total_ns += ns
        entry = self.kinds.setdefault(kind + ("->offer" if offers else ""), [0, 0])
        entry[0] += 1
        entry[1] += ns
        if offers:
            self.made += offers
            self.deciding_ns += ns
            self.latencies.append(ns // offers)

    def row(self) -> dict:
        """The figures of one table row."""
        lat = sorted(self.latencies)
        return {"rate": self.made / (self.total_ns / 1e9), "deciding": self.made / (self.deciding_ns / 1e9),
                "p50": percentile(lat, 0.50), "p99": percentile(lat, 0.99), "p999": percentile(lat, 0.999),
                "by_agent": self.by_agent / self.made,
                "breakdown": {k: (c, ns / c / 1000) for k, (c, ns) in sorted(self.kinds.items())}}


def percentile(ordered: list[int], p: float) -> float:
    """The ``p`` quantile of nanosecond figures (sorted), in µs."""
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] / 1000


class Centre:
    """The simulated call centre driving the ACD; every ACD call goes through :meth:`timed`."""

    def __init__(self, n: int, strategy: str, seed: int = 1):
        self.rng = rng = random.Random(seed)
        self.clock = FakeClock()
        self.vip_numbers = [f"139{rng.randrange(10**8):08d}" for _ in range(1000)]
        rules = [PriorityRule(10, data=(("customer_class", "vip"),)),
                 PriorityRule(5, numbers=frozenset(self.vip_numbers))]
        self.acd = ACD(queue_configs(strategy), self.clock, rules=rules, cities=CityTable(CITIES))
        self.n, self.agents = n, make_agents(n, rng)
        self.info = {a.agent_id: a for a in self.agents}
        self.busy = [a.agent_id for a in self.agents]  # not available to the ACD: on a call, or paused
        rng.shuffle(self.busy)
        self.busy_set = set(self.busy)
        self.idle_target, self.waiting_target = max(20, n // 100), max(20, n // 200)
        self.waiting, self.recent, self.seq = 0, [], 0
        self.meter = Meter()
        for info in self.agents:  # the morning's logins: every agent was ready once, then paused
            self.acd.agent_available(info)
            self.acd.agent_unavailable(info.agent_id)
        for _ in range(self.idle_target):  # 1 % of the agents available to start with
            self.release()
        self.meter = Meter()

    def timed(self, kind: str, call, *args) -> list[Offer]:
        """Run one ACD call, time it, note the offers (their agents are now busy)."""
        t0 = time.perf_counter_ns()
        result = call(*args)
        ns = time.perf_counter_ns() - t0
        offers = result if isinstance(result, list) else [result] if isinstance(result, Offer) else []
        self.meter.record(kind, ns, len(offers))
        for offer in offers:
            self.busy.append(offer.agent_id)
            self.busy_set.add(offer.agent_id)
        return offers

    def arrive(self) -> None:
        """A call arrives in a random queue; 5 % are VIP (by number or IVR data)."""
        rng, self.seq = self.rng, self.seq + 1
        vip = rng.random() < VIP_SHARE
        if vip and self.seq % 2:
            caller, data = rng.choice(self.vip_numbers), {}
        else:
            caller = rng.choice(list(CITIES)) + f"{rng.randrange(10**8):08d}"
            data = {"customer_class": "vip"} if vip else {}
        call = WaitingCall(f"c{self.seq}", f"q{rng.randrange(QUEUES)}", caller, data)
        if not self.timed("enqueue", self.acd.enqueue, call):
            self.waiting += 1
            self.recent.append(call.call_id)
            del self.recent[:-1000]

    def release(self) -> None:
        """A random busy agent becomes available with updated figures."""
        rng, busy = self.rng, self.busy
        i = rng.randrange(len(busy))
        busy[i], busy[-1] = busy[-1], busy[i]
        agent_id = busy.pop()
        self.busy_set.discard(agent_id)
        old = self.info[agent_id]
        new = self.info[agent_id] = old._replace(
            idle_since=self.clock.now, answered=old.answered + 1, idle_periods=old.idle_periods + 1,
            talk_time_total=old.talk_time_total + rng.expovariate(1 / 180),
            idle_time_total=old.idle_time_total + rng.random() * 30)
        offers = self.timed("available", self.acd.agent_available, new)
        self.waiting -= len(offers)
        self.meter.by_agent += bool(offers) and offers[-1].agent_id == agent_id

    def abandon(self) -> None:
        """A recent caller hangs up (often already offered: then a no-op)."""
        if self.recent:
            call_id = self.recent.pop(self.rng.randrange(len(self.recent)))
            self.waiting -= self.acd.call(call_id) is not None
            self.timed("abandon", self.acd.abandon, call_id)

    def pause(self) -> None:
        """A random agent who is not busy goes on a break."""
        agent_id = self.agents[self.rng.randrange(self.n)].agent_id
        if agent_id not in self.busy_set:
            self.timed("pause", self.acd.agent_unavailable, agent_id)
            self.busy.append(agent_id)
            self.busy_set.add(agent_id)

    def step(self, number: int) -> None:
        """One step of 5 ms: the next event, and every simulated second a tick."""
        self.clock.now += 0.005
        r = self.rng.random()
        if r >= 0.99:
            self.abandon()
        elif r >= 0.98:
            self.pause()
        elif not self.busy or (self.waiting <= self.waiting_target and (
                self.n - len(self.busy_set) > self.idle_target or r < 0.49)):
            self.arrive()
        else:
            self.release()
        if number % 200 == 0:
            self.waiting -= len(self.timed("tick", self.acd.tick))


def run(n: int, strategy: str, decisions: int, freeze: bool) -> dict:
    """One table row: build the centre, then step until ``decisions`` offers were made."""
    centre = Centre(n, strategy)
    if freeze:
        gc.collect()
        gc.freeze()
    number = 0
    while centre.meter.made < decisions:
        number += 1
        centre.step(number)
    if freeze:
        gc.unfreeze()
    return centre.meter.row()


class Switch(StringTransport):
    """An in-memory switch behind the AMI protocol: answers every action at once; notes when Redirects are written."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: AMIProtocol | None = None
        self.unanswered: list[bytes] = []
        self.redirected_at: list[int] = []

    def write(self, data: bytes) -> None:
        if data.startswith(b"Action: Redirect\r\n"):
            self.redirected_at.append(time.perf_counter_ns())
        self.unanswered.append(data.split(b"ActionID: ", 1)[1].split(b"\r\n", 1)[0])

    def answer(self) -> None:
        """Answer the actions written so far (and those they lead to) with ``Response: Success``."""
        while self.unanswered:
            action_id = self.unanswered.pop(0)
            self.protocol.dataReceived(b"Response: Success\r\nActionID: " + action_id + b"\r\nMessage: OK\r\n\r\n")


class RedirectBench:
    """The call centre's delivery path, from an agent becoming ready to the Redirect written to the switch."""

    def __init__(self, n: int, seed: int = 2):
        self.rng = rng = random.Random(seed)
        self.clock = clock = Clock()
        clock.advance(1_000_000)
        acd = ACD(queue_configs("longest_idle"), clock, rules=[PriorityRule(10, data=(("customer_class", "vip"),))],
                  cities=CityTable(CITIES))
        self.board, model, dispatcher = AgentBoard(clock), CallModel(clock), EventDispatcher()
        protocol = AMIProtocol(clock, dispatcher, ping_interval=None)
        self.switch = Switch()
        self.switch.protocol = protocol
        protocol.makeConnection(self.switch)
        protocol.dataReceived(b"Asterisk Call Manager/9.0.0\r\n")
        pbx = AsteriskPBX(SimpleNamespace(protocol=protocol), dispatcher, model)
        desk = SimpleNamespace(notify=lambda agent_id, event, data: None)
        self.center = CallCenter(model, self.board, acd, pbx, desk, "q0", 15, clock)
        self.agents = make_agents(n, rng)
        for info in self.agents:
            self.board.login(info.agent_id, f"PJSIP/{info.agent_id}", skills=dict(info.skills), city=info.city)
        self.seq = 0

    def cycle(self) -> int:
        """Queue a call for a random agent (not ready), make it ready: ns until the Redirect; then its call."""
        info = self.agents[self.rng.randrange(len(self.agents))]
        self.seq += 1
        group = int(min(info.skills)[1:])  # q0..q19: the plain queue of each group
        waiting = WaitingCall(f"r{self.seq}", f"q{group}", f"021{self.rng.randrange(10**8):08d}")
        self.center.acd.enqueue(waiting)
        self.center.deliveries[waiting.call_id] = Delivery(waiting, f"PJSIP/trunk-{self.seq:08x}")
        self.clock.advance(0.005)
        started = time.perf_counter_ns()
        self.board.ready(info.agent_id)
        self.switch.answer()
        took = self.switch.redirected_at.pop() - started
        call_id = self.board.get(info.agent_id).call_id
        del self.center.deliveries[call_id]
        self.board.ringing(info.agent_id, call_id)
        self.board.answered(info.agent_id, call_id)
        self.board.call_ended(info.agent_id, call_id)
        self.board.pause(info.agent_id, "bench")  # ends wrap-up here, outside the timing
        return took


def redirect_latency(n: int, samples: int, freeze: bool) -> dict:
    """p50/p99/p99.9 (µs) of agent ready → Redirect written, after one unmeasured cycle per agent."""
    bench = RedirectBench(n)
    log = JSONLogService(os.devnull, "info")
    log.startService()
    try:
        for _ in range(n):
            bench.cycle()
        if freeze:
            gc.collect()
            gc.freeze()
        lat = sorted(bench.cycle() for _ in range(samples))
    finally:
        log.stopService()
        if freeze:
            gc.unfreeze()
    return {"p50": percentile(lat, 0.50), "p99": percentile(lat, 0.99), "p999": percentile(lat, 0.999)}


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def main() -> None:
    """Parse the options, run every row, print the tables and whether the targets are met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=60_000, help="decisions timed per row")
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--strategies", default=",".join([*STRATEGIES, "mixed"]))
    parser.add_argument("--no-freeze", dest="freeze", action="store_false")
    parser.add_argument("--no-gc", action="store_true", help="disable the garbage collector while timing")
    parser.add_argument("--breakdown", action="store_true", help="mean µs per kind of ACD call")
    parser.add_argument("--redirects", type=int, default=20_000, help="agent-ready → Redirect samples (0: skip)")
    parser.add_argument("--redirect-sizes", default="10000")
    args = parser.parse_args()
    started = time.monotonic()
    if args.no_gc:
        gc.disable()
    print(f"{'agents':>7} {'strategy':<17} {'dec/s':>9} {'dec/s (deciding calls)':>23} "
          f"{'p50 µs':>7} {'p99 µs':>7} {'p99.9 µs':>8} {'by agent':>8}  target at {TARGET_AGENTS:,}")
    verdicts = []
    for n in (int(size) for size in args.sizes.split(",")):
        for strategy in args.strategies.split(","):
            row = run(n, strategy, args.decisions, args.freeze)
            met = row["deciding"] >= TARGET_RATE and row["p99"] < TARGET_P99_US
            mark = verdict(met) if n == TARGET_AGENTS else ""
            verdicts += [(strategy, met)] if n == TARGET_AGENTS else []
            print(f"{n:>7,} {strategy:<17} {row['rate']:>9,.0f} {row['deciding']:>23,.0f} {row['p50']:>7.1f} "
                  f"{row['p99']:>7.1f} {row['p999']:>8.1f} {row['by_agent']:>8.0%}  {mark}", flush=True)
            if args.breakdown:
                print("        " + ", ".join(f"{k} {c:,}x {us:.1f} µs" for k, (c, us) in row["breakdown"].items()))
    redirect_met = None
    if args.redirects:
        print(f"\n{'agents':>7} {'agent ready → Redirect written':<32} {'p50 µs':>7} {'p99 µs':>7} {'p99.9 µs':>8}")
        for n in (int(size) for size in args.redirect_sizes.split(",")):
            row = redirect_latency(n, args.redirects, args.freeze)
            redirect_met = (redirect_met is not False) and row["p99"] < TARGET_REDIRECT_P99_US
            print(f"{n:>7,} {'CallCenter → AsteriskPBX → AMI':<32} {row['p50']:>7.1f} {row['p99']:>7.1f} "
                  f"{row['p999']:>8.1f}  {verdict(row['p99'] < TARGET_REDIRECT_P99_US)}", flush=True)
    print(f"\ntargets at {TARGET_AGENTS:,} agents: >= {TARGET_RATE:,} decisions/s (deciding calls) with p99 < "
          f"{TARGET_P99_US:.0f} µs, per strategy row; agent ready → Redirect written p99 < "
          f"{TARGET_REDIRECT_P99_US:,.0f} µs")
    if verdicts:
        met = [name for name, ok in verdicts if ok]
        missed = [name for name, ok in verdicts if not ok]
        print(f"decisions: {verdict(not missed)} — met by {', '.join(met) or 'none'}"
              + (f"; not met by {', '.join(missed)}" if missed else ""))
    if redirect_met is not None:
        print(f"agent ready → Redirect: {verdict(redirect_met)}")
    print(f"run time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
