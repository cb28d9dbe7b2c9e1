"""CTI client library: requests and events over loopback TCP, resume after a drop, heartbeats, timeouts."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ctid.client import CTIClient, CTIClientError, CTIConnection, CTIConnectionLost, CTIRequestTimeout
from ctid.protocols.cti import CTIServerFactory
from ctid.protocols.cticodec import CTIError, Event, encode_error, encode_event, encode_result
from tests.test_cti import EchoHandler


class LiveServer:
    """A CTI server with an EchoHandler listening on a free loopback port."""

    def __init__(self, reactor, **settings):
        self.reactor = reactor
        self.handler = EchoHandler()
        self.factory = CTIServerFactory(self.handler, reactor, server_version="ctid/test", **settings)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.endpoint = f"tcp:127.0.0.1:{self.port.getHost().port}:timeout=2"

    def session(self):
        [session] = list(self.factory.registry)
        return session

    def drop(self):
        """Abort every server-side connection, as a network failure would."""
        for protocol in list(self.factory.connections):
            protocol.transport.abortConnection()

    async def stop(self):
        await self.port.stopListening()
        await self.factory.shutdown()
        for waiting in self.handler.hanging:  # commands outlive their connection: finish them
            if not waiting.called:
                waiting.callback({})


@pytest_twisted.async_yield_fixture
async def live():
    """A live server; stopped (and every connection closed) after the test."""
    from twisted.internet import reactor

    server = LiveServer(reactor)
    yield server
    await server.stop()


async def wait_for(reactor, condition, timeout=3.0):
    """Poll ``condition`` on the real reactor (loopback tests only) until true or ``timeout``."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await deferLater(reactor, 0.01)
    raise AssertionError("condition not reached in time")


def make_client(reactor, **kwargs) -> CTIClient:
    return CTIClient(reactor, name="test-client/1", retry_policy=lambda attempt: 0.05, **kwargs)


# --- over loopback TCP


@pytest_twisted.ensureDeferred
async def test_call_response_and_events(live):
    """connect greets, calls return results, events reach named and catch-all handlers once each."""
    client = make_client(live.reactor)
    info = await client.connect(live.endpoint)
    assert (info.version, info.server, info.resumed, info.max_line) == (1, "ctid/test", False, 65536)
    assert (await client.hello()) is info and client.connected
    ticks, everything = [], []
    client.on_event("Tick", ticks.append)
    client.on_event(None, everything.append)
    assert await client.call("Emit", count=3) == {"seqs": [1, 2, 3]}
    assert [(e.seq, e.data) for e in ticks] == [(1, {"n": 0}), (2, {"n": 1}), (3, {"n": 2})]
    assert everything == ticks and client.last_seq == 3
    assert await client.request("Echo", {"timeout": 5}) == {"timeout": 5}
    await client.close()


@pytest_twisted.ensureDeferred
async def test_refusal_raises_client_error(live):
    """A server refusal raises CTIClientError with its code, message and data; the connection stays."""
    client = make_client(live.reactor)
    await client.connect(live.endpoint)
    with pytest.raises(CTIClientError) as caught:
        await client.call("Refuse")
    assert (caught.value.code, caught.value.message, caught.value.data) == (
        "agent_busy", "the agent is on a call", {"call": "c1"})
    with pytest.raises(CTIClientError, match="login_required"):
        await client.call("Whoami")
    assert client.connected
    await client.close()


@pytest_twisted.ensureDeferred
async def test_dropped_connection_resumes_and_delivers_missed_events_once(live):
    """After a drop the client resumes (no second login) and gets every missed event exactly once, in order."""
    logins = []

    async def setup(connection):
        logins.append(await connection.call("Login", agent="1001", password="secret"))

    client = make_client(live.reactor, setup=setup)
    sessions, seqs = [], []
    client.on_session(sessions.append)
    client.on_event(None, lambda event: seqs.append(event.seq))
    await client.connect(live.endpoint)
    await client.call("Emit", count=2)
    session = live.session()
    live.drop()
    session.send_event("Tick", {"during": "drop"})
    await wait_for(live.reactor, lambda: not session.connected)
    for n in range(3):
        session.send_event("Tick", {"missed": n})
    await wait_for(live.reactor, lambda: len(sessions) == 2)
    assert sessions[1].resumed and sessions[1].replay == 4 and sessions[1].session == sessions[0].session
    await wait_for(live.reactor, lambda: len(seqs) >= 6)
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert await client.call("Whoami") == {"identity": {"agent": "1001"}}
    assert len(logins) == 1 and live.handler.notes[-1][0] == "resumed"
    await client.close()


