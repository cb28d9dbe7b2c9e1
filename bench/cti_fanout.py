"""CTI fan-out benchmark: idle clients per process, memory per client, event fan-out rate and latency.

Run: ``.venv/bin/python bench/cti_fanout.py [--clients N] [--quick]`` (about a
minute for 20,000 clients; ``--quick``: 2,000 clients and short phases;
``--tracemalloc`` adds the Python-heap bytes per client and where they go,
which inflates RSS, so read the RSS figure from a run without it;
``--gc-freeze`` freezes the objects of the connected sessions out of the
garbage collector's reach, to show what the full collections cost).

The parent process runs the real :class:`ctid.protocols.cti.CTIServerFactory`
on 127.0.0.1 with a :class:`CommandRouter` whose ``Login`` only calls
``session.login(...)`` (no directory: this measures the transport and session
layer), heartbeat 300 s so that nobody times out, ``max_per_address`` raised
(every client comes from 127.0.0.1), every other limit at its default.
A child process (this file with ``--child``) opens the N connections with
raw non-blocking sockets and ``selectors``, sends ``Hello`` and ``Login`` on
each, then only reads.  The parent reports:

1. **Idle clients**: sessions held, and the server's RSS (``VmRSS``) before
   and after, per client.  RLIMIT_NOFILE is raised to the hard limit in both
   processes; when the hard limit is below N the run says so and uses fewer.
2. **Paced fan-out**: 200 agent-state changes a second.  The sessions are
   laid out in groups of 236: 10 teams of 20 agents with 3 supervisors per
   team, and 6 wallboards per group; a change of one agent is sent to the
   agent's own session, its team's 3 supervisors and its group's 6
   wallboards (10 messages, recipient lists built ahead), with the real
   ``ctid.protocols.ctiapi.broadcast`` (JSON-encoded once, numbered and
   kept for replay by each session, written while the client reads).  The
   event data is the desk's agent object plus
   ``sent_ns`` (``time.time_ns()`` when the change was made); the child
   stamps each line with ``time.time_ns()`` after the ``recv`` that brought
   it: change-to-client latency, p50/p99/max.
3. **Saturation**: the same changes as fast as possible, ``--batch``
   changes per reactor turn (the reactor writes the sockets between turns):
   messages/s the server produced and the child received, latency, CPU of
   both processes (a process near 100 % is the bottleneck).
4. **The issue's load**: 300,000 messages/s from 200 changes/s means about
   1,500 recipients per change (the agent, its supervisors, and a fixed set
   of sessions following the whole centre); ``--wide`` seconds' worth of
   such changes are offered at 200/s and timed like phase 2.
5. **The kernel's floor**: 20 lines to each of those 1,500 sockets with a
   bare ``socket.send``, no reactor and no fan-out: the CPU one send costs
   here, hence the most messages a second one core could write at all.

It also prints the replay buffers' bytes (events kept 300 s for Resume; an
event's encoding is shared by its recipients), RSS after each phase, and
garbage-collector pauses during the phases, and ends with the issue's
targets, met or missed, and for a missed rate the CPU a message costs and
how many cores 300,000 messages/s would take.  Figures only: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import resource
import selectors
import socket
import sys
import time
from array import array

TARGET_CLIENTS, TARGET_KB_PER_CLIENT = 20_000, 16.0
TARGET_RATE, TARGET_P99_MS = 300_000, 5.0
CHANGES_PER_SECOND = 200
TEAMS, TEAM_SIZE, SUPERVISORS_PER_TEAM, WALLBOARDS = 10, 20, 3, 6
GROUP = TEAMS * (TEAM_SIZE + SUPERVISORS_PER_TEAM) + WALLBOARDS
FLOOR_ROUNDS = 20  # lines per recipient in the bare-send phase (small enough to fit the socket buffers)
FD_RESERVE = 32  # descriptors kept free in each process (pipes, epoll, stdio, the listener …)
SENT = re.compile(rb'"sent_ns":(\d+)')
NOTICE = re.compile(rb'"id":null,"ok":false,"error":\{"code":"(\w+)"')


def raise_nofile() -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_kib() -> int:
    """This process's resident set (``VmRSS``), KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def percentile(ordered: list[int], fraction: float) -> int:
    """The value at ``fraction`` of a sorted list (0 when empty)."""
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# -- the child: N raw clients ------------------------------------------------------------


