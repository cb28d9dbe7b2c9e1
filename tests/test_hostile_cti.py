"""Hostile CTI clients over loopback TCP: garbage, a huge line, a flood, half-open connections (silent, or not
reading), too many connections from one address.  Each is cut off with its notice; a well-behaved client is
answered throughout."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater

from ctid.protocols.cti import CTIServerFactory
from tests.test_cti import EchoHandler

HELLO = b'{"id":"h","cmd":"Hello","args":{"versions":[1]}}\n'
LIMITS = dict(max_line=4096, heartbeat=0.4, rate=100.0, burst=20, flood_seconds=0.5, max_bad_lines=5,
              max_per_address=4, max_pending_bytes=128 * 1024, replay_bytes=64 << 20, close_timeout=0.5)


class Raw(Protocol):
    """A raw loopback client: what it received, and a Deferred firing when the connection closes."""

    def __init__(self):
        self.data = b""
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason=None) -> None:
        self.closed.callback(None)

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.data.splitlines() if line]

    def notice(self) -> str | None:
        """The code of the last connection notice (an error with id null), if any."""
        notices = [m["error"]["code"] for m in self.lines() if m.get("id", 0) is None and "error" in m]
        return notices[-1] if notices else None


@pytest_twisted.async_yield_fixture
async def server():
    """A CTI server with tight limits on a free loopback port; yields (factory, port number)."""
    factory = CTIServerFactory(EchoHandler(), reactor, server_version="ctid/test", **LIMITS)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    yield factory, port.getHost().port
    await port.stopListening()
    await factory.shutdown()


async def connect(port: int) -> Raw:
    client = Raw()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2), client)
    return client


async def wait(condition, what: str, limit: float = 10.0):
    waited = 0.0
    while not condition():
        assert waited < limit, f"timed out waiting for {what}"
        await deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


async def assert_served(port: int) -> None:
    """A well-behaved client says Hello and gets an Echo answered."""
    client = await connect(port)
    client.transport.write(HELLO + b'{"id":2,"cmd":"Echo","args":{"still":"here"}}\n')
    await wait(lambda: len(client.lines()) >= 2, "the good client's answers")
    assert [m.get("ok") for m in client.lines()[:2]] == [True, True]
    assert client.lines()[1]["result"] == {"still": "here"}
    client.transport.loseConnection()
    await client.closed


async def closed_with(client: Raw, code: str) -> None:
    await client.closed
    assert client.notice() == code


@pytest_twisted.ensureDeferred
async def test_garbage_is_answered_then_cut_off(server):
    """Unreadable lines get bad_json answers; after max_bad_lines in a row: protocol_error and closed."""
    factory, port = server
    hostile = await connect(port)
    hostile.transport.write(b"\x00\xff garbage\n{not json\n[1,2]\n" + b"\xc3\x28\n" * 10)
    await assert_served(port)
    await closed_with(hostile, "protocol_error")
    assert {m["error"]["code"] for m in hostile.lines() if m.get("id", 0) is None} >= {"bad_json"}
    await assert_served(port)


@pytest_twisted.ensureDeferred
async def test_a_huge_line_is_cut_off_without_buffering_it(server):
    """A line past max_line closes the connection at once (line_too_long), while it is still being sent."""
    factory, port = server
    hostile = await connect(port)
    hostile.transport.write(HELLO + b'{"id":1,"cmd":"Echo","args":{"x":"' + b"y" * 50_000)
    await closed_with(hostile, "line_too_long")
    assert not factory.connections or all(c.closing for c in factory.connections)
    await assert_served(port)


@pytest_twisted.ensureDeferred
async def test_a_flood_is_rate_limited_then_cut_off(server):
    """Requests past the burst answer rate_limited; flooding on for flood_seconds closes the connection."""
    factory, port = server
    hostile = await connect(port)
    hostile.transport.write(HELLO)
    n = 0
    while hostile.transport.connected and n < 2000:
        hostile.transport.write(b"".join(b'{"id":%d,"cmd":"Echo"}\n' % (n + i) for i in range(20)))
        n += 20
        await deferLater(reactor, 0.01, lambda: None)
        if n == 200:
            await assert_served(port)
    await closed_with(hostile, "rate_limited")
    assert any(m.get("error", {}).get("code") == "rate_limited" for m in hostile.lines() if m.get("id") is not None)
    await assert_served(port)


@pytest_twisted.ensureDeferred
async def test_half_open_connections_are_closed(server):
    """A client that connects and says nothing, or says Hello and then nothing, is closed after 3 heartbeats."""
    factory, port = server
    silent, mute = await connect(port), await connect(port)
    mute.transport.write(HELLO)
    await assert_served(port)
    await closed_with(silent, "heartbeat_timeout")
    await closed_with(mute, "heartbeat_timeout")
    await assert_served(port)


@pytest_twisted.ensureDeferred
async def test_a_client_that_stops_reading_is_cut_off(server):
    """A client that stops reading while events pile up is told slow_consumer; memory stays within the limit."""
    factory, port = server
    hostile = await connect(port)
    hostile.transport.write(HELLO)
    await wait(lambda: factory.connections and all(c.session for c in factory.connections), "the session")
    [connection] = factory.connections
    hostile.transport.pauseProducing()
    for _ in range(500):
        for _ in range(10):
            connection.session.send_event("Blob", {"x": "z" * 3000})
        await deferLater(reactor, 0.005, lambda: None)
        if connection.closing:
            break
    assert connection.closing and connection.session is not None and not connection.session.connected
    await assert_served(port)
    hostile.transport.resumeProducing()
    await closed_with(hostile, "slow_consumer")


@pytest_twisted.ensureDeferred
async def test_connections_per_address_are_limited(server):
    """Past max_per_address open connections, the next is told too_many_connections; a freed slot is reusable."""
    factory, port = server
    held = [await connect(port) for _ in range(LIMITS["max_per_address"])]
    for client in held:
        client.transport.write(HELLO)
    await wait(lambda: all(client.lines() for client in held), "the held connections' greetings")
    extra = await connect(port)
    await closed_with(extra, "too_many_connections")
    held[0].transport.loseConnection()
    await held[0].closed
    await wait(lambda: len(factory.connections) < LIMITS["max_per_address"], "the slot to be freed")
    await assert_served(port)
    for client in held[1:]:
        client.transport.loseConnection()
        await client.closed


@pytest.mark.parametrize("line", [
    b'{"id":1,"cmd":"Hello","args":{"versions":[' + b"1," * 40 + b'1]}}',
    b'{"id":1,"cmd":"Hello","args":{"versions":"1"}}',
    b'{"id":1,"cmd":"Resume","args":{"session":"x","last_seq":-1}}',
    b'{"id":1,"cmd":"Login"}',
    b'{"id":' + b"9" * 40 + b',"cmd":"Echo"}',
    b'{"id":1,"cmd":"Echo","args":' + b"[" * 3000 + b"]" * 3000 + b"}",
])
@pytest_twisted.ensureDeferred
async def test_malformed_greetings_get_an_answer_and_the_server_lives_on(server, line):
    """Odd Hello/Resume/nesting/ids are answered with an error (or a refusal); the server keeps serving."""
    factory, port = server
    hostile = await connect(port)
    hostile.transport.write(line + b"\n")
    await wait(lambda: hostile.lines(), "an answer")
    assert "error" in hostile.lines()[0]
    hostile.transport.loseConnection()
    await hostile.closed
    await assert_served(port)