@pytest_twisted.ensureDeferred
async def test_expired_session_starts_over_with_hello_and_setup():
    """When the session expired during the outage, the client says Hello again and re-runs setup."""
    from twisted.internet import reactor

    live = LiveServer(reactor, resume_grace=0.05)
    setups = []
    client = CTIClient(reactor, retry_policy=lambda attempt: 0.3,
                       setup=lambda connection: setups.append(connection.call("Login", agent="7", password="secret")))
    sessions, seqs = [], []
    client.on_session(sessions.append)
    client.on_event(None, lambda event: seqs.append(event.seq))
    try:
        await client.connect(live.endpoint)
        await client.call("Emit", count=2)
        live.drop()
        await wait_for(reactor, lambda: len(sessions) == 2)
        assert not sessions[1].resumed and sessions[1].session != sessions[0].session
        assert len(setups) == 2 and client.last_seq == 0
        await client.call("Emit")
        assert seqs == [1, 2, 1]
    finally:
        await client.close()
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_session_ended_by_the_server_stops_the_client(live):
    """After session_ended (a forced logout) the client stops: no resume, no new login, calls fail."""
    logins = []
    client = make_client(live.reactor, setup=lambda connection: logins.append(connection))
    notices = []
    client.on_notice(notices.append)
    await client.connect(live.endpoint)
    live.session().end("forced_logout", "logged out by a supervisor")
    await wait_for(live.reactor, lambda: not client.connected)
    await deferLater(live.reactor, 0.2)
    assert [(n.code, n.data) for n in notices] == [("session_ended", {"reason": "forced_logout"})]
    assert client.ended is notices[0] and len(logins) == 1 and len(live.factory.registry) == 0
    with pytest.raises(CTIConnectionLost):
        await client.call("Echo")
    await client.close()


@pytest_twisted.ensureDeferred
async def test_request_timeout_and_connection_lost(live):
    """A request with no answer times out; one in flight when the link drops fails with CTIConnectionLost."""
    client = make_client(live.reactor)
    await client.connect(live.endpoint)
    with pytest.raises(CTIRequestTimeout):
        await client.request("Hang", timeout=0.1)
    hanging = client.call("Hang")
    await wait_for(live.reactor, lambda: len(live.handler.hanging) == 2)
    live.drop()
    with pytest.raises(CTIConnectionLost):
        await hanging
    assert await client.call("Echo", back=True) == {"back": True}
    await client.close()


@pytest_twisted.ensureDeferred
async def test_close_says_bye_and_stops(live):
    """close() ends the session on the server (bye), closes the connection and stops reconnecting."""
    client = make_client(live.reactor)
    await client.connect(live.endpoint)
    session = live.session()
    await client.close()
    assert session.ended and session.end_reason == "bye"
    assert not client.connected
    with pytest.raises(CTIConnectionLost):
        await client.call("Echo")
    await client.close()


@pytest_twisted.ensureDeferred
async def test_heartbeats_keep_an_idle_connection_alive():
    """With a short heartbeat, an idle client stays connected well past 3 intervals on both sides."""
    from twisted.internet import reactor

    live = LiveServer(reactor, heartbeat=0.05)
    client = make_client(reactor)
    sessions = []
    client.on_session(sessions.append)
    try:
        await client.connect(live.endpoint)
        await deferLater(reactor, 0.4)
        assert client.connected and len(sessions) == 1 and live.session().connected
    finally:
        await client.close()
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_connect_failures():
    """No server: connect fails with the connection error; no common version: unsupported_version."""
    from twisted.internet import reactor

    live = LiveServer(reactor)
    endpoint = live.endpoint
    await live.stop()
    with pytest.raises(ConnectionRefusedError):
        await make_client(reactor).connect(endpoint)
    live = LiveServer(reactor)
    try:
        with pytest.raises(CTIClientError, match="unsupported_version"):
            await make_client(reactor, versions=(9,)).connect(live.endpoint)
    finally:
        await live.stop()


# --- one connection, on a Clock


