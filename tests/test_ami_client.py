"""AMIClientService: login in prepareConnection, reconnect with backoff, link callbacks, keepalive."""

from __future__ import annotations

import hashlib

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.test import iosim

from ctid.protocols.ami import AMIClientService, AMIError, EventDispatcher
from ctid.protocols.amiwire import MessageParser, format_message

CHALLENGE = "1234567890"


class FakeAsterisk(Protocol):
    """A tiny AMI server: banner, Challenge, Login (plain or MD5), Ping; everything else is refused."""

    def __init__(self, server: FakeAsteriskFactory):
        self.server = server
        self.parser = MessageParser()

    def connectionMade(self):
        self.server.connections.append(self)
        if self.server.send_banner:
            self.transport.write(b"Asterisk Call Manager/11.0.0\r\n")

    def dataReceived(self, data):
        for message in self.parser.feed(data):
            self.server.actions.append(message)
            getattr(self, "do_" + message.get("Action", "").lower(), self.do_unknown)(message)

    def reply(self, message, response="Success", **headers):
        self.transport.write(
            format_message([("Response", response), ("ActionID", message.action_id), *headers.items()])
        )

    def do_challenge(self, message):
        self.reply(message, Challenge=CHALLENGE)

    def do_login(self, message):
        if self.server.ignore_login:
            return
        if self.server.hang_up_on_login:
            self.transport.loseConnection()
            return
        expected = hashlib.md5((CHALLENGE + self.server.secret).encode()).hexdigest()
        secret_ok = message.get("Secret") == self.server.secret or message.get("Key") == expected
        if message.get("Username") != self.server.username or not secret_ok:
            self.reply(message, "Error", Message="Authentication failed")
            return
        self.server.logins += 1
        self.reply(message, Message="Authentication accepted")
        self.transport.write(
            format_message({"Event": "FullyBooted", "Privilege": "system,all", "Status": "Fully Booted"})
        )

    def do_ping(self, message):
        if self.server.answer_ping:
            self.reply(message, Ping="Pong", Timestamp="1795342906.000000")

    def do_unknown(self, message):
        self.reply(message, "Error", Message="Invalid/unknown command")


class FakeAsteriskFactory(Factory):
    """Builds FakeAsterisk connections and records what they saw."""

    noisy = False

    def __init__(self, username="ctid", secret="s3cret", send_banner=True, answer_ping=True, hang_up_on_login=False,
                 ignore_login=False):
        self.username, self.secret = username, secret
        self.send_banner, self.answer_ping, self.hang_up_on_login = send_banner, answer_ping, hang_up_on_login
        self.ignore_login = ignore_login
        self.connections: list[FakeAsterisk] = []
        self.actions = []
        self.logins = 0

    def buildProtocol(self, addr):
        return FakeAsterisk(self)


@pytest.fixture
def logged():
    """Every log event emitted during the test."""
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def answer(reactor: MemoryReactorClock, server: FakeAsteriskFactory) -> iosim.IOPump:
    """Connect the service's latest connection attempt to ``server`` in memory."""
    _, _, factory, _, _ = reactor.tcpClients[-1]
    client, peer = factory.buildProtocol(None), server.buildProtocol(None)
    return iosim.connect(peer, iosim.makeFakeServer(peer), client, iosim.makeFakeClient(client), clock=reactor)


def make_service(reactor, secret="s3cret", **kwargs):
    service = AMIClientService(
        TCP4ClientEndpoint(reactor, "pbx.example", 5038),
        "ctid",
        secret,
        clock=reactor,
        retry_policy=lambda attempt: 1.0,
        **kwargs,
    )
    connected, lost = [], []
    service.add_connected_callback(connected.append)
    service.add_disconnected_callback(lost.append)
    service.startService()
    return service, connected, lost


@pytest_twisted.ensureDeferred
async def test_reconnects_and_logs_in_again_over_tcp(logged):
    """Over real loopback TCP: login, ping, server drops us, the service reconnects and logs in again."""
    from twisted.internet import reactor

    server = FakeAsteriskFactory()
    port = reactor.listenTCP(0, server, interface="127.0.0.1")
    dispatcher = EventDispatcher()
    booted = []
    dispatcher.register("FullyBooted", booted.append)
    service = AMIClientService(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        "ctid",
        "s3cret",
        dispatcher=dispatcher,
        retry_policy=lambda attempt: 0.05,
    )
    connected, lost, second = [], [], Deferred()
    service.add_connected_callback(connected.append)
    service.add_connected_callback(lambda p: len(connected) == 2 and second.callback(p))
    service.add_disconnected_callback(lost.append)
    service.startService()
    try:
        first = await service.whenConnected(failAfterFailures=3)
        assert service.protocol is first and first.logged_in and connected == [first]
        assert (await first.ping()).get("Ping") == "Pong"
        server.connections[-1].transport.loseConnection()
        again = await second.addTimeout(5, reactor)
        assert again is not first and service.protocol is again and again.logged_in
        assert len(lost) == 1 and lost[0].check(ConnectionDone)
        await again.ping()
        assert server.logins == 2 and len(booted) == 2
        keys = [m.get("Key") for m in server.actions if m.get("Action") == "Login"]
        assert keys == [hashlib.md5(b"1234567890s3cret").hexdigest()] * 2
    finally:
        await service.stopService()
        await port.stopListening()
    assert len(lost) == 2 and service.protocol is None
    hello = [e for e in logged if e.get("log_format", "").startswith("AMI connected to")]
    assert [(e["version"], e["username"]) for e in hello] == [("11.0.0", "ctid")] * 2
    assert [e["log_level"] for e in logged if e.get("log_format", "").startswith("AMI link lost")] == [LogLevel.warn]