class Clients:
    """N raw CTI connections on one selector: greet and log in, then read and time every event."""

    def __init__(self, port: int, count: int):
        self.address, self.count = ("127.0.0.1", port), count
        self.selector = selectors.DefaultSelector()
        self.tails: list[bytes] = [b""] * count
        self.oks = bytearray(count)
        self.logged_in = self.failed = self.closed = self.opened = 0
        self.refusals: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Start a new measurement phase."""
        self.latencies = array("q")
        self.received = self.first_ns = self.last_ns = 0
        self.notices: dict[str, int] = {}
        self.cpu = time.process_time()

    # connecting

    def open_one(self) -> None:
        """Start one non-blocking connect."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(self.address)
        self.selector.register(sock, selectors.EVENT_WRITE, self.opened)
        self.opened += 1

    def connected(self, sock: socket.socket, index: int) -> None:
        """The connect finished: send Hello and Login in one write, then only read."""
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.failed += 1
            self.selector.unregister(sock)
            sock.close()
            return
        agent = 100_000 + index
        sock.send(b'{"id":1,"cmd":"Hello","args":{"versions":[1],"client":"bench/1"}}\n'
                  b'{"id":2,"cmd":"Login","args":{"agent":"%d","password":"x","station":"%d"}}\n' % (agent, agent))
        self.selector.modify(sock, selectors.EVENT_READ, index)

    def login_lines(self, index: int, whole: bytes) -> None:
        """Count the two ``ok`` answers (Hello, Login) of connection ``index``."""
        if b'"ok":false' in whole:
            code = re.search(rb'"code":"(\w+)"', whole)
            name = code.group(1).decode() if code else "?"
            self.refusals[name] = self.refusals.get(name, 0) + 1
        before = self.oks[index]
        self.oks[index] = min(2, before + whole.count(b'"ok":true'))
        if before < 2 <= self.oks[index]:
            self.logged_in += 1

    def connect_all(self, in_flight: int = 500) -> dict[str, float]:
        """Open every connection (at most ``in_flight`` not yet logged in at a time)."""
        started = time.perf_counter()
        deadline = started + 120
        while self.logged_in + self.failed + self.closed < self.count and time.perf_counter() < deadline:
            while self.opened < self.count and self.opened - self.logged_in - self.failed - self.closed < in_flight:
                try:
                    self.open_one()
                except OSError as error:
                    self.refusals[f"local:{error.errno}"] = self.refusals.get(f"local:{error.errno}", 0) + 1
                    self.failed += 1
                    self.opened += 1
            self.poll(0.05)
        return {"logged_in": self.logged_in, "failed": self.failed, "closed": self.closed,
                "refusals": self.refusals, "seconds": time.perf_counter() - started}

    # reading

    def poll(self, timeout: float) -> None:
        """One selector round."""
        for key, events in self.selector.select(timeout):
            if key.fileobj == sys.stdin.fileno():
                continue
            if events & selectors.EVENT_WRITE and key.events & selectors.EVENT_WRITE:
                self.connected(key.fileobj, key.data)  # type: ignore[arg-type]
            else:
                self.read(key.fileobj, key.data)  # type: ignore[arg-type]

    def read(self, sock: socket.socket, index: int) -> None:
        """Read what is there; stamp every event line with the time of this ``recv``."""
        try:
            data = sock.recv(262_144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed += 1
            self.selector.unregister(sock)
            sock.close()
            return
        now = time.time_ns()
        if self.tails[index]:
            data = self.tails[index] + data
        cut = data.rfind(b"\n") + 1
        self.tails[index], whole = data[cut:], data[:cut]
        if self.oks[index] < 2:
            self.login_lines(index, whole)
        if b'"id":null' in whole:
            for code in NOTICE.findall(whole):
                self.notices[code.decode()] = self.notices.get(code.decode(), 0) + 1
        stamps = SENT.findall(whole)
        if stamps:
            self.received += len(stamps)
            self.latencies.extend(now - int(stamp) for stamp in stamps)
            self.first_ns = self.first_ns or now
            self.last_ns = now

    def report(self, expected: int, timeout: float) -> dict[str, object]:
        """Wait for ``expected`` events (or ``timeout`` s), then the phase's figures."""
        deadline = time.perf_counter() + timeout
        while self.received < expected and time.perf_counter() < deadline:
            self.poll(0.05)
        ordered = sorted(self.latencies)
        return {"received": self.received, "first_ns": self.first_ns, "last_ns": self.last_ns,
                "p50": percentile(ordered, 0.50), "p90": percentile(ordered, 0.90),
                "p99": percentile(ordered, 0.99), "p999": percentile(ordered, 0.999),
                "max": ordered[-1] if ordered else 0, "closed": self.closed, "notices": self.notices,
                "cpu": time.process_time() - self.cpu}


def _say(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def child(port: int, count: int) -> None:
    """The client process: connect ``count`` clients, then obey ``reset`` / ``report E T`` / ``quit`` on stdin."""
    soft, hard = raise_nofile()
    clients = Clients(port, count)
    _say({"connect": clients.connect_all(), "nofile": [soft, hard]})
    os.set_blocking(sys.stdin.fileno(), False)
    clients.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
    pending = b""
    while True:
        clients.poll(0.05)
        try:
            pending += os.read(sys.stdin.fileno(), 4096) or b"quit\n"
        except BlockingIOError:
            continue
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            words = line.decode().split()
            if words[0] == "quit":
                return
            if words[0] == "reset":
                clients.reset()
                _say({"reset": True})
            elif words[0] == "report":
                _say(clients.report(int(words[1]), float(words[2])))


# -- the server: layout and the changes --------------------------------------------------


def build_layout(sessions: list) -> tuple[list[tuple[object, list]], int, int]:
    """Split sessions into groups of ~GROUP: ``[(agent session, recipients)]``, supervisors, wallboards."""
    groups = max(1, round(len(sessions) / GROUP))
    agents, supervisors, boards = [], 0, 0
    for g in range(groups):
        part = sessions[g * len(sessions) // groups:(g + 1) * len(sessions) // groups]
        walls, rest = part[-WALLBOARDS:], part[:-WALLBOARDS]
        sups, members = rest[-TEAMS * SUPERVISORS_PER_TEAM:], rest[:-TEAMS * SUPERVISORS_PER_TEAM]
        supervisors, boards = supervisors + len(sups), boards + len(walls)
        for k, session in enumerate(members):
            team = sups[(k % TEAMS) * SUPERVISORS_PER_TEAM:(k % TEAMS + 1) * SUPERVISORS_PER_TEAM]
            agents.append((session, [session, *team, *walls]))
    return agents, supervisors, boards


MOVES = [("ready", "not_ready", "ready", None), ("reserved", "ready", "reserve", None),
         ("ringing", "reserved", "ring", None), ("talking", "ringing", "answer", None),
         ("wrap_up", "talking", "hangup", None), ("not_ready", "wrap_up", "pause", "lunch")]


class Driver:
    """Makes agent-state changes and fans each out with ``broadcast``; counts and times the work."""

    def __init__(self, agents: list[tuple[object, list]], seed: int = 7):
        from ctid.protocols.ctiapi import broadcast

        self.broadcast = broadcast
        self.agents = [(session, tuple(recipients)) for session, recipients in agents]
        self.rng = random.Random(seed)
        self.reset()

    def reset(self) -> None:
        """Start a new phase."""
        self.changes = self.messages = 0
        self.busy = 0.0

    def change(self) -> None:
        """One agent changes state: the event goes to the agent, its supervisors and wallboards."""
        started = time.process_time()
        session, recipients = self.agents[self.rng.randrange(len(self.agents))]
        agent = session.identity["agent"]
        state, previous, trigger, reason = MOVES[self.rng.randrange(len(MOVES))]
        call = f"c-{self.changes}" if state in ("ringing", "talking") else None
        data = {"agent": agent, "name": f"Agent {agent}", "station": f"PJSIP/{agent}", "state": state,
                "reason": reason, "since": time.time(), "call": call, "pending": None,
                "available": state == "ready", "skills": {"accounts": 5, "cards": 3, "loans": 1},
                "city": "Shanghai", "previous": previous, "trigger": trigger, "forced_by": None,
                "sent_ns": time.time_ns()}
        self.messages += self.broadcast(recipients, "AgentStateChanged", data)
        self.changes += 1
        self.busy += time.process_time() - started


class GCWatch:
    """Counts garbage-collector runs per generation and the longest pause."""

    def __init__(self) -> None:
        self._started = 0.0
        self.reset()
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        """Start a new phase."""
        self.runs, self.longest, self.total = [0, 0, 0], 0.0, 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.runs[info["generation"]] += 1
        self.longest, self.total = max(self.longest, pause), self.total + pause

    def summary(self) -> str:
        """``runs g0/g1/g2, longest pause``."""
        return (f"{self.runs[0]}/{self.runs[1]}/{self.runs[2]} runs (gen 0/1/2), longest pause "
                f"{self.longest * 1000:.1f} ms, {self.total * 1000:.0f} ms in all")


# -- the server process ---------------------------------------------------------------------


def make_factory(reactor, clients: int):
    """The real CTI server factory with a Login that only records the identity."""
    from ctid.protocols.cti import CommandRouter, CTIServerFactory

    def login(session, args):
        session.login({"agent": args["agent"], "station": args.get("station")})
        return {"agent": {"agent": args["agent"], "state": "not_ready"}, "calls": [], "roles": ["agent"]}

    router = CommandRouter()
    router.add("Login", login, login=False)
    return CTIServerFactory(router, reactor, heartbeat=300.0, max_per_address=clients + 100)


class ChildControl:
    """Spawns the client process and exchanges JSON lines with it (stdin: commands, stdout: answers)."""

    def __init__(self, reactor, port: int, clients: int):
        from twisted.internet.defer import DeferredQueue
        from twisted.internet.protocol import ProcessProtocol

        self.reactor = reactor
        self.answers: DeferredQueue = DeferredQueue()
        control = self

        class _Pipe(ProcessProtocol):
            buffer = b""

            def outReceived(self, data: bytes) -> None:
                self.buffer += data
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    control.answers.put(json.loads(line))

        self.pipe = _Pipe()
        argv = [sys.executable, os.path.abspath(__file__), "--child", "--port", str(port), "--clients", str(clients)]
        self.process = reactor.spawnProcess(self.pipe, sys.executable, argv, env=dict(os.environ),
                                            childFDs={0: "w", 1: "r", 2: 2})

    def answer(self, timeout: float = 150.0):
        """The child's next JSON line (a Deferred)."""
        return self.answers.get().addTimeout(timeout, self.reactor)

    def ask(self, command: str, timeout: float = 60.0):
        """Send ``command`` and wait for the answer."""
        self.process.write(command.encode() + b"\n")
        return self.answer(timeout)

    def quit(self) -> None:
        """Tell the child to close its sockets and exit."""
        self.process.write(b"quit\n")


async def sleep(reactor, seconds: float) -> None:
    """Let the reactor run for ``seconds``."""
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


async def idle_clients(reactor, options, factory, port: int, wanted: int, capped: str):
    """Phase 1: connect the clients; RSS and tracemalloc figures per client."""
    import tracemalloc

    gc.collect()
    base_rss = rss_kib()
    if options.tracemalloc:
        tracemalloc.start(1)
        base_snapshot = tracemalloc.take_snapshot()
    control = ChildControl(reactor, port, wanted)
    answer = await control.answer()
    connect = answer["connect"]
    await sleep(reactor, 0.5)
    gc.collect()
    held = sum(1 for session in factory.registry if session.logged_in and session.connected)
    rss = rss_kib()
    per_client = (rss - base_rss) * 1024 / max(held, 1)
    print(f"idle clients held:         {held:,} logged-in sessions of {wanted:,} asked "
          f"({connect['seconds']:.1f} s to connect and log in; failed {connect['failed']}, "
          f"closed {connect['closed']}, refused {connect['refusals'] or 0})"
          f"  [target {TARGET_CLIENTS:,}: {_mark(held >= TARGET_CLIENTS)}{capped}]")
    print(f"server RSS:                {base_rss / 1024:.1f} MiB before, {rss / 1024:.1f} MiB with the clients"
          f" = {per_client / 1024:.1f} KiB per client"
          f"  [target <= {TARGET_KB_PER_CLIENT:.0f} KB: {_mark(per_client <= TARGET_KB_PER_CLIENT * 1024)}]"
          + ("  (inflated by tracemalloc)" if options.tracemalloc else ""))
    if options.tracemalloc:
        report_tracemalloc(base_snapshot, held)
    return control, held, per_client


def report_tracemalloc(base_snapshot, held: int) -> None:
    """Python-heap bytes per client, by allocating line."""
    import tracemalloc

    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = snapshot.compare_to(base_snapshot, "lineno")
    total = sum(stat.size_diff for stat in stats)
    print(f"python heap (tracemalloc): {total / held:,.0f} B per client; largest sources per client:")
    for stat in stats[:10]:
        frame = stat.traceback[0]
        where = f"{os.path.relpath(frame.filename, os.path.dirname(os.path.dirname(__file__)))}:{frame.lineno}"
        if where.startswith("../"):
            where = "/".join(frame.filename.split("/")[-3:]) + f":{frame.lineno}"
        print(f"    {stat.size_diff / held:8,.0f} B  {stat.count_diff / held:5.1f} blocks  {where}")


def replay_memory(factory) -> tuple[int, int]:
    """What the sessions keep for Resume: bytes of the distinct event bodies, and references to them."""
    bodies: dict[int, int] = {}
    references = 0
    for session in factory.registry:
        entries = session.buffer._entries  # a look inside: one entry is shared by every recipient of its event
        references += len(entries)
        for entry in entries:
            bodies[id(entry)] = len(entry[1])
    return sum(bodies.values()), references


def replay_bytes(factory) -> int:
    """Bytes the replay buffers take: the distinct bodies plus a deque slot (~8 B) per reference."""
    body_bytes, references = replay_memory(factory)
    return body_bytes + 8 * references


async def paced(reactor, control, driver: Driver, watch: GCWatch, seconds: float) -> dict:
    """Phases 2 and 4: ``seconds`` worth of changes at CHANGES_PER_SECOND (later if the server falls behind)."""
    from twisted.internet.defer import Deferred
    from twisted.internet.task import LoopingCall

    await control.ask("reset")
    driver.reset()
    watch.reset()
    total, done = round(seconds * CHANGES_PER_SECOND), Deferred()

    def tick(count: int) -> None:
        for _ in range(min(count, total - driver.changes)):
            driver.change()
        if driver.changes >= total and loop.running:
            loop.stop()
            done.callback(None)

    loop = LoopingCall.withCount(tick)
    loop.clock = reactor
    started, cpu = time.perf_counter(), time.process_time()
    loop.start(1 / CHANGES_PER_SECOND, now=False)
    await done
    produced = time.perf_counter() - started
    result = await control.ask(f"report {driver.messages} 60", 90)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {**result, "produced": produced, "wall": wall, "server_cpu": cpu}


async def saturate(reactor, control, driver: Driver, watch: GCWatch, seconds: float, batch: int) -> dict:
    """Phase 3: ``batch`` changes per reactor turn, as fast as the server goes, for ``seconds``."""
    from twisted.internet.defer import Deferred

    await control.ask("reset")
    driver.reset()
    watch.reset()
    done: Deferred = Deferred()
    started, cpu = time.perf_counter(), time.process_time()
    deadline = started + seconds

    def turn() -> None:
        for _ in range(batch):
            driver.change()
        if time.perf_counter() < deadline:
            reactor.callLater(0, turn)
        else:
            done.callback(None)

    turn()
    await done
    produced = time.perf_counter() - started
    result = await control.ask(f"report {driver.messages} 60", 90)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {**result, "produced": produced, "wall": wall, "server_cpu": cpu}


def print_phase(title: str, driver: Driver, watch: GCWatch, result: dict, factory, targets: str = "") -> dict:
    """Print the figures of a fan-out phase (``targets``: ``rate`` and/or ``p99``, the issue's); return them."""
    sent, got, seconds = driver.messages, result["received"], result["produced"]
    span = max(result["last_ns"] - result["first_ns"], 1) / 1e9
    rate, p99 = got / span, result["p99"] / 1e6
    print(f"{title}:")
    print(f"    changes made:          {driver.changes:,} in {seconds:.2f} s = {driver.changes / seconds:,.0f}/s,"
          f" {sent:,} messages ({sent / max(driver.changes, 1):,.1f} per change) = {sent / seconds:,.0f} msgs/s sent")
    print(f"    delivered:             {got:,} of {sent:,} in {span:.2f} s (first to last) = {rate:,.0f} msgs/s"
          + (f"  [target >= {TARGET_RATE:,}: {_mark(rate >= TARGET_RATE)}]" if "rate" in targets else ""))
    print(f"    change-to-client:      p50 {result['p50'] / 1e6:.2f} ms, p90 {result['p90'] / 1e6:.2f} ms,"
          f" p99 {p99:.2f} ms, p99.9 {result['p999'] / 1e6:.2f} ms, max {result['max'] / 1e6:.1f} ms"
          + (f"  [target p99 < {TARGET_P99_MS:.0f} ms: {_mark(p99 < TARGET_P99_MS)}]" if "p99" in targets else ""))
    fan_out = driver.busy / max(sent, 1)
    elsewhere = max(result["server_cpu"] - driver.busy, 0) / max(sent, 1)
    print(f"    server CPU:            {result['server_cpu'] / result['wall'] * 100:.0f} % of one core;"
          f" per message {fan_out * 1e6:.1f} µs in the broadcast fan-out (into the transports)"
          f" + {elsewhere * 1e6:.1f} µs elsewhere (reactor, socket writes)")
    print(f"    client CPU:            {result['cpu'] / result['wall'] * 100:.0f} % of one core"
          f" (the reader; near 100 % would mean it, not the server, set the pace)")
    print(f"    garbage collector:     {watch.summary()}")
    print(f"    connections closed:    {result['closed']}, notices {result['notices'] or 'none'}")
    body_bytes, references = replay_memory(factory)
    print(f"    replay buffers:        {replay_bytes(factory) / 2**20:.1f} MiB kept for Resume ({references:,} events"
          f" sharing {body_bytes / 2**20:.1f} MiB of bodies); server RSS {rss_kib() / 1024:.1f} MiB")
    return {"rate": rate, "p99": p99, "fan_out": fan_out, "elsewhere": elsewhere}


def json_cost(driver: Driver, rounds: int = 20_000) -> tuple[float, float]:
    """Seconds to encode one AgentStateChanged body (once per change) and to number it (once per recipient)."""
    from ctid.protocols.cticodec import encode_event_body, event_line

    session, _ = driver.agents[0]
    data = {"agent": session.identity["agent"], "name": "Agent 1", "station": "PJSIP/1", "state": "ready",
            "reason": None, "since": time.time(), "call": None, "pending": None, "available": True,
            "skills": {"accounts": 5, "cards": 3, "loans": 1}, "city": "Shanghai", "previous": "not_ready",
            "trigger": "ready", "forced_by": None, "sent_ns": time.time_ns()}
    started = time.perf_counter()
    for _ in range(rounds):
        body = encode_event_body("AgentStateChanged", 1795360000.25, data)
    encode = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for seq in range(rounds):
        line = event_line(seq, body)
    number = (time.perf_counter() - started) / rounds
    print(f"one event line:            {len(line)} bytes; the JSON body {encode * 1e6:.1f} µs once per change,"
          f" numbering it {number * 1e6:.2f} µs per recipient")
    return encode, number


async def send_floor(reactor, control, recipients: tuple, rounds: int) -> dict:
    """Phase 5: ``rounds`` event lines to each of ``recipients`` with a bare ``socket.send``, no reactor, no fan-out.

    What the kernel alone costs per message here (one send per line, as when
    every recipient gets one event per reactor turn).  Run after the other
    phases have drained, so nothing else is queued on those sockets.
    """
    from ctid.protocols.cticodec import encode_event_body, event_line

    await control.ask("reset")
    sockets = [session.link.transport.socket for session in recipients if session.connected]
    data = {"agent": "100000", "name": "Agent 100000", "station": "PJSIP/100000", "state": "ready", "reason": None,
            "since": time.time(), "call": None, "pending": None, "available": True,
            "skills": {"accounts": 5, "cards": 3, "loans": 1}, "city": "Shanghai", "previous": "not_ready",
            "trigger": "ready", "forced_by": None}
    sent = short = 0
    started, cpu = time.perf_counter(), time.process_time()
    for seq in range(1, rounds + 1):
        line = event_line(seq, encode_event_body("AgentStateChanged", time.time(), {**data, "sent_ns": time.time_ns()}))
        for sock in sockets:
            try:
                written = sock.send(line)
            except BlockingIOError:
                written = 0
            sent += written == len(line)
            short += written != len(line)
        await sleep(reactor, 0)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    result = await control.ask(f"report {sent} 60", 90)
    return {**result, "sent": sent, "short": short, "send_wall": wall, "send_cpu": cpu}


def print_floor(result: dict, recipients: int) -> float:
    """Print the bare-send figures; return the CPU seconds one send costs."""
    per_send = result["send_cpu"] / max(result["sent"], 1)
    print(f"bare socket.send floor:    {result['sent']:,} lines to {recipients:,} sockets"
          f" in {result['send_wall']:.2f} s"
          f" ({result['short']} short): {per_send * 1e6:.1f} µs of CPU per send ="
          f" at most {1 / max(per_send, 1e-9):,.0f} msgs/s on one core before any Python fan-out;"
          f" delivered {result['received']:,}, p99 {result['p99'] / 1e6:.2f} ms")
    return per_send


def print_verdict(held: int, capped: bool, per_client: float, calm: dict, wide: dict, per_send: float) -> None:
    """Which of the issue's targets this run met, and, for the rate, what stands in the way."""
    print("targets:")
    print(f"    {TARGET_CLIENTS:,} idle clients:        {_mark(held >= TARGET_CLIENTS)} ({held:,} held"
          + ("; RLIMIT_NOFILE capped the run" if capped else "") + ")")
    print(f"    <= {TARGET_KB_PER_CLIENT:.0f} KB per client:       {_mark(per_client <= TARGET_KB_PER_CLIENT * 1024)}"
          f" ({per_client / 1024:.1f} KiB)")
    print(f"    p99 < {TARGET_P99_MS:.0f} ms, paced load:    {_mark(calm['p99'] < TARGET_P99_MS)}"
          f" ({calm['p99']:.2f} ms at {CHANGES_PER_SECOND} changes/s x {1 + SUPERVISORS_PER_TEAM + WALLBOARDS})")
    print(f"    {TARGET_RATE:,} msgs/s, p99 < {TARGET_P99_MS:.0f} ms: {_mark(wide['rate'] >= TARGET_RATE)}"
          f" ({wide['rate']:,.0f} msgs/s, p99 {wide['p99']:,.1f} ms)")
    if wide["rate"] >= TARGET_RATE:
        return
    per_message = wide["fan_out"] + wide["elsewhere"]
    print(f"    why: a message costs {wide['fan_out'] * 1e6:.1f} µs of CPU in broadcast (numbering, replay,"
          f" transport.write) + {wide['elsewhere'] * 1e6:.1f} µs in the reactor and the kernel (the bare send()"
          f" alone {per_send * 1e6:.1f} µs) = {per_message * 1e6:.1f} µs: at most {1 / max(per_message, 1e-9):,.0f}"
          f" msgs/s on one core.  {TARGET_RATE:,} msgs/s needs {TARGET_RATE * per_message:.1f} cores of this work"
          f" ({TARGET_RATE * per_send:.1f} for the send() calls alone): out of reach for one CPython process on one"
          f" core; it needs the sessions spread over that many processes, or the fan-out and writes in C.")


def wide_layout(agents: list[tuple[object, list]], sessions: list, width: int, seed: int = 11) -> list:
    """Every change to ``width`` sessions: the agent, its supervisors, and a fixed set of centre-wide followers."""
    followers = random.Random(seed).sample(sessions, min(width, len(sessions)))
    wide = []
    for session, recipients in agents:
        near = recipients[:1 + SUPERVISORS_PER_TEAM]
        wide.append((session, near + [f for f in followers if f not in near][:width - len(near)]))
    return wide


async def run(reactor, options) -> None:
    """Every phase, in order."""
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    # Without an observer twisted.logger buffers every event (a log line per session) and would skew the RSS.
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stderr),
                                                           [LogLevelFilterPredicate(LogLevel.warn)])],
                                     redirectStandardIO=False)
    soft, hard = raise_nofile()
    room = soft - len(os.listdir("/proc/self/fd")) - FD_RESERVE
    wanted = min(options.clients, room)
    capped = (f"; capped at {wanted:,} by RLIMIT_NOFILE (soft {soft:,}, hard {hard:,})"
              if wanted < options.clients else "")
    factory = make_factory(reactor, wanted)
    port = reactor.listenTCP(0, factory, backlog=4096, interface="127.0.0.1").getHost().port
    print(f"clients asked:             {options.clients:,}; RLIMIT_NOFILE soft {soft:,} hard {hard:,}"
          f" -> {wanted:,} connections" + (" (CAPPED by the hard limit)" if capped else ""))
    control, held, per_client = await idle_clients(reactor, options, factory, port, wanted, capped)
    sessions = sorted((s for s in factory.registry if s.logged_in), key=lambda s: int(s.identity["agent"]))
    agents, supervisors, boards = build_layout(sessions)
    print(f"fan-out layout:            {len(agents):,} agents in teams of {TEAM_SIZE}, {supervisors:,} supervisors"
          f" ({SUPERVISORS_PER_TEAM} per team), {boards:,} wallboards ({WALLBOARDS} per {TEAMS} teams):"
          f" {1 + SUPERVISORS_PER_TEAM + WALLBOARDS} messages per change")
    if options.gc_freeze:
        gc.collect()
        gc.freeze()
        print(f"gc.freeze():               {gc.get_freeze_count():,} objects moved out of the collector's reach")
    driver, watch = Driver(agents), GCWatch()
    json_cost(driver)
    result = await paced(reactor, control, driver, watch, options.paced)
    calm = print_phase(f"paced fan-out ({CHANGES_PER_SECOND} changes/s for {options.paced:g} s of changes)", driver,
                       watch, result, factory, "p99")
    steady = replay_bytes(factory) / result["produced"] * factory.settings.replay_age
    print(f"    replay at steady state: ~{steady / 2**20:,.0f} MiB = {steady / 1024 / held:.1f} KiB per client more"
          f" (this load for replay_age {factory.settings.replay_age:g} s, under the per-session caps)")
    result = await saturate(reactor, control, driver, watch, options.saturate, options.batch)
    print_phase(f"saturation ({options.batch} changes per reactor turn for {options.saturate:g} s)", driver, watch,
                result, factory, "rate")
    width = TARGET_RATE // CHANGES_PER_SECOND
    driver = Driver(wide_layout(agents, sessions, width))
    result = await paced(reactor, control, driver, watch, options.wide)
    wide = print_phase(f"the issue's load: {CHANGES_PER_SECOND} changes/s x {width:,} recipients"
                       f" = {TARGET_RATE:,} msgs/s offered, {options.wide:g} s of changes", driver, watch, result,
                       factory, "rate p99")
    recipients = driver.agents[0][1]
    per_send = print_floor(await send_floor(reactor, control, recipients, FLOOR_ROUNDS), len(recipients))
    print_verdict(held, bool(capped), per_client, calm, wide, per_send)
    control.quit()
    await sleep(reactor, 0.5)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--clients", type=int, default=None, help="idle clients (default 20,000; 2,000 --quick)")
    options.add_argument("--quick", action="store_true", help="2,000 clients and short phases")
    options.add_argument("--paced", type=float, default=None, help="seconds of paced changes (default 10)")
    options.add_argument("--saturate", type=float, default=None, help="seconds of saturation (default 5)")
    options.add_argument("--wide", type=float, default=None, help="seconds of changes at the issue's load (default 1)")
    options.add_argument("--batch", type=int, default=50, help="changes per reactor turn when saturating")
    options.add_argument("--gc-freeze", action="store_true", help="gc.freeze() once the clients are connected")
    options.add_argument("--tracemalloc", action="store_true", help="Python-heap bytes per client, by line")
    options.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.child:
        child(args.port, args.clients)
        return
    args.clients = args.clients or (2_000 if args.quick else TARGET_CLIENTS)
    args.paced = args.paced or (3.0 if args.quick else 10.0)
    args.saturate = args.saturate or (2.0 if args.quick else 5.0)
    args.wide = args.wide or (0.25 if args.quick else 1.0)
    if args.clients < GROUP:
        options.error(f"--clients must be at least {GROUP}")
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    react(lambda reactor: Deferred.fromCoroutine(run(reactor, args)))


if __name__ == "__main__":
    main()