class Link:
    """A CTIConnection on a StringTransport and a Clock, recording events and notices."""

    def __init__(self):
        self.clock = Clock()
        self.events, self.notices = [], []
        self.connection = CTIConnection(self.clock, on_event=self.events.append, on_notice=self.notices.append,
                                        request_timeout=5.0)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)

    def sent(self) -> list[dict]:
        data = self.transport.value()
        self.transport.clear()
        return [json.loads(line) for line in data.split(b"\n")[:-1]]


def outcome(deferred: Deferred):
    out = []
    deferred.addBoth(out.append)
    assert out, "not fired"
    return out[0]


def test_connection_pairs_responses_and_routes_the_rest():
    """Responses go to their request by id; events, notices and heartbeats go elsewhere; junk is ignored."""
    link = Link()
    first, second = link.connection.call("Echo", a=1), link.connection.request("Refuse")
    assert link.sent() == [{"id": 1, "cmd": "Echo", "args": {"a": 1}}, {"id": 2, "cmd": "Refuse"}]
    link.connection.dataReceived(
        encode_event("Tick", 1, 1.0, {})
        + b'{"heartbeat":3.0}\nnot json\n{"id":99,"ok":true,"result":{}}\n'
        + encode_error(2, CTIError("agent_busy", "busy"))
        + encode_result(1, {"a": 1})
        + encode_error(None, CTIError("slow_consumer", "read faster"))
    )
    assert outcome(first) == {"a": 1}
    assert outcome(second).value.code == "agent_busy"
    assert link.events == [Event("Tick", 1, 1.0, {})]
    assert [n.code for n in link.notices] == ["slow_consumer"]


def test_connection_timeouts_and_loss():
    """Requests time out on the clock; those still pending fail with CTIConnectionLost when the link drops."""
    link = Link()
    slow = link.connection.call("Hang")
    link.clock.advance(5)
    assert outcome(slow).check(CTIRequestTimeout)
    pending = link.connection.call("Hang")
    link.connection.connectionLost(Failure(ConnectionDone()))
    assert outcome(pending).check(CTIConnectionLost)
    assert outcome(link.connection.call("Echo")).check(CTIConnectionLost)


def test_connection_heartbeat_and_silence():
    """The client sends Heartbeat every interval and drops a connection silent for 3 intervals."""
    link = Link()
    link.connection.start_heartbeat(10)
    link.clock.advance(10)
    assert [m["cmd"] for m in link.sent()] == ["Heartbeat"]
    link.connection.dataReceived(b'{"heartbeat":1.0}\n')
    link.clock.advance(20)
    assert not link.transport.disconnecting
    link.clock.advance(10)
    assert link.transport.disconnecting


def test_oversized_request_is_not_sent():
    """A request longer than the line limit fails locally and is never written (the server would close)."""
    link = Link()
    failed = link.connection.call("Echo", blob="x" * 70_000)
    assert outcome(failed).value.code == "line_too_long" and link.transport.value() == b""


def test_client_skips_replayed_events_it_already_has():
    """Events with a seq already seen are dropped, so each reaches handlers once."""
    client = CTIClient(Clock())
    seen = []
    client.on_event("Tick", seen.append)
    for seq in (1, 2, 2, 1, 3):
        client._event(Event("Tick", seq, 0.0, {}))
    assert [e.seq for e in seen] == [1, 2, 3]


def self_signed(cert_path, key_path) -> None:
    """Write a self-signed certificate for ``localhost`` and its key."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


@pytest_twisted.ensureDeferred
async def test_tls_is_only_a_different_endpoint_string(tmp_path):
    """The same server factory and client run over TLS by changing the endpoint strings only."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    roots = tmp_path / "roots"  # trustRoots reads every file in the folder: the certificate only
    roots.mkdir()
    cert, key = roots / "cert.pem", tmp_path / "key.pem"
    self_signed(cert, key)
    factory = CTIServerFactory(EchoHandler(), reactor, server_version="ctid/test")
    port = await serverFromString(reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}").listen(
        factory)
    client = make_client(reactor)
    try:
        info = await client.connect(f"tls:localhost:{port.getHost().port}:trustRoots={roots}:timeout=2")
        assert info.version == 1
        assert await client.call("Emit", count=2) == {"seqs": [1, 2]}
        assert client.last_seq == 2
    finally:
        await client.close()
        await port.stopListening()
        await factory.shutdown()
