"""CTI server: hello, one answer per request, events and seq, heartbeats, resume, backpressure, limits."""

from __future__ import annotations

import gc
import json

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from ctid.protocols.cti import (
    CommandRouter,
    ConnectionState,
    CTIError,
    CTIServerFactory,
    CTISettings,
    ICTIHandler,
    ICTISession,
    TokenBucket,
    require_login,
)
from ctid.protocols.ctiapi import broadcast
from ctid.protocols.ctireplay import ReplayBuffer

HB = 15.0


class EchoHandler(CommandRouter):
    """A test handler: echo, login, events on demand, refusals, crashes, hangs; records notifications."""

    def __init__(self):
        super().__init__()
        self.notes: list[tuple[str, str, str | None]] = []
        self.hanging: list[Deferred] = []
        self.add("Echo", lambda session, args: dict(args), login=False)
        self.add("Login", self._login, login=False)
        self.add("Whoami", lambda session, args: {"identity": session.identity})
        self.add("Emit", self._emit, login=False)
        self.add("Refuse", self._refuse, login=False)
        self.add("Crash", self._crash, login=False)
        self.add("Hang", self._hang, login=False)
        self.add("NotDict", lambda session, args: [1, 2], login=False)

    def _login(self, session, args):
        if args.get("password") != "secret":
            raise CTIError("bad_credentials", "wrong agent or password")
        session.login({"agent": args["agent"]})
        return {"agent": args["agent"], "state": "not_ready"}

    async def _emit(self, session, args):
        seqs = [session.send_event(args.get("name", "Tick"), {"n": n}) for n in range(args.get("count", 1))]
        return {"seqs": seqs}

    def _refuse(self, session, args):
        raise CTIError("agent_busy", "the agent is on a call", {"call": "c1"})

    def _crash(self, session, args):
        raise RuntimeError("handler bug")

    def _hang(self, session, args):
        waiting = Deferred()
        self.hanging.append(waiting)
        return waiting

    def session_closed(self, session):
        self.notes.append(("closed", session.tag, session.end_reason))

    def session_resumed(self, session):
        self.notes.append(("resumed", session.tag, session.end_reason))

    def session_expired(self, session):
        self.notes.append(("expired", session.tag, session.end_reason))


class Server:
    """A CTIServerFactory with an EchoHandler on a Clock."""

    def __init__(self, **settings):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.handler = EchoHandler()
        self.factory = CTIServerFactory(self.handler, self.clock, server_version="ctid/test", **settings)

    def connect(self, host="10.0.0.1", port=40001) -> Peer:
        return Peer(self, host, port)


