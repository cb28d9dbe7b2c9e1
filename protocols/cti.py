"""CTI server: agents' desktops, CRM toolbars and supervisors connect here.

Three layers (docs/cti-protocol.md describes the wire):

* :mod:`ctid.protocols.cticodec` frames and validates JSON lines;
* :class:`CTIServerProtocol` (this module) is one connection: it enforces
  the line, rate, in-flight and output limits, runs the transport commands
  (Hello, Resume, Heartbeat, Bye), hands every other command to the
  handler with a timeout and answers each request exactly once, sends the
  session's events while the peer keeps reading, and keeps the heartbeat;
* :mod:`ctid.protocols.ctiapi` holds the sessions (which survive the
  connection for ``resume_grace`` seconds) and the :class:`ICTIHandler`
  seam the command handlers implement.

:class:`CTIServerFactory` carries the settings, the session registry and
the per-address connection count.  TLS is a different endpoint string.
"""

from __future__ import annotations

import enum
import inspect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, DeferredList, TimeoutError, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from .ctiapi import END_BYE, CommandRouter, CTISession, ICTIHandler, ICTISession, SessionRegistry, require_login
from .cticodec import (
    DEFAULT_MAX_LINE,
    PROTOCOL_VERSIONS,
    CodecError,
    CTIError,
    ErrorCode,
    LineFramer,
    LineTooLong,
    Request,
    encode_error,
    encode_heartbeat,
    encode_result,
    negotiate_version,
    parse_request,
    request_id_of,
)

__all__ = [
    "CTIError",
    "CTIServerFactory",
    "CTIServerProtocol",
    "CTISession",
    "CTISettings",
    "CommandRouter",
    "ConnectionState",
    "ErrorCode",
    "ICTIHandler",
    "ICTISession",
    "TokenBucket",
    "require_login",
]

log = Logger()

#: Commands the transport layer runs itself; they never reach the handler.
TRANSPORT_COMMANDS = frozenset({"Hello", "Resume", "Heartbeat", "Bye"})
#: Seconds without a rate-limited request that end a flooding streak.
FLOOD_GAP = 1.0


class ConnectionState(enum.Enum):
    """Where a CTI connection is; the allowed moves are in :data:`TRANSITIONS`."""

    GREETING = "greeting"  # connected, waiting for Hello or Resume
    OPEN = "open"  # carrying a session
    CLOSING = "closing"  # we said why and asked the transport to close
    CLOSED = "closed"


TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    ConnectionState.GREETING: frozenset({ConnectionState.OPEN, ConnectionState.CLOSING, ConnectionState.CLOSED}),
    ConnectionState.OPEN: frozenset({ConnectionState.CLOSING, ConnectionState.CLOSED}),
    ConnectionState.CLOSING: frozenset({ConnectionState.CLOSED}),
    ConnectionState.CLOSED: frozenset(),
}


def _default_server_version() -> str:
    try:
        return f"ctid/{metadata.version('ctid')}"
    except metadata.PackageNotFoundError:
        return "ctid/unknown"