@pytest.mark.allow_logged_errors
def test_login_failure_logged_dropped_and_retried(logged):
    """A refused login logs a clear error (without the secret), drops the link and retries with backoff."""
    reactor = MemoryReactorClock()
    service, connected, lost = make_service(reactor, secret="wrong-secret")
    waiting = service.whenConnected(failAfterFailures=2)
    server = FakeAsteriskFactory()
    answer(reactor, server).flush()
    assert server.connections[0].transport.disconnected and not waiting.called
    reactor.advance(1.0)
    assert len(reactor.tcpClients) == 2
    answer(reactor, server).flush()
    assert isinstance(waiting.result.value, AMIError) and str(waiting.result.value) == "Authentication failed"
    waiting.addErrback(lambda f: None)
    errors = [e for e in logged if e["log_level"] >= LogLevel.error]
    assert [(e["log_format"], e["username"], e["error"]) for e in errors] == [
        ("AMI login failed for user {username}: {error}", "ctid", "Authentication failed")
    ] * 2
    assert not any("wrong-secret" in repr(e) for e in logged)
    assert connected == [] and lost == [] and service.protocol is None
    service.stopService()


def test_connection_lost_during_login_is_retried_quietly(logged):
    """A server that hangs up during login counts as a failed attempt; no errors, another attempt follows."""
    reactor = MemoryReactorClock()
    service, connected, lost = make_service(reactor)
    answer(reactor, FakeAsteriskFactory(hang_up_on_login=True)).flush()
    assert connected == [] and lost == []
    reactor.advance(1.0)
    assert len(reactor.tcpClients) == 2
    answer(reactor, FakeAsteriskFactory()).flush()
    assert len(connected) == 1 and service.protocol is connected[0]
    assert any(e.get("log_format", "").startswith("AMI login as") for e in logged)
    service.stopService()


def test_no_banner_times_out():
    """A peer that never sends the banner is dropped after action_timeout and retried."""
    reactor = MemoryReactorClock()
    service, connected, _ = make_service(reactor, action_timeout=3.0)
    server = FakeAsteriskFactory(send_banner=False)
    pump = answer(reactor, server)
    reactor.advance(3.0)
    pump.flush()
    assert server.connections[0].transport.disconnected and connected == []
    reactor.advance(1.0)
    assert len(reactor.tcpClients) == 2
    service.stopService()


def test_keepalive_failure_reconnects():
    """A silent server fails the keepalive ping: the link drops, on_disconnected runs, the service logs in again."""
    reactor = MemoryReactorClock()
    service, connected, lost = make_service(reactor, ping_interval=20.0, ping_timeout=5.0)
    server = FakeAsteriskFactory(answer_ping=False)
    pump = answer(reactor, server)
    assert len(connected) == 1
    reactor.advance(20.0)
    pump.flush()
    assert [m.get("Action") for m in server.actions][-1] == "Ping" and lost == []
    reactor.advance(5.0)
    pump.flush()
    assert len(lost) == 1 and service.protocol is None
    reactor.advance(1.0)
    answer(reactor, FakeAsteriskFactory())
    assert len(connected) == 2 and service.protocol is connected[1] and connected[1] is not connected[0]
    service.stopService()


def test_stop_service_closes_link(logged):
    """stopService closes the logged-in link, runs on_disconnected and does not reconnect."""
    reactor = MemoryReactorClock()
    service, connected, lost = make_service(reactor)
    pump = answer(reactor, FakeAsteriskFactory())
    late = []
    service.add_connected_callback(late.append)
    assert late == connected and len(connected) == 1
    stopped = service.stopService()
    pump.flush()
    assert stopped.called and len(lost) == 1 and service.protocol is None
    reactor.advance(60)
    assert len(reactor.tcpClients) == 1
    assert any(e.get("log_format", "").startswith("AMI link closed") for e in logged)
    waiting = service.whenConnected()
    assert waiting.called
    waiting.addErrback(lambda f: None)


def test_stop_during_login(logged):
    """Stopping while the login is unanswered closes the connection quietly and fires the stop Deferred."""
    reactor = MemoryReactorClock()
    service, connected, lost = make_service(reactor)
    server = FakeAsteriskFactory(ignore_login=True)
    pump = answer(reactor, server)
    stopped = service.stopService()
    pump.flush()
    assert stopped.called and server.connections[0].transport.disconnected
    assert connected == [] and lost == []
    assert not [e for e in logged if e["log_level"] >= LogLevel.warn]
    reactor.advance(60)
    assert len(reactor.tcpClients) == 1