class Peer:
    """One client connection over a StringTransport."""

    def __init__(self, server: Server, host: str, port: int):
        self.server = server
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.protocol = server.factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        self._ids = iter(range(1, 1_000_000))

    def send_raw(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def send(self, message: dict) -> None:
        self.send_raw(json.dumps(message).encode() + b"\n")

    def received(self, heartbeats: bool = False) -> list[dict]:
        """The messages written since the last call (server heartbeats left out unless asked for)."""
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\n")
        messages = [json.loads(line) for line in data.split(b"\n")[:-1]]
        return [m for m in messages if heartbeats or "heartbeat" not in m]

    def request(self, cmd: str, args: dict | None = None, request_id=None) -> dict:
        """Send one request; return its single response (other messages must not be pending)."""
        request_id = next(self._ids) if request_id is None else request_id
        message = {"id": request_id, "cmd": cmd}
        if args is not None:
            message["args"] = args
        self.send(message)
        [response] = [m for m in self.received() if m.get("id") == request_id and "ok" in m]
        return response

    def hello(self, **args) -> dict:
        response = self.request("Hello", {"versions": [1], "client": "test/1", **args})
        assert response["ok"], response
        return response["result"]

    def login(self) -> None:
        assert self.request("Login", {"agent": "1001", "password": "secret"})["ok"]

    @property
    def closing(self) -> bool:
        return self.transport.disconnecting

    def lost(self) -> None:
        """The TCP connection is gone (as the reactor would report it)."""
        self.protocol.connectionLost(Failure(ConnectionDone()))


def error_of(response: dict) -> tuple[str, str]:
    assert response["ok"] is False, response
    return response["error"]["code"], response["error"]["message"]


@pytest.fixture
def server():
    """A server with default settings on a Clock."""
    return Server()


@pytest.fixture
def logged():
    """Every log event emitted during the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


# --- interfaces


def test_handler_and_session_provide_their_interfaces(server):
    """The router base class provides ICTIHandler; sessions provide ICTISession."""
    assert verifyObject(ICTIHandler, server.handler)
    peer = server.connect()
    peer.hello()
    assert verifyObject(ICTISession, peer.protocol.session)


def test_connection_states_follow_the_table():
    """A connection goes greeting -> open -> closing -> closed, as the trace hook shows."""
    moves = []
    server = Server()
    server.factory.trace = lambda old, new: moves.append((old.value, new.value))
    peer = server.connect()
    peer.hello()
    peer.request("Bye")
    peer.lost()
    assert moves == [("greeting", "open"), ("open", "closing"), ("closing", "closed")]
    assert peer.protocol.state is ConnectionState.CLOSED


def test_settings_are_validated():
    """Bad limits are refused once, at construction, naming the setting."""
    with pytest.raises(ValueError, match="heartbeat"):
        CTISettings(heartbeat=0)
    with pytest.raises(ValueError, match="burst"):
        CTISettings(burst=1.5)
    with pytest.raises(TypeError):
        CTIServerFactory(EchoHandler(), Clock(), hearbeat=3)


# --- hello


def test_hello_negotiates_and_describes_the_server(server):
    """Hello picks the highest common version and returns the limits a client needs."""
    peer = server.connect()
    result = peer.hello(versions=[2, 1, 99])
    token = result.pop("session")
    assert len(token) >= 40 and peer.protocol.session.token == token
    assert result == {
        "version": 1,
        "server": "ctid/test",
        "heartbeat": 15.0,
        "max_line": 65536,
        "resume_grace": 60.0,
        "limits": {"rate": 50.0, "burst": 100, "max_in_flight": 64, "request_timeout": 30.0, "replay_limit": 10000},
    }
    assert peer.protocol.session.client == "test/1" and not peer.closing


def test_hello_without_common_version_is_refused_and_closed(server):
    """No version in common: unsupported_version listing ours, then the connection closes."""
    peer = server.connect()
    response = peer.request("Hello", {"versions": [7, 8]})
    assert error_of(response)[0] == "unsupported_version"
    assert response["error"]["data"] == {"versions": [1]}
    assert peer.closing and len(server.factory.registry) == 0


@pytest.mark.parametrize("args", [{}, {"versions": []}, {"versions": ["1"]}, {"versions": [1], "client": 5}])
def test_malformed_hello_is_bad_request(server, args):
    """Hello without a list of integer versions is bad_request; the connection stays up."""
    peer = server.connect()
    assert error_of(peer.request("Hello", args))[0] == "bad_request"
    assert not peer.closing
    peer.hello()


def test_commands_before_hello_get_hello_required(server):
    """Handler commands need a session; Heartbeat works before Hello; nothing reaches the handler."""
    peer = server.connect()
    assert error_of(peer.request("Echo", {"x": 1}))[0] == "hello_required"
    assert peer.request("Heartbeat")["result"] == {"at": server.clock.seconds()}
    assert not peer.closing


def test_second_hello_is_refused(server):
    """A connection carries one session: a second Hello or a Resume after Hello is bad_request."""
    peer = server.connect()
    token = peer.hello()["session"]
    assert error_of(peer.request("Hello", {"versions": [1]}))[0] == "bad_request"
    assert error_of(peer.request("Resume", {"session": token, "last_seq": 0}))[0] == "bad_request"
    assert len(server.factory.registry) == 1


# --- one answer per request


def test_handler_results_and_refusals(server):
    """Results come back with their id; CTIError refusals keep their code, message and data."""
    peer = server.connect()
    peer.hello()
    assert peer.request("Echo", {"x": [1, "二"]}, request_id="e-1") == {"id": "e-1", "ok": True,
                                                                          "result": {"x": [1, "二"]}}
    refused = peer.request("Refuse")
    assert refused["error"] == {"code": "agent_busy", "message": "the agent is on a call", "data": {"call": "c1"}}
    assert error_of(peer.request("NoSuchCommand"))[0] == "unknown_command"


def test_login_required_and_login(server):
    """require_login refuses until the handler logged the session in; bad credentials are refused."""
    peer = server.connect()
    peer.hello()
    assert error_of(peer.request("Whoami"))[0] == "login_required"
    assert error_of(peer.request("Login", {"agent": "1001", "password": "nope"}))[0] == "bad_credentials"
    peer.login()
    assert peer.request("Whoami")["result"] == {"identity": {"agent": "1001"}}
    assert require_login(peer.protocol.session) == {"agent": "1001"}


@pytest.mark.allow_logged_errors
def test_handler_crash_answers_internal_error_and_logs(server, logged):
    """An unexpected exception is answered internal_error exactly once and logged with the command, not args."""
    peer = server.connect()
    peer.hello()
    peer.send({"id": 9, "cmd": "Crash", "args": {"password": "hunter2"}})
    [response] = peer.received()
    assert response == {"id": 9, "ok": False, "error": {"code": "internal_error", "message": "internal error"}}
    errors = [e for e in logged if e["log_level"] == LogLevel.error]
    assert [e["command"] for e in errors] == ["Crash"] and errors[0]["log_failure"].check(RuntimeError)
    assert not any("hunter2" in repr(e) for e in logged)
    assert peer.request("Echo")["ok"]


@pytest.mark.allow_logged_errors
def test_unencodable_answers_are_internal_errors(server, logged):
    """Results that are not dicts, not JSON, or refusals with non-JSON data: internal_error, each logged."""
    peer = server.connect()
    peer.hello()
    server.handler.add("Weird", lambda session, args: {"when": object()}, login=False)

    def refuse_oddly(session, args):
        raise CTIError("agent_busy", "busy", {"when": object()})

    server.handler.add("RefuseOddly", refuse_oddly, login=False)
    for command in ("NotDict", "Weird", "RefuseOddly"):
        assert error_of(peer.request(command))[0] == "internal_error"
    assert len([e for e in logged if e["log_level"] == LogLevel.error]) == 3


def test_slow_command_times_out_once(server):
    """A command that never finishes is answered timeout after request_timeout, and only once."""
    peer = server.connect()
    peer.hello()
    peer.send({"id": "h", "cmd": "Hang"})
    server.clock.advance(29.9)
    assert peer.received() == []
    server.clock.advance(0.1)
    [response] = [m for m in peer.received() if "ok" in m]
    assert (response["id"], response["error"]["code"]) == ("h", "timeout")
    server.handler.hanging[0].callback({"late": True})
    assert [m for m in peer.received() if "ok" in m] == []


def test_answers_in_completion_order_and_duplicate_ids(server):
    """Responses come as commands finish; an id still running cannot be reused; after it finishes it can."""
    peer = server.connect()
    peer.hello()
    peer.send({"id": 1, "cmd": "Hang"})
    assert error_of(peer.request("Echo", request_id=1))[0] == "bad_request"
    assert peer.request("Echo", {"n": 2}, request_id=2)["result"] == {"n": 2}
    server.handler.hanging[0].callback({"n": 1})
    assert peer.received() == [{"id": 1, "ok": True, "result": {"n": 1}}]
    assert peer.request("Echo", request_id=1)["ok"]


def test_too_many_requests_in_flight_is_busy():
    """Past max_in_flight running commands, new ones are answered busy without running."""
    server = Server(max_in_flight=2)
    peer = server.connect()
    peer.hello()
    peer.send({"id": "a", "cmd": "Hang"})
    peer.send({"id": "b", "cmd": "Hang"})
    assert error_of(peer.request("Echo", request_id="c"))[0] == "busy"
    assert len(server.handler.hanging) == 2
    server.handler.hanging[0].callback({})
    assert peer.request("Echo", request_id="d")["ok"]


def test_answer_after_disconnect_is_dropped(server):
    """A command finishing after its connection closed writes nothing (responses are never replayed)."""
    peer = server.connect()
    peer.hello()
    peer.send({"id": "h", "cmd": "Hang"})
    peer.lost()
    peer.transport.clear()
    server.handler.hanging[0].callback({"done": True})
    assert peer.transport.value() == b""


# --- events


def test_events_numbered_per_session_from_one(server):
    """Each session numbers its events 1, 2, 3 …, independently; ``at`` is the clock's time."""
    first, second = server.connect(), server.connect(port=40002)
    first.hello()
    second.hello()
    first.send({"id": 1, "cmd": "Emit", "args": {"count": 3}})
    server.clock.advance(2)
    second.send({"id": 1, "cmd": "Emit", "args": {"count": 1}})
    events = [m for m in first.received() if "event" in m]
    assert [(e["event"], e["seq"], e["data"]) for e in events] == [("Tick", n + 1, {"n": n}) for n in range(3)]
    assert {e["at"] for e in events} == {1_700_000_000.0}
    [event] = [m for m in second.received() if "event" in m]
    assert (event["seq"], event["at"]) == (1, 1_700_000_002.0)


def test_event_written_before_the_response_that_caused_it(server):
    """Events sent while a command runs reach the client before that command's response."""
    peer = server.connect()
    peer.hello()
    peer.send({"id": 1, "cmd": "Emit", "args": {"count": 2}})
    assert [m.get("event", "response") for m in peer.received()] == ["Tick", "Tick", "response"]


def test_send_event_refuses_bad_events():
    """Bad names, non-JSON data and oversized events raise ValueError and take no seq."""
    server = Server(max_line=1024)
    peer = server.connect()
    peer.hello()
    session = peer.protocol.session
    with pytest.raises(ValueError):
        session.send_event("not-a-name")
    with pytest.raises(ValueError):
        session.send_event("Big", {"blob": "x" * 2000})
    with pytest.raises((TypeError, ValueError)):
        session.send_event("Odd", {"x": {1, 2}})
    assert session.send_event("Fine") == 1


def test_broadcast_numbers_one_encoding_per_session():
    """broadcast sends one event (one ``at``, one data) to many sessions, each numbering it in its own seq."""
    server = Server()
    first, second, gone = server.connect(), server.connect(port=40002), server.connect(port=40003)
    for peer in (first, second, gone):
        peer.hello()
    first.protocol.session.send_event("Before")
    gone.protocol.session.end()
    server.clock.advance(3)
    sessions = [p.protocol.session for p in (first, second, gone)]
    assert broadcast(sessions, "AgentStateChanged", {"agent": "1001"}) == 2
    [[one, two], [other]] = [[m for m in p.received() if "event" in m] for p in (first, second)]
    assert one["seq"] == 1 and two == {"seq": 2, "event": "AgentStateChanged", "at": 1_700_000_003.0,
                                       "data": {"agent": "1001"}}
    assert other == {**two, "seq": 1}


def test_broadcast_keeps_events_for_disconnected_sessions_and_refuses_bad_ones():
    """A dropped session gets the event on Resume; bad events raise before any session takes a seq."""
    server = Server(max_line=1024)
    peer = server.connect()
    token = peer.hello()["session"]
    session = peer.protocol.session
    peer.lost()
    with pytest.raises(ValueError):
        broadcast([session], "not-a-name", {})
    with pytest.raises(ValueError):
        broadcast([session], "Big", {"blob": "x" * 2000})
    with pytest.raises(TypeError):
        broadcast([session], "Odd", {"x": {1, 2}})
    with pytest.raises(ValueError):
        broadcast([], "not-a-name")
    assert broadcast([], "Nobody") == 0
    assert broadcast({session}, "Missed", {"n": 1}) == 1
    again, messages = drop_and_resume(server, peer, token, 0)
    assert [(m["event"], m["seq"], m["data"]) for m in messages[1:]] == [("Missed", 1, {"n": 1})]


def test_events_kept_for_replay_cost_the_garbage_collector_nothing():
    """An encoded event is a tuple of a float and bytes, shared by its recipients: the collector stops tracking it."""
    server = Server()
    entry = server.factory.registry.prepare("Tick", {"nested": {"list": [1, 2]}})
    gc.collect()
    assert not gc.is_tracked(entry)


# --- heartbeats


def test_server_heartbeat_only_when_idle(server):
    """The server writes {"heartbeat": at} after an interval with nothing else written."""
    peer = server.connect()
    peer.hello()
    server.clock.advance(10)
    peer.request("Echo")
    server.clock.advance(5)
    assert peer.received(heartbeats=True) == []
    server.clock.advance(10)
    assert peer.received(heartbeats=True) == [{"heartbeat": 1_700_000_025.0}]
    server.clock.advance(HB)
    assert peer.received(heartbeats=True) == [{"heartbeat": 1_700_000_040.0}]


def test_silent_client_is_closed_after_three_heartbeats_and_can_resume(server):
    """Nothing received for 3 intervals closes with heartbeat_timeout; the session waits for a resume."""
    peer = server.connect()
    token = peer.hello()["session"]
    server.clock.advance(3 * HB - 0.5)
    assert not peer.closing
    server.clock.advance(0.5)
    assert peer.closing
    assert peer.received()[-1]["error"]["code"] == "heartbeat_timeout"
    peer.lost()
    again = server.connect()
    assert again.request("Resume", {"session": token, "last_seq": 0})["ok"]


def test_client_heartbeats_keep_the_connection(server):
    """A client sending Heartbeat every interval stays connected indefinitely."""
    peer = server.connect()
    peer.hello()
    for _ in range(20):
        server.clock.advance(HB - 1)
        assert peer.request("Heartbeat")["ok"]
    assert not peer.closing


def test_no_hello_in_time_closes(server):
    """A connection that never says Hello or Resume is closed after 3 heartbeat intervals."""
    peer = server.connect()
    server.clock.advance(3 * HB)
    assert peer.closing and peer.received()[-1]["error"]["code"] == "heartbeat_timeout"


# --- resume


def drop_and_resume(server: Server, peer: Peer, token: str, last_seq: int) -> tuple[Peer, list[dict]]:
    """Lose ``peer``'s connection (unless gone already), connect again, Resume; return the new peer and its input."""
    if peer.protocol.state is not ConnectionState.CLOSED:
        peer.lost()
    again = server.connect(port=40009)
    again.send({"id": "r", "cmd": "Resume", "args": {"session": token, "last_seq": last_seq}})
    return again, again.received()


def test_resume_replays_missed_events_in_order(server):
    """Resume after a drop: the response, then exactly the events after last_seq, then live events."""
    peer = server.connect()
    token = peer.hello()["session"]
    peer.login()
    peer.request("Emit", {"count": 3})
    session = peer.protocol.session
    peer.lost()
    assert not session.connected
    session.send_event("Missed", {"k": 1})
    session.send_event("Missed", {"k": 2})
    again, messages = drop_and_resume(server, peer, token, 1)
    response, events = messages[0], messages[1:]
    assert response["ok"] and response["result"]["replay"] == 4 and response["result"]["session"] == token
    assert [(e["event"], e["seq"]) for e in events] == [("Tick", 2), ("Tick", 3), ("Missed", 4), ("Missed", 5)]
    assert again.request("Whoami")["result"] == {"identity": {"agent": "1001"}}
    session.send_event("Live")
    assert [(m["event"], m["seq"]) for m in again.received()] == [("Live", 6)]
    assert server.handler.notes == [("closed", session.tag, None), ("resumed", session.tag, None)]


def test_resume_with_nothing_missed(server):
    """Resuming at the latest seq replays nothing."""
    peer = server.connect()
    token = peer.hello()["session"]
    peer.request("Emit", {"count": 2})
    again, messages = drop_and_resume(server, peer, token, 2)
    assert [m["result"]["replay"] for m in messages] == [0]


def test_resume_after_grace_is_unknown_session(server):
    """After resume_grace the session is gone: unknown_session, the connection stays for a Hello."""
    peer = server.connect()
    token = peer.hello()["session"]
    tag = peer.protocol.session.tag
    peer.lost()
    server.clock.advance(59.9)
    assert len(server.factory.registry) == 1
    server.clock.advance(0.1)
    assert len(server.factory.registry) == 0
    assert server.handler.notes == [("closed", tag, None), ("expired", tag, "expired")]
    again = server.connect()
    assert error_of(again.request("Resume", {"session": token, "last_seq": 0}))[0] == "unknown_session"
    assert not again.closing
    again.hello()


def test_resume_gap_ends_the_session():
    """When events after last_seq were dropped from the replay buffer: resume_gap, and the session ends."""
    server = Server(replay_limit=5)
    peer = server.connect()
    token = peer.hello()["session"]
    session = peer.protocol.session
    peer.lost()
    for _ in range(8):
        session.send_event("Tick")
    again = server.connect()
    assert error_of(again.request("Resume", {"session": token, "last_seq": 2}))[0] == "resume_gap"
    assert session.ended and session.end_reason == "resume_gap" and len(server.factory.registry) == 0
    assert error_of(again.request("Resume", {"session": token, "last_seq": 3}))[0] == "unknown_session"


def test_resume_with_last_seq_just_before_the_buffer_works():
    """A last_seq right before the oldest kept event replays everything kept."""
    server = Server(replay_limit=5)
    peer = server.connect()
    token = peer.hello()["session"]
    session = peer.protocol.session
    peer.lost()
    for _ in range(8):
        session.send_event("Tick")
    again, messages = drop_and_resume(server, peer, token, 3)
    assert [m.get("seq") for m in messages[1:]] == [4, 5, 6, 7, 8]


@pytest.mark.parametrize(
    "args, code",
    [
        ({"session": "nope", "last_seq": 0}, "unknown_session"),
        ({"session": "TOKEN", "last_seq": 99}, "bad_request"),
        ({"session": "TOKEN", "last_seq": -1}, "bad_request"),
        ({"session": "TOKEN"}, "bad_request"),
        ({"session": "TOKEN", "last_seq": True}, "bad_request"),
        ({"session": "TOKEN", "last_seq": 0, "extra": 1}, "bad_request"),
    ],
)
def test_bad_resumes(server, args, code):
    """Unknown tokens, a last_seq ahead of the session or malformed args are refused; the session survives."""
    peer = server.connect()
    token = peer.hello()["session"]
    peer.lost()
    again = server.connect()
    args = {key: token if value == "TOKEN" else value for key, value in args.items()}
    assert error_of(again.request("Resume", args))[0] == code
    assert again.request("Resume", {"session": token, "last_seq": 0})["ok"]


def test_resume_takes_over_a_live_connection(server):
    """Resuming a session still attached elsewhere closes the old connection with session_replaced."""
    old = server.connect()
    token = old.hello()["session"]
    new = server.connect(port=40010)
    assert new.request("Resume", {"session": token, "last_seq": 0})["ok"]
    assert old.closing and old.received()[-1]["error"]["code"] == "session_replaced"
    old.lost()
    new.protocol.session.send_event("Here")
    assert [m["event"] for m in new.received()] == ["Here"]
    assert new.protocol.session.connected


def test_bye_ends_the_session(server):
    """Bye is answered, the connection closes, the session ends (bye) and cannot be resumed."""
    peer = server.connect()
    token = peer.hello()["session"]
    tag = peer.protocol.session.tag
    assert peer.request("Bye", request_id="bye") == {"id": "bye", "ok": True, "result": {}}
    assert peer.closing
    peer.lost()
    assert server.handler.notes == [("closed", tag, "bye"), ("expired", tag, "bye")]
    again = server.connect()
    assert error_of(again.request("Resume", {"session": token, "last_seq": 0}))[0] == "unknown_session"


def test_server_can_end_a_session(server):
    """session.end() tells the client why, closes, and forgets the session (e.g. a forced logout)."""
    peer = server.connect()
    peer.hello()
    session = peer.protocol.session
    with pytest.raises(ValueError):
        session.end("Forced Logout")
    session.end("forced_logout", "a supervisor logged you out")
    assert peer.received() == [{"id": None, "ok": False, "error": {
        "code": "session_ended", "message": "a supervisor logged you out", "data": {"reason": "forced_logout"}}}]
    assert peer.closing and session.ended and session.send_event("Late") == 0
    assert server.handler.notes[-1] == ("expired", session.tag, "forced_logout")


@pytest.mark.allow_logged_errors
def test_failing_notification_is_logged_not_raised(server, logged):
    """A handler notification that raises is logged; the connection machinery carries on."""
    peer = server.connect()
    peer.hello()

    def broken(session):
        raise RuntimeError("notification bug")

    server.handler.session_closed = broken
    peer.lost()
    assert [e["method"] for e in logged if e["log_level"] == LogLevel.error] == ["session_closed"]
    assert len(server.factory.registry) == 1


def test_shutdown_ends_every_session(server):
    """shutdown() tells connected clients shutting_down, ends all sessions, and fires when closed."""
    a, b = server.connect(), server.connect(port=40002)
    a.hello()
    b.hello()
    done = server.factory.shutdown()
    assert [p.received()[-1]["error"]["code"] for p in (a, b)] == ["shutting_down"] * 2
    assert len(server.factory.registry) == 0 and not done.called
    a.lost()
    b.lost()
    assert done.called


# --- backpressure


def test_paused_transport_holds_events_until_resumed(server):
    """While the transport says its buffer is full, events wait; on resume they go out in order."""
    peer = server.connect()
    peer.hello()
    peer.protocol.outbox.pauseProducing()
    session = peer.protocol.session
    for n in range(3):
        session.send_event("Tick", {"n": n})
    assert peer.received() == []
    peer.protocol.outbox.resumeProducing()
    assert [m["seq"] for m in peer.received()] == [1, 2, 3]


def test_slow_consumer_is_told_and_closed_memory_bounded():
    """Past max_pending_bytes queued while paused: slow_consumer, closed; nothing more written; resumable."""
    server = Server(max_pending_bytes=4096)
    peer = server.connect()
    token = peer.hello()["session"]
    peer.protocol.outbox.pauseProducing()
    session = peer.protocol.session
    payload = {"text": "x" * 200}
    sent = 0
    while not peer.closing:
        session.send_event("Tick", payload)
        sent += 1
        assert sent < 100
    assert 15 <= sent <= 25
    assert peer.received() == [{"id": None, "ok": False, "error": {
        "code": "slow_consumer", "message": "you are not reading fast enough; resume to catch up"}}]
    for _ in range(50):
        session.send_event("Tick", payload)
    assert peer.transport.value() == b"" and not session.connected
    again, messages = drop_and_resume(server, peer, token, 0)
    assert [m["seq"] for m in messages[1:]] == list(range(1, sent + 51))


def test_responses_while_paused_count_towards_the_limit():
    """A client that sends requests but does not read its answers is also a slow consumer."""
    server = Server(max_pending_bytes=2048)
    peer = server.connect()
    peer.hello()
    peer.protocol.outbox.pauseProducing()
    for n in range(100):
        peer.send({"id": n, "cmd": "Echo", "args": {"pad": "p" * 100}})
        if peer.closing:
            break
    assert 10 <= n <= 20
    assert json.loads(peer.transport.value().split(b"\n")[-2])["error"]["code"] == "slow_consumer"


def test_events_dropped_before_sending_disconnect_a_paused_client():
    """If the replay buffer drops events a paused connection has not written, it is disconnected."""
    server = Server(replay_limit=3, max_pending_bytes=1 << 20)
    peer = server.connect()
    peer.hello()
    peer.protocol.outbox.pauseProducing()
    for _ in range(4):
        peer.protocol.session.send_event("Tick")
    assert peer.closing and peer.received()[-1]["error"]["code"] == "slow_consumer"


# --- limits


def test_replay_buffer_bounds():
    """The replay buffer keeps numbering while it drops the oldest events past its count, byte or age bound."""
    buffer = ReplayBuffer(limit=3, max_age=10.0, max_bytes=25)
    assert (buffer.first_seq, buffer.last_seq) == (1, 0) and buffer.covers(0)
    assert [buffer.append((0.0, b"x" * 5)) for _ in range(4)] == [1, 2, 3, 4]
    assert (buffer.first_seq, len(buffer), buffer.kept_bytes) == (2, 3, 15)
    assert buffer.covers(1) and not buffer.covers(0) and not buffer.covers(5)
    buffer.append((1.0, b"y" * 20))
    assert (buffer.first_seq, buffer.kept_bytes) == (4, 25)
    buffer.append((10.5, b"z"))
    assert (buffer.first_seq, buffer.last_seq, buffer.line(6)) == (5, 6, b'{"seq":6z')
    assert buffer.line(4) is None and buffer.line(7) is None
    buffer.trim(11.5)
    assert buffer.first_seq == 6
    buffer.trim(100.0)
    assert len(buffer) == 0 and buffer.first_seq == 7 and buffer.covers(6) and buffer.line(6) is None


def test_token_bucket():
    """rate tokens a second, burst saved, none spent on refusal."""
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]


