"""AMI ingest benchmark: a realistic event stream through AMIProtocol into the call model.

Run: ``.venv/bin/python bench/ami_ingest.py [--events N]``.

A child process (this file with ``--serve``) listens on loopback, sends the
AMI banner and then ``N`` events of whole calls (queue call answered by an
agent: Newchannel, VarSet/Newexten noise, NewCallerid, QueueCallerJoin/Leave,
DialBegin/End, Newstate, BridgeCreate/Enter/Leave/Destroy, DTMFBegin/End,
Hangup; ~100 calls in progress at a time; field shapes from the Asterisk 22
capture), then ``Event: BenchDone``.  The parent reads it with the real
``AMIFactory``/``AMIProtocol`` and ``EventDispatcher`` into
``ctid.calls.CallModel`` and reports:

* events/s end to end (first byte to BenchDone),
* events/s parse-only (``MessageParser.feed`` in 64 KiB chunks + ``.event``),
* peak RSS of the reading process,
* the longest reactor stall (a 10 ms ``LoopingCall`` recording its lateness).
"""

from __future__ import annotations

import argparse
import queue
import random
import resource
import socket
import subprocess
import sys
import threading
import time

ROUND_CALLS = 500
CONCURRENT = 100
MARK = b"@R@"
TARGET_E2E, TARGET_PARSE, TARGET_STALL = 150_000, 300_000, 0.100


# -- the stream ----------------------------------------------------------------

def _snapshot(prefix: str, leg: dict[str, str]) -> list[tuple[str, str]]:
    return [(prefix + key, value) for key, value in (
        ("Channel", leg["name"]), ("ChannelState", leg["state"]), ("ChannelStateDesc", leg["desc"]),
        ("CallerIDNum", leg["cid"]), ("CallerIDName", leg["cidname"]), ("ConnectedLineNum", leg["col"]),
        ("ConnectedLineName", leg["colname"]), ("Language", "en"), ("AccountCode", ""),
        ("Context", leg["context"]), ("Exten", leg["exten"]), ("Priority", leg["priority"]),
        ("Uniqueid", leg["uniqueid"]), ("Linkedid", leg["linkedid"]))]


def _bridge(bridge_id: str, members: int) -> list[tuple[str, str]]:
    return [("BridgeUniqueid", bridge_id), ("BridgeType", "basic"), ("BridgeTechnology", "simple_bridge"),
            ("BridgeCreator", "<unknown>"), ("BridgeName", "<unknown>"), ("BridgeNumChannels", str(members)),
            ("BridgeVideoSourceMode", "none")]


def _event(name: str, privilege: str, *blocks: list[tuple[str, str]]) -> bytes:
    lines = [f"Event: {name}", f"Privilege: {privilege},all"]
    lines += [f"{key}: {value}" for block in blocks for key, value in block]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _state(leg: dict[str, str], state: str, desc: str) -> dict[str, str]:
    leg.update(state=state, desc=desc)
    return leg