@dataclass(frozen=True)
class CTISettings:
    """The server's limits, checked once (ValueError names the bad one)."""

    heartbeat: float = 15.0
    resume_grace: float = 60.0
    max_line: int = DEFAULT_MAX_LINE
    replay_limit: int = 10_000
    replay_age: float = 300.0
    replay_bytes: int = 4 << 20
    max_pending_bytes: int = 1 << 20
    rate: float = 50.0
    burst: int = 100
    flood_seconds: float = 5.0
    max_bad_lines: int = 10
    max_per_address: int = 20
    max_in_flight: int = 64
    request_timeout: float = 30.0
    close_timeout: float = 5.0
    server_version: str = "ctid/unknown"

    def __post_init__(self) -> None:
        for name in ("heartbeat", "resume_grace", "replay_age", "rate", "flood_seconds", "request_timeout",
                     "close_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CTI setting {name} must be greater than 0, got {getattr(self, name)!r}")
        for name in ("max_line", "replay_limit", "replay_bytes", "max_pending_bytes", "burst", "max_bad_lines",
                     "max_per_address", "max_in_flight"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"CTI setting {name} must be a positive integer, got {value!r}")
        if self.max_line < 1024:
            raise ValueError(f"CTI setting max_line must be at least 1024, got {self.max_line}")

    @property
    def idle_timeout(self) -> float:
        """Seconds of silence from a client after which its connection is closed (3 heartbeats)."""
        return 3 * self.heartbeat


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; pure (the caller passes ``now``)."""

    def __init__(self, rate: float, burst: int, now: float = 0.0):
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def _as_deferred(result: object) -> Deferred[Any]:
    if isinstance(result, Deferred):
        return result
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    if inspect.isawaitable(result):

        async def wait() -> Any:
            return await result

        return Deferred.fromCoroutine(wait())
    return succeed(result)


def _peer_of(address: object) -> str:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    return f"{host}:{port}" if host is not None else str(address)


@implementer(IPushProducer)
class CTIServerProtocol(Protocol):
    """One client connection (see the module docstring).  Built by :class:`CTIServerFactory`.

    Registers itself as the transport's streaming producer: the transport
    pauses it when its buffer is full (the peer stopped reading).  While
    paused, events wait in the session's replay buffer (the cursor
    ``_cursor`` is the next seq to write) and the bytes queued for the peer
    since the pause — new events and responses — are counted; past
    ``max_pending_bytes``, or when the replay buffer drops an event not yet
    written, the client is told ``slow_consumer`` and disconnected (the
    session stays resumable).
    """

    def __init__(self, factory: CTIServerFactory, address_key: str, peer: str,
                 trace: Callable[[ConnectionState, ConnectionState], None] | None = None):
        self.factory = factory
        self.state = ConnectionState.GREETING
        self._trace = trace
        self.settings = settings = factory.settings
        self.clock: IReactorTime = factory.clock
        self.address_key = address_key
        self.peer = peer
        self.session: CTISession | None = None
        self._framer = LineFramer(settings.max_line)
        self._bucket = TokenBucket(settings.rate, settings.burst, self.clock.seconds())
        self._flood_start = self._last_limited = float("-inf")
        self._bad_lines = 0
        self._in_flight: dict[Any, Deferred[Any]] = {}
        self._cursor = 1
        self._paused = False
        self._paused_bytes = 0
        self._held_from = 0
        self._timer: IDelayedCall | None = None
        self._abort: IDelayedCall | None = None
        self._last_received = self._last_sent = self.clock.seconds()
        self._lost_waiters: list[Deferred[None]] = []

    @property
    def closing(self) -> bool:
        """True once the connection is closing or closed (nothing more is read or written)."""
        return self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED)

    def _set_state(self, new: ConnectionState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise AssertionError(f"CTI connection: no transition {self.state} -> {new}")
        if self._trace is not None:
            self._trace(self.state, new)
        self.state = new

    # --- Twisted hooks

    def connectionMade(self) -> None:
        """Start watching the output buffer and the deadline for Hello/Resume."""
        self.transport.registerProducer(self, True)
        self._timer = self.clock.callLater(self.settings.idle_timeout, self._hello_overdue)
        log.debug("CTI connection from {peer}", peer=self.peer)

    def dataReceived(self, data: bytes) -> None:
        """Frame ``data`` into lines and handle each, stopping once the connection is closing."""
        if self.closing:
            return
        self._last_received = self.clock.seconds()
        try:
            for line in self._framer.feed(data):
                self._line(line)
                if self.closing:
                    return
        except LineTooLong:
            log.warn("CTI client {peer} sent a line over {limit} bytes; closing", peer=self.peer,
                     limit=self.settings.max_line)
            self._close(CTIError(ErrorCode.LINE_TOO_LONG, f"line longer than {self.settings.max_line} bytes"))

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Detach the session (kept for resume), stop the timers, free the address slot."""
        self._set_state(ConnectionState.CLOSED)
        for timer in (self._timer, self._abort):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._abort = None
        if self.session is not None:
            self.factory.registry.detach(self.session, self)
        self.factory.connection_closed(self)
        log.debug("CTI connection from {peer} closed: {reason}", peer=self.peer,
                  reason=reason.getErrorMessage() if reason is not None else "closed")
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def whenLost(self) -> Deferred[None]:
        """Fires once the connection has closed."""
        if self.state is ConnectionState.CLOSED:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._lost_waiters.append(waiter)
        return waiter

    # --- IPushProducer (the transport tells us when its buffer is full)

    def pauseProducing(self) -> None:
        """The peer is not keeping up: hold events back and count what is queued from now on."""
        self._paused, self._paused_bytes = True, 0
        self._held_from = self.session.buffer.total_bytes if self.session is not None else 0

    def resumeProducing(self) -> None:
        """The transport drained its buffer: send the events held back."""
        self._paused, self._paused_bytes = False, 0
        self._pump()

    def stopProducing(self) -> None:
        """The connection is going away."""
        self._paused = True

    # --- incoming lines

    def _line(self, line: bytes) -> None:
        now = self.clock.seconds()
        if not self._bucket.take(now):
            self._rate_limited(line, now)
            return
        try:
            request = parse_request(line)
        except CodecError as error:
            self._bad_line(error)
            return
        self._bad_lines = 0
        if request.id in self._in_flight:
            self._error(request.id, CTIError(ErrorCode.BAD_REQUEST, "a request with this id is still running"))
        elif request.cmd in TRANSPORT_COMMANDS:
            getattr(self, "_do_" + request.cmd.lower())(request)
        elif self.session is None:
            self._error(request.id, CTIError(ErrorCode.HELLO_REQUIRED, "send Hello (or Resume) first"))
        elif len(self._in_flight) >= self.settings.max_in_flight:
            self._error(request.id, CTIError(ErrorCode.BUSY, "too many requests running; wait for answers"))
        else:
            self._run(request)

    def _bad_line(self, error: CodecError) -> None:
        self._bad_lines += 1
        log.debug("CTI client {peer} sent a bad line: {error}", peer=self.peer, error=str(error))
        self._error(error.request_id, error)
        if self._bad_lines >= self.settings.max_bad_lines:
            log.warn("CTI client {peer} sent {count} bad lines in a row; closing", peer=self.peer,
                     count=self._bad_lines)
            self._close(CTIError(ErrorCode.PROTOCOL_ERROR, f"{self._bad_lines} bad lines in a row"))

    def _rate_limited(self, line: bytes, now: float) -> None:
        self._error(request_id_of(line), CTIError(ErrorCode.RATE_LIMITED, "too many requests; slow down"))
        if now - self._last_limited > FLOOD_GAP:
            self._flood_start = now
        self._last_limited = now
        if now - self._flood_start >= self.settings.flood_seconds:
            log.warn("CTI client {peer} kept flooding for {seconds}s; closing", peer=self.peer,
                     seconds=self.settings.flood_seconds)
            self._close(CTIError(ErrorCode.RATE_LIMITED, "sustained flooding"))

    # --- transport commands

    def _do_hello(self, request: Request) -> None:
        versions, client = request.args.get("versions"), request.args.get("client", "")
        if self.session is not None:
            return self._error(request.id, CTIError(ErrorCode.BAD_REQUEST, "this connection already has a session"))
        if (not isinstance(versions, list) or not 0 < len(versions) <= 32
                or any(type(v) is not int for v in versions) or not isinstance(client, str) or len(client) > 200):
            return self._error(request.id, CTIError(
                ErrorCode.BAD_REQUEST, "Hello needs versions (a list of integers) and optionally client (a string)"))
        version = negotiate_version(versions, PROTOCOL_VERSIONS)
        if version is None:
            self._error(request.id, CTIError(ErrorCode.UNSUPPORTED_VERSION, "no protocol version in common",
                                             {"versions": list(PROTOCOL_VERSIONS)}))
            log.info("CTI client {peer} offered no supported version ({versions}); closing", peer=self.peer,
                     versions=versions[:8])
            return self._close(None)
        self._attach(self.factory.registry.create(self, version, client), 0)
        self._result(request.id, self._greeting())

    def _do_resume(self, request: Request) -> None:
        token, last_seq = request.args.get("session"), request.args.get("last_seq")
        if self.session is not None:
            return self._error(request.id, CTIError(ErrorCode.BAD_REQUEST, "this connection already has a session"))
        if not isinstance(token, str) or type(last_seq) is not int or last_seq < 0 or request.args.keys() - {
                "session", "last_seq"}:
            return self._error(request.id, CTIError(
                ErrorCode.BAD_REQUEST, "Resume needs session (a string) and last_seq (an integer >= 0)"))
        try:
            session = self.factory.registry.resume(token, last_seq, self)
        except CTIError as error:
            return self._error(request.id, error)
        self._attach(session, last_seq)
        self._result(request.id, {**self._greeting(), "replay": session.last_seq - last_seq})
        self._pump()

    def _do_heartbeat(self, request: Request) -> None:
        self._result(request.id, {"at": self.clock.seconds()})

    def _do_bye(self, request: Request) -> None:
        self._result(request.id, {})
        if self.session is not None:
            self.factory.registry.end(self.session, END_BYE)
        self._close(None)

    def _attach(self, session: CTISession, last_seq: int) -> None:
        self._set_state(ConnectionState.OPEN)
        self.session, self._cursor, self._held_from = session, last_seq + 1, session.buffer.total_bytes
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(self.settings.heartbeat, self._tick)

    def _greeting(self) -> dict[str, Any]:
        assert self.session is not None
        s = self.settings
        return {
            "version": self.session.version, "server": s.server_version, "heartbeat": s.heartbeat,
            "max_line": s.max_line, "session": self.session.token, "resume_grace": s.resume_grace,
            "limits": {"rate": s.rate, "burst": s.burst, "max_in_flight": s.max_in_flight,
                       "request_timeout": s.request_timeout, "replay_limit": s.replay_limit},
        }

    # --- commands for the handler

    def _run(self, request: Request) -> None:
        assert self.session is not None
        try:
            running = _as_deferred(self.factory.handler.handle(self.session, request.cmd, request.args))
        except Exception:
            running = fail()
        running.addTimeout(self.settings.request_timeout, self.clock)
        self._in_flight[request.id] = running
        running.addBoth(self._finished, request)

    def _finished(self, outcome: object, request: Request) -> None:
        self._in_flight.pop(request.id, None)
        if isinstance(outcome, Failure):
            return self._error(request.id, self._refusal(outcome, request))
        if outcome is None:
            outcome = {}
        if not isinstance(outcome, dict):
            log.error("CTI command {command} returned {kind}, not a dict", command=request.cmd,
                      kind=type(outcome).__name__)
            return self._error(request.id, CTIError(ErrorCode.INTERNAL_ERROR, "internal error"))
        try:
            line = encode_result(request.id, outcome)
        except (TypeError, ValueError):
            log.failure("CTI command {command} returned a result that is not JSON", command=request.cmd,
                        level=LogLevel.error)
            return self._error(request.id, CTIError(ErrorCode.INTERNAL_ERROR, "internal error"))
        if len(line) > self.settings.max_line + 1:
            log.error("CTI command {command} returned {size} bytes, over the line limit", command=request.cmd,
                      size=len(line))
            return self._error(request.id, CTIError(ErrorCode.INTERNAL_ERROR, "result too large"))
        self._write(line)

    def _refusal(self, failure: Failure, request: Request) -> CTIError:
        if failure.check(CTIError):
            return failure.value  # type: ignore[return-value]
        if failure.check(TimeoutError):
            log.warn("CTI command {command} from {peer} timed out after {timeout}s", command=request.cmd,
                     peer=self.peer, timeout=self.settings.request_timeout)
            return CTIError(ErrorCode.TIMEOUT, f"no answer within {self.settings.request_timeout:g}s")
        session = self.session.tag if self.session is not None else None
        log.failure("CTI command {command} failed (session {session})", failure, level=LogLevel.error,
                    command=request.cmd, session=session, peer=self.peer)
        return CTIError(ErrorCode.INTERNAL_ERROR, "internal error")

    # --- output

    def _result(self, request_id: Any, result: dict[str, Any]) -> None:
        self._write(encode_result(request_id, result))

    def _error(self, request_id: Any, error: CTIError) -> None:
        try:
            line = encode_error(request_id, error)
        except (TypeError, ValueError):  # a handler's refusal carrying data that is not JSON
            log.failure("CTI refusal {code} could not be encoded", code=error.code, level=LogLevel.error)
            line = encode_error(request_id, CTIError(ErrorCode.INTERNAL_ERROR, "internal error"))
        self._write(line)

    def _write(self, line: bytes) -> None:
        if self.closing:
            return
        self.transport.write(line)
        self._last_sent = self.clock.seconds()
        if self._paused:
            self._paused_bytes += len(line)
            self._check_backlog()

    def _pump(self) -> None:
        """Write the session's events from the cursor on, until the transport pauses us."""
        session = self.session
        if session is None or self.closing:
            return
        buffer = session.buffer
        while not self._paused and self._cursor <= buffer.last_seq:
            entry = buffer.get(self._cursor)
            if entry is None:
                return self._slow_consumer("events were dropped before they could be sent")
            self._cursor += 1
            self._write(entry.line)
            if self.closing:
                return
        self._check_backlog()

    def _check_backlog(self) -> None:
        if self.session is None or self.closing:
            return
        buffer = self.session.buffer
        if self._cursor < buffer.first_seq:
            return self._slow_consumer("events were dropped before they could be sent")
        if self._paused:
            held = self._paused_bytes + buffer.total_bytes - self._held_from
            if held > self.settings.max_pending_bytes:
                self._slow_consumer(f"{held} bytes queued since it stopped reading")

    def _slow_consumer(self, why: str) -> None:
        log.warn("CTI client {peer} is not reading ({why}); disconnecting, session {session} kept for resume",
                 peer=self.peer, why=why, session=self.session.tag if self.session else None)
        self._close(CTIError(ErrorCode.SLOW_CONSUMER, "you are not reading fast enough; resume to catch up"))

    # --- SessionLink (called by the registry)

    def events_available(self) -> None:
        """The session has new events: send them if the peer is reading, else count them."""
        if self._paused:
            self._check_backlog()
        else:
            self._pump()

    def session_ended(self, notice: CTIError | None) -> None:
        """The session ended or moved elsewhere: close this connection, with ``notice`` first."""
        self._close(notice)

    # --- timers and closing

    def _hello_overdue(self) -> None:
        self._timer = None
        log.info("CTI client {peer} sent no Hello in {timeout}s; closing", peer=self.peer,
                 timeout=self.settings.idle_timeout)
        self._close(CTIError(ErrorCode.HEARTBEAT_TIMEOUT, "no Hello or Resume in time"))

    def _tick(self) -> None:
        """Close an idle connection; send a heartbeat when nothing was sent for an interval."""
        self._timer = None
        now, heartbeat, idle = self.clock.seconds(), self.settings.heartbeat, self.settings.idle_timeout
        if now - self._last_received >= idle:
            log.info("CTI client {peer} silent for {timeout}s; closing", peer=self.peer, timeout=idle)
            return self._close(CTIError(ErrorCode.HEARTBEAT_TIMEOUT, f"nothing received for {idle:g}s"))
        if now - self._last_sent >= heartbeat:
            self._write(encode_heartbeat(now))
        if not self.closing:
            delay = min(self._last_sent + heartbeat, self._last_received + idle) - now
            self._timer = self.clock.callLater(max(delay, 0.01), self._tick)

    def _close(self, notice: CTIError | None) -> None:
        """Say ``notice`` (an error with id null) if given, detach the session, close; abort if it hangs."""
        if self.closing:
            return
        if notice is not None:
            self.transport.write(encode_error(None, notice))
        self._set_state(ConnectionState.CLOSING)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.session is not None:
            self.factory.registry.detach(self.session, self)
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        self._abort = self.clock.callLater(self.settings.close_timeout, self._abort_connection)

    def _abort_connection(self) -> None:
        self._abort = None
        log.info("CTI client {peer} did not take its last bytes; aborting", peer=self.peer)
        self.transport.abortConnection()

    def close(self, notice: CTIError | None = None) -> Deferred[None]:
        """Close this connection (saying ``notice`` first); fires once it is closed."""
        self._close(notice)
        return self.whenLost()