def test_rate_limited_requests_are_answered_not_run():
    """Past the burst, requests get rate_limited with their id and are not executed."""
    server = Server(rate=10.0, burst=5)
    peer = server.connect()
    peer.hello()
    for n in range(8):
        peer.send({"id": n, "cmd": "Emit"})
    responses = [m for m in peer.received() if "ok" in m]
    assert [r["ok"] for r in responses] == [True] * 4 + [False] * 4
    assert {r["error"]["code"] for r in responses[4:]} == {"rate_limited"}
    assert [r["id"] for r in responses] == list(range(8))
    assert peer.protocol.session.last_seq == 4
    server.clock.advance(1.0)
    assert peer.request("Echo")["ok"] and not peer.closing


def test_sustained_flood_closes():
    """A client over the limit for flood_seconds is told rate_limited (id null) and disconnected."""
    server = Server(rate=10.0, burst=5)
    peer = server.connect()
    peer.hello()
    for tick in range(100):
        for n in range(3):
            peer.send({"id": f"{tick}-{n}", "cmd": "Echo"})
        if peer.closing:
            break
        server.clock.advance(0.1)
    assert 45 <= tick <= 60
    assert peer.received()[-1] == {"id": None, "ok": False,
                                   "error": {"code": "rate_limited", "message": "sustained flooding"}}


