"""One CTI client connection: a small state machine in front of the session and the handler.

:class:`CTIServerProtocol` enforces the line, rate, in-flight and output
limits, runs the transport commands (Hello, Resume, Heartbeat, Bye), hands
every other command to the handler with a timeout and answers each request
exactly once, has its :class:`~ctid.protocols.ctioutbox.Outbox` send the
session's events while the peer keeps reading, and keeps the heartbeat.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred, TimeoutError, fail, succeed
from twisted.internet.interfaces import IConsumer, IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from .cticodec import (
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
from .ctilimits import RequestGate
from .ctioutbox import Outbox
from .ctisession import END_BYE, CTISession

if TYPE_CHECKING:
    from .cti import CTIServerFactory

log = Logger()

#: Commands the transport layer runs itself; they never reach the handler.
TRANSPORT_COMMANDS = frozenset({"Hello", "Resume", "Heartbeat", "Bye"})


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


class CTIServerProtocol(Protocol):
    """One client connection (see the module docstring).  Built by :class:`CTIServerFactory`.

    Once connected, :attr:`outbox` is the transport's streaming producer; a
    client that stops reading is told ``slow_consumer`` and disconnected
    (its session stays resumable).
    """

    outbox: Outbox  # made by connectionMade
    #: A TCP or TLS connection (``Protocol`` declares only an optional ``ITransport``, without ``abortConnection``).
    transport: ITCPTransport

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
        self._gate = RequestGate(settings, self.clock.seconds())
        self._bad_lines = 0
        self._in_flight: dict[Any, Deferred[Any]] = {}
        self._timer: IDelayedCall | None = None
        self._abort: IDelayedCall | None = None
        self._last_received = self.clock.seconds()
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
        self.outbox = Outbox(self.transport, self.clock, self.settings.max_pending_bytes, self._slow_consumer)
        cast(IConsumer, self.transport).registerProducer(self.outbox, True)  # TCP and TLS transports are consumers
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
        self.outbox.close()
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

    # --- incoming lines

    def _line(self, line: bytes) -> None:
        now = self.clock.seconds()
        if not self._gate.admit(now):
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
        if self._gate.flooding(now):
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
        self.outbox.pump()

    def _do_heartbeat(self, request: Request) -> None:
        self._result(request.id, {"at": self.clock.seconds()})

    def _do_bye(self, request: Request) -> None:
        self._result(request.id, {})
        if self.session is not None:
            self.factory.registry.end(self.session, END_BYE)
        self._close(None)

    def _attach(self, session: CTISession, last_seq: int) -> None:
        self._set_state(ConnectionState.OPEN)
        self.session = session
        self.outbox.attach(session.buffer, last_seq)
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
        self.outbox.write(line)

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
        self.outbox.write(encode_result(request_id, result))

    def _error(self, request_id: Any, error: CTIError) -> None:
        try:
            line = encode_error(request_id, error)
        except (TypeError, ValueError):  # a handler's refusal carrying data that is not JSON
            log.failure("CTI refusal {code} could not be encoded", code=error.code, level=LogLevel.error)
            line = encode_error(request_id, CTIError(ErrorCode.INTERNAL_ERROR, "internal error"))
        self.outbox.write(line)

    def _slow_consumer(self, why: str) -> None:
        log.warn("CTI client {peer} is not reading ({why}); disconnecting, session {session} kept for resume",
                 peer=self.peer, why=why, session=self.session.tag if self.session else None)
        self._close(CTIError(ErrorCode.SLOW_CONSUMER, "you are not reading fast enough; resume to catch up"))

    # --- SessionLink (called by the registry)

    def events_available(self) -> None:
        """The session has new events: send them if the peer is reading, else count them."""
        self.outbox.events_available()

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
        if now - self.outbox.last_sent >= heartbeat:
            self.outbox.write(encode_heartbeat(now))
        if not self.closing:
            delay = min(self.outbox.last_sent + heartbeat, self._last_received + idle) - now
            self._timer = self.clock.callLater(max(delay, 0.01), self._tick)

    def _close(self, notice: CTIError | None) -> None:
        """Say ``notice`` (an error with id null) if given, detach the session, close; abort if it hangs."""
        if self.closing:
            return
        if notice is not None:
            self.transport.write(encode_error(None, notice))
        self.outbox.close()
        self._set_state(ConnectionState.CLOSING)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.session is not None:
            self.factory.registry.detach(self.session, self)
        cast(IConsumer, self.transport).unregisterProducer()
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