class _Refusal(Protocol):
    """Says ``too_many_connections`` and closes."""

    def connectionMade(self) -> None:
        error = CTIError(ErrorCode.TOO_MANY_CONNECTIONS, "too many connections from your address")
        self.transport.write(encode_error(None, error))
        self.transport.loseConnection()


class CTIServerFactory(Factory):
    """Builds a :class:`CTIServerProtocol` per connection, all sharing ``handler`` and the session registry.

    ``handler`` provides :class:`ICTIHandler`; ``clock`` (default: the
    global reactor) drives every timer.  The keyword settings are those of
    :class:`CTISettings`; ``server_version`` defaults to ``ctid/<installed
    version>``; ``trace(old, new)``, if given, sees every connection's state
    changes.  ``registry`` holds the live sessions.
    """

    protocol = CTIServerProtocol
    noisy = False

    def __init__(self, handler: ICTIHandler | Any, clock: IReactorTime | None = None, *,
                 server_version: str | None = None,
                 trace: Callable[[ConnectionState, ConnectionState], None] | None = None, **settings: Any):
        if clock is None:
            from twisted.internet import reactor as clock  # composition edge: default to the reactor
        self.handler = handler
        self.trace = trace
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.settings = CTISettings(server_version=server_version or _default_server_version(), **settings)
        s = self.settings
        self.registry = SessionRegistry(handler, self.clock, resume_grace=s.resume_grace,
                                        replay_limit=s.replay_limit, replay_age=s.replay_age,
                                        replay_bytes=s.replay_bytes, max_line=s.max_line)
        self.connections: set[CTIServerProtocol] = set()
        self._per_address: Counter[str] = Counter()

    def buildProtocol(self, addr: object) -> Protocol:
        """A protocol for a new connection, or one that refuses it when its address has too many."""
        key = str(getattr(addr, "host", type(addr).__name__))
        if self._per_address[key] >= self.settings.max_per_address:
            log.warn("CTI connection from {peer} refused: {count} already open from that address",
                     peer=_peer_of(addr), count=self._per_address[key])
            refusal = _Refusal()
            refusal.factory = self
            return refusal
        self._per_address[key] += 1
        protocol = CTIServerProtocol(self, key, _peer_of(addr), self.trace)
        self.connections.add(protocol)
        return protocol

    def connection_closed(self, protocol: CTIServerProtocol) -> None:
        """Free ``protocol``'s slot (called from its ``connectionLost``)."""
        if protocol in self.connections:
            self.connections.discard(protocol)
            self._per_address[protocol.address_key] -= 1
            if self._per_address[protocol.address_key] <= 0:
                del self._per_address[protocol.address_key]

    def shutdown(self) -> Deferred[Any]:
        """End every session (clients are told ``shutting_down``) and close every connection.

        Fires once every connection has closed (stop listening first).
        """
        closing = [protocol.whenLost() for protocol in list(self.connections)]
        self.registry.shutdown()
        for protocol in list(self.connections):
            protocol.close(CTIError(ErrorCode.SHUTTING_DOWN, "the server is shutting down"))
        return DeferredList(closing)


class CTIServerService(StreamServerEndpointService):
    """Listens for CTI clients; on stop, closes the port and then every session (``shutting_down``)."""

    def __init__(self, endpoint: Any, factory: CTIServerFactory):
        super().__init__(endpoint, factory)
        self.cti = factory

    async def _stop(self) -> None:
        await super().stopService()
        await self.cti.shutdown()

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())