def test_per_address_connection_limit():
    """Past max_per_address from one host a connection gets too_many_connections and is closed."""
    server = Server(max_per_address=2)
    a, b = server.connect(port=1), server.connect(port=2)
    c = server.connect(port=3)
    assert not b.closing
    assert c.received() == [{"id": None, "ok": False, "error": {
        "code": "too_many_connections", "message": "too many connections from your address"}}]
    assert c.closing and not a.closing
    other = server.connect(host="10.0.0.2")
    assert other.hello()
    a.lost()
    d = server.connect(port=4)
    assert d.hello() and not d.closing


def test_garbage_lines_are_answered_and_tolerated(server):
    """Bad JSON gets bad_json with id null, the connection stays, good lines in between reset the count."""
    peer = server.connect()
    peer.hello()
    for _ in range(3):
        peer.send_raw(b"this is not json\n")
        peer.send_raw(b'{"id": 5, "cmd": "Echo"\n')
        assert peer.request("Echo")["ok"]
    assert [error_of(m)[0] for m in peer.received()] == []
    peer.send_raw(b"\xff\n[1]\n")
    assert [(m["id"], m["error"]["code"]) for m in peer.received()] == [(None, "bad_json"), (None, "bad_request")]
    assert not peer.closing


def test_too_many_bad_lines_in_a_row_close(server):
    """max_bad_lines unreadable lines in a row: protocol_error and the connection closes."""
    peer = server.connect()
    peer.send_raw(b"nope\n" * 9)
    assert not peer.closing
    peer.send_raw(b"nope\n" * 5)
    messages = peer.received()
    assert len(messages) == 11 and messages[-1]["error"]["code"] == "protocol_error" and peer.closing