def one_call(n: int, rng: random.Random) -> list[bytes]:
    """The ~40 events of one queue call answered by an agent (ids carry the round MARK)."""
    r = MARK.decode()
    caller_num = f"138{rng.randrange(10**8):08d}"
    agent = 1000 + rng.randrange(200)
    caller = dict(name=f"PJSIP/trunk-{r}{n:06x}", state="4", desc="Ring", cid=caller_num, cidname="<unknown>",
                  col="<unknown>", colname="<unknown>", context="from-trunk", exten="02112345678", priority="1",
                  uniqueid=f"17953{r}.{2 * n}", linkedid=f"17953{r}.{2 * n}")
    agent_leg = dict(name=f"PJSIP/{agent}-{r}{n:06x}", state="0", desc="Down", cid=str(agent), cidname=f"Agent {agent}",
                     col=caller_num, colname="<unknown>", context="agents", exten="s", priority="1",
                     uniqueid=f"17953{r}.{2 * n + 1}", linkedid=caller["linkedid"])
    bridge_id = f"b{r}-{n:08x}-c797-4b5c-9935-df52663f652d"
    C, A = caller, agent_leg

    def var(leg: dict[str, str], name: str, value: str) -> bytes:
        return _event("VarSet", "dialplan", _snapshot("", leg), [("Variable", name), ("Value", value)])

    def exten(leg: dict[str, str], app: str, data: str) -> bytes:
        leg["priority"] = str(int(leg["priority"]) + 1)
        return _event("Newexten", "dialplan", _snapshot("", leg),
                      [("Extension", leg["exten"]), ("Application", app), ("AppData", data)])

    def dtmf(digit: str) -> list[bytes]:
        extra = [("Digit", digit), ("Direction", "Received")]
        return [_event("DTMFBegin", "dtmf", _snapshot("", A), extra),
                _event("DTMFEnd", "dtmf", _snapshot("", A), extra + [("DurationMs", "120")])]

    events = [_event("Newchannel", "call", _snapshot("", C)),
              var(C, "__FROM_DID", "02112345678"), var(C, "CHANNEL(language)", "en"), var(C, "TRUNK", "carrier1"),
              exten(C, "Answer", ""), _event("Newstate", "call", _snapshot("", _state(C, "6", "Up"))),
              exten(C, "Set", "CTID_SEGMENT=retail"), var(C, "CTID_SEGMENT", "retail"),
              _event("NewCallerid", "call", _snapshot("", C), [("CID-CallingPres", "0 (Presentation Allowed)")]),
              exten(C, "Queue", "support,tT"),
              _event("QueueCallerJoin", "agent", _snapshot("", C), [("Queue", "support"), ("Position", "1"),
                                                                    ("Count", "1")]),
              var(C, "QUEUEPOSITION", "1"), var(C, "QUEUESTATUS", ""),
              _event("Newchannel", "call", _snapshot("", A)),
              _event("DialBegin", "call", _snapshot("", C), _snapshot("Dest", A), [("DialString", f"{agent}")]),
              _event("Newstate", "call", _snapshot("", _state(A, "5", "Ringing"))),
              _event("NewConnectedLine", "call", _snapshot("", A)),
              _event("DialEnd", "call", _snapshot("", C), _snapshot("Dest", _state(A, "6", "Up")),
                     [("DialStatus", "ANSWER")]),
              _event("Newstate", "call", _snapshot("", A)),
              _event("QueueCallerLeave", "agent", _snapshot("", C), [("Queue", "support"), ("Count", "0"),
                                                                     ("Position", "1")]),
              _event("BridgeCreate", "call", _bridge(bridge_id, 0)),
              _event("BridgeEnter", "call", _bridge(bridge_id, 1), _snapshot("", C)),
              _event("BridgeEnter", "call", _bridge(bridge_id, 2), _snapshot("", A)),
              var(C, "BRIDGEPEER", A["name"]), var(A, "BRIDGEPEER", C["name"]),
              var(C, "BRIDGEPVTCALLID", f"{n:x}@10.0.0.1"), var(A, "BRIDGEPVTCALLID", f"{n:x}@10.0.0.2"),
              *dtmf(str(rng.randrange(10))), *dtmf("#"),
              var(A, "CTID_NOTE", "verified"), var(C, "MIXMONITOR_FILENAME", f"/rec/{n}.wav"),
              _event("BridgeLeave", "call", _bridge(bridge_id, 1), _snapshot("", A)),
              _event("BridgeLeave", "call", _bridge(bridge_id, 0), _snapshot("", C)),
              _event("BridgeDestroy", "call", _bridge(bridge_id, 0)),
              _event("HangupRequest", "call", _snapshot("", A), [("Cause", "16")]),
              _event("Hangup", "call", _snapshot("", A), [("Cause", "16"), ("Cause-txt", "Normal Clearing")]),
              _event("Hangup", "call", _snapshot("", C), [("Cause", "16"), ("Cause-txt", "Normal Clearing")])]
    return events


def round_template(seed: int = 7) -> list[bytes]:
    """One round of interleaved calls (~100 at a time), each event a separate bytes with MARK in its ids."""
    rng = random.Random(seed)
    waiting = [iter(one_call(n, rng)) for n in range(ROUND_CALLS)]
    waiting.reverse()
    active: list = []
    out: list[bytes] = []
    while waiting or active:
        while waiting and len(active) < CONCURRENT:
            active.append(waiting.pop())
        index = rng.randrange(len(active))
        event = next(active[index], None)
        if event is None:
            active[index] = active[-1]
            active.pop()
        else:
            out.append(event)
    return out


def rounds(total: int):
    """Yield (round number, bytes) covering exactly ``total`` events."""
    template = round_template()
    whole = b"".join(template)
    sent, number = 0, 0
    while sent < total:
        take = min(len(template), total - sent)
        blob = whole if take == len(template) else b"".join(template[:take])
        yield number, blob.replace(MARK, b"%d" % number)
        sent += take
        number += 1


# -- the server (child process) --------------------------------------------------