@pytest.mark.parametrize("terminated", [True, False])
def test_huge_line_closes_the_connection(terminated):
    """A line over max_line gets line_too_long (id null) and the connection closes, with or without its LF."""
    server = Server(max_line=1024)
    peer = server.connect()
    peer.hello()
    peer.send_raw(b'{"id":1,"cmd":"Echo","args":{"x":"' + b"y" * 2000 + (b'"}}\n' if terminated else b""))
    assert peer.received() == [{"id": None, "ok": False,
                                "error": {"code": "line_too_long", "message": "line longer than 1024 bytes"}}]
    assert peer.closing


def test_crlf_and_split_lines(server):
    """CRLF line ends and lines split across reads are handled like whole LF lines."""
    peer = server.connect()
    data = b'{"id":1,"cmd":"Hello","args":{"versions":[1]}}\r\n{"id":2,"cmd":"Echo","args":{"a":1}}\r\n'
    for byte in data:
        peer.send_raw(bytes([byte]))
    assert [m["ok"] for m in peer.received()] == [True, True]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=200) | st.sampled_from([
    b'{"id":1,"cmd":"Hello","args":{"versions":[1]}}\n', b'{"id":2,"cmd":"Emit"}\n', b"\r\n", b"\n",
    b'{"id":3,"cmd":"Resume","args":{"session":"x","last_seq":0}}\n', b'{"id":4,"cmd":"Bye"}\n']), max_size=30))