def serve(total: int) -> None:
    """Accept one client, send banner + ``total`` events + BenchDone, wait for it to hang up.

    A thread renders the next round while the main thread is blocked in
    ``sendall`` (which releases the GIL), so the reader is never kept waiting.
    """
    ready: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
    produce = rounds(total)
    ready.put(next(produce)[1])  # the first round is ready before the client may connect

    def render() -> None:
        for _, blob in produce:
            ready.put(blob)
        ready.put(None)

    threading.Thread(target=render, daemon=True).start()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    print(listener.getsockname()[1], flush=True)
    connection, _ = listener.accept()
    connection.sendall(b"Asterisk Call Manager/11.0.0\r\n")
    while (blob := ready.get()) is not None:
        connection.sendall(blob)
    connection.sendall(b"Event: BenchDone\r\nPrivilege: user,all\r\n\r\n")
    connection.recv(1)
    connection.close()


# -- the client ----------------------------------------------------------------

def end_to_end(total: int) -> dict[str, float]:
    """Read the served stream through AMIProtocol + EventDispatcher into CallModel."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.task import LoopingCall

    from ctid.calls import CallModel
    from ctid.protocols.ami import AMIFactory, EventDispatcher

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--events", str(total)], stdout=subprocess.PIPE)
    port = int(server.stdout.readline())
    model = CallModel(reactor)
    dispatcher = EventDispatcher()
    stats = {"events": total, "stall": 0.0, "start": 0.0, "end": 0.0, "max_calls": 0}
    link = {}

    def done(message) -> None:
        stats["end"] = time.perf_counter()
        stats["max_calls"] = len(model.calls)
        link["protocol"].transport.loseConnection()
        reactor.stop()

    dispatcher.register(None, model.apply)
    dispatcher.register("BenchDone", done)
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        stats["stall"] = max(stats["stall"], now - last[0] - 0.010)
        last[0] = now

    LoopingCall(tick).start(0.010)
    factory = AMIFactory(dispatcher, reactor, ping_interval=None)

    def connected(protocol) -> None:
        stats["start"] = time.perf_counter()
        link["protocol"] = protocol

    TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory).addCallback(connected)
    reactor.run()
    server.wait(10)
    stats["seconds"] = stats["end"] - stats["start"]
    stats["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats["baseline_mb"] = baseline
    stats["calls_left"] = len(model.calls)
    return stats


def parse_only(total: int) -> tuple[int, float]:
    """MessageParser.feed in 64 KiB chunks + reading .event, no socket."""
    from ctid.protocols.amiwire import MessageParser

    parser = MessageParser(banner=True)
    parser.feed(b"Asterisk Call Manager/11.0.0\r\n")
    count, elapsed, chunk = 0, 0.0, 64 * 1024
    for _, blob in rounds(total):
        view = memoryview(blob)
        started = time.perf_counter()
        for start in range(0, len(blob), chunk):
            for message in parser.feed(bytes(view[start:start + chunk])):
                if message.event is not None:
                    count += 1
        elapsed += time.perf_counter() - started
    return count, elapsed


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--events", type=int, default=1_000_000)
    options.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.serve:
        serve(args.events)
        return
    stats = end_to_end(args.events)
    e2e = stats["events"] / stats["seconds"]
    parsed, seconds = parse_only(args.events)
    parse_rate = parsed / seconds
    print(f"events sent:               {args.events:,} ({len(round_template()):,} per round of {ROUND_CALLS} calls)")
    print(f"end to end:                {stats['events']:,} events in {stats['seconds']:.2f} s = {e2e:,.0f} events/s"
          f"  [target >= {TARGET_E2E:,}: {'ok' if e2e >= TARGET_E2E else 'MISSED'}]")
    print(f"parse only:                {parsed:,} events in {seconds:.2f} s = {parse_rate:,.0f} events/s"
          f"  [target >= {TARGET_PARSE:,}: {'ok' if parse_rate >= TARGET_PARSE else 'MISSED'}]")
    print(f"longest reactor stall:     {stats['stall'] * 1000:.1f} ms"
          f"  [target < {TARGET_STALL * 1000:.0f} ms: {'ok' if stats['stall'] < TARGET_STALL else 'MISSED'}]")
    print(f"peak RSS (reader process): {stats['rss_mb']:.0f} MiB after end to end"
          f" ({stats['baseline_mb']:.0f} MiB after imports)")
    print(f"calls in the model:        {stats['max_calls']} open at the end (last round cut mid-calls if partial)")


if __name__ == "__main__":
    main()