def test_random_input_never_raises(chunks):
    """Whatever a client sends, the protocol answers or closes but never raises, and output stays valid JSON lines."""
    server = Server(max_line=1024, max_bad_lines=5)
    peer = server.connect()
    for chunk in chunks:
        peer.send_raw(chunk)
        server.clock.advance(0.3)
    for line in peer.transport.value().split(b"\n")[:-1]:
        assert isinstance(json.loads(line), dict)


# --- real sockets


class _Reader(Protocol):
    """A raw loopback client that can stop reading."""

    def __init__(self):
        self.data = b""
        self.closed = Deferred()

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason=None):
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_slow_consumer_over_loopback_tcp():
    """Over real TCP, a client that stops reading is disconnected once its backlog passes the limit."""
    from twisted.internet import reactor

    handler = EchoHandler()
    factory = CTIServerFactory(handler, reactor, max_pending_bytes=256 * 1024, replay_bytes=64 << 20)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = _Reader()
    try:
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        client.transport.write(b'{"id":1,"cmd":"Hello","args":{"versions":[1]}}\n')
        await deferLater(reactor, 0.05)
        [server_side] = factory.connections
        session = server_side.session
        client.transport.pauseProducing()
        for _ in range(400):
            for _ in range(20):
                session.send_event("Blob", {"x": "z" * 10_000})
            await deferLater(reactor, 0.005)
            if server_side.closing:
                break
        assert server_side.closing and not session.connected
        sent = session.last_seq * 10_000
        client.transport.resumeProducing()
        await client.closed
        tail = client.data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        assert json.loads(tail)["error"]["code"] == "slow_consumer"
        assert len(client.data) < sent
    finally:
        if client.transport is not None:
            client.transport.abortConnection()
        await port.stopListening()
        await factory.shutdown()
