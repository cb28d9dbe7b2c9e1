"""CTI client library: talk to ctid's CTI server (docs/cti-protocol.md) from Twisted code.

:class:`CTIClient` keeps one connection up with ``ClientService`` (backoff
between attempts); every new connection first says ``Resume`` with the last
event seq seen, or ``Hello`` when there is no session to resume, then runs
the ``setup`` hook (log in) on a fresh session — all in
``prepareConnection``, so requests only ever go out on a greeted
connection.  Replayed events are de-duplicated by seq, so each event
reaches the ``on_event`` handlers once.  Heartbeats run by themselves.

    client = CTIClient(reactor, name="ctid-agent/0.1", setup=log_in)
    await client.connect("tls:cti.bank.example:7443")
    client.on_event("AgentStateChanged", show)
    result = await client.call("SetAgentState", state="ready")
    await client.close()

:class:`CTIConnection` is one connection (the protocol), usable alone with
``connectProtocol`` for tests and tools.  Like the server, this module is an
edge of ctid: it imports :mod:`ctid.protocols.cticodec`.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ctid.protocols.clientguard import LossTolerantEndpoint
from ctid.protocols.cticodec import (
    DEFAULT_MAX_LINE,
    PROTOCOL_VERSIONS,
    CodecError,
    CTIError,
    ErrorCode,
    Event,
    Heartbeat,
    LineFramer,
    LineTooLong,
    Response,
    encode_request,
    parse_server_message,
)

__all__ = [
    "CTIClient",
    "CTIClientError",
    "CTIConnection",
    "CTIConnectionLost",
    "CTIEvent",
    "CTIRequestTimeout",
    "ServerInfo",
]

log = Logger()

#: An event as delivered to ``on_event`` handlers: ``name``, ``seq``, ``at``, ``data``.
CTIEvent = Event
EventHandler = Callable[[Event], object]


class CTIClientError(Exception):
    """A request failed: the server's error ``code``/``message``/``data``, or a local failure (subclasses)."""

    def __init__(self, code: str, message: str, data: Mapping[str, Any] | None = None):
        super().__init__(code, message)
        self.code, self.message, self.data = code, message, dict(data) if data else None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class CTIConnectionLost(CTIClientError):
    """The connection closed (or there was none) before the answer came; the outcome is unknown."""

    def __init__(self, message: str = "connection lost"):
        super().__init__("connection_lost", message)


class CTIRequestTimeout(CTIClientError):
    """No answer within the request's timeout."""

    def __init__(self, message: str):
        super().__init__("request_timeout", message)


@dataclass(frozen=True)
class ServerInfo:
    """What the server said in answer to Hello or Resume."""

    version: int
    server: str
    heartbeat: float
    max_line: int
    session: str = field(repr=False)
    resume_grace: float
    limits: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    replay: int = 0

    @classmethod
    def from_result(cls, result: Mapping[str, Any], resumed: bool) -> ServerInfo:
        """Read a Hello/Resume result; CTIClientError ``bad_response`` if it is malformed."""
        try:
            info = cls(int(result["version"]), str(result["server"]), float(result["heartbeat"]),
                       int(result["max_line"]), str(result["session"]), float(result["resume_grace"]),
                       dict(result.get("limits") or {}), resumed, int(result.get("replay", 0)))
        except (KeyError, TypeError, ValueError) as error:
            raise CTIClientError("bad_response", f"malformed greeting: {error!r}") from None
        if info.heartbeat <= 0 or info.max_line < 1024:
            raise CTIClientError("bad_response", "malformed greeting: bad heartbeat or max_line")
        return info


class _Pending:
    __slots__ = ("command", "deferred", "timer")

    def __init__(self, command: str, deferred: Deferred[dict[str, Any]], timer: IDelayedCall):
        self.command, self.deferred, self.timer = command, deferred, timer


class CTIConnection(Protocol):
    """One connection to the CTI server: requests paired with responses by id, events and notices handed on.

    ``on_event(event)`` gets every event, ``on_notice(error)`` every error
    with id null (the server saying why it is about to close).  Requests
    fail with :class:`CTIRequestTimeout` after their timeout and
    :class:`CTIConnectionLost` when the connection closes.
    """

    def __init__(self, clock: IReactorTime, *, on_event: Callable[[Event], None] | None = None,
                 on_notice: Callable[[CTIError], None] | None = None, request_timeout: float = 10.0,
                 max_line: int = DEFAULT_MAX_LINE):
        self.clock = clock
        self.request_timeout = request_timeout
        self.connected = False
        self.lost_reason: Failure | None = None
        self._on_event, self._on_notice = on_event, on_notice
        self._framer = LineFramer(max_line)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._last_received = clock.seconds()
        self._heartbeat: IDelayedCall | None = None
        self._lost_waiters: list[Deferred[None]] = []

    @property
    def max_line(self) -> int:
        """The longest line either side may send (the server's figure once greeted)."""
        return self._framer.max_line

    @max_line.setter
    def max_line(self, value: int) -> None:
        self._framer.max_line = value

    def connectionMade(self) -> None:
        """Ready to send."""
        self.connected = True
        self._last_received = self.clock.seconds()

    def dataReceived(self, data: bytes) -> None:
        """Frame lines and route each: responses to their request, events and notices to the callbacks."""
        self._last_received = self.clock.seconds()
        try:
            for line in self._framer.feed(data):
                self._line(line)
        except LineTooLong:
            log.warn("CTI server sent a line over {limit} bytes; dropping the connection", limit=self.max_line)
            self.transport.abortConnection()

    def _line(self, line: bytes) -> None:
        try:
            message = parse_server_message(line)
        except CodecError as error:
            log.warn("CTI server sent a bad line ({error}); ignored", error=str(error))
            return
        if isinstance(message, Response):
            self._response(message)
        elif isinstance(message, Event):
            if self._on_event is not None:
                self._on_event(message)
        elif not isinstance(message, Heartbeat):
            log.debug("CTI message of an unknown kind ignored")

    def _response(self, response: Response) -> None:
        if response.id is None:
            assert response.error is not None
            if self._on_notice is not None:
                self._on_notice(response.error)
            return
        pending = self._pending.pop(response.id, None) if type(response.id) is int else None
        if pending is None:
            log.debug("CTI response for unknown id {id!r} ignored", id=response.id)
            return
        if pending.timer.active():
            pending.timer.cancel()
        if response.ok:
            pending.deferred.callback(response.result)
        else:
            assert response.error is not None
            error = response.error
            pending.deferred.errback(CTIClientError(error.code, error.message, error.data))

    def request(self, command: str, args: Mapping[str, Any] | None = None, *,
                timeout: float | None = None) -> Deferred[dict[str, Any]]:
        """Send ``command`` with ``args``; fires with the result dict.

        Fails with :class:`CTIClientError` (the server's refusal, or
        ``line_too_long`` without sending), :class:`CTIRequestTimeout` or
        :class:`CTIConnectionLost`.  Cancelling forgets the request (its
        answer, if it comes, is ignored).
        """
        if not self.connected:
            return fail(CTIConnectionLost(f"not connected; {command} not sent"))
        request_id = next(self._ids)
        line = encode_request(request_id, command, args)
        if len(line) > self.max_line + 1:
            return fail(CTIClientError(ErrorCode.LINE_TOO_LONG, f"{command} request is {len(line)} bytes"))
        delay = self.request_timeout if timeout is None else timeout
        deferred: Deferred[dict[str, Any]] = Deferred(lambda _: self._forget(request_id))
        timer = self.clock.callLater(delay, self._timed_out, request_id, delay)
        self._pending[request_id] = _Pending(command, deferred, timer)
        self.transport.write(line)
        return deferred

    def call(self, command: str, /, **args: Any) -> Deferred[dict[str, Any]]:
        """``request(command, args)`` with the default timeout."""
        return self.request(command, args)

    def _forget(self, request_id: int) -> None:
        pending = self._pending.pop(request_id, None)
        if pending is not None and pending.timer.active():
            pending.timer.cancel()

    def _timed_out(self, request_id: int, delay: float) -> None:
        pending = self._pending.pop(request_id, None)
        if pending is not None:
            pending.deferred.errback(CTIRequestTimeout(f"{pending.command}: no answer within {delay:g}s"))

    def greeted(self, info: ServerInfo) -> None:
        """Hello or Resume succeeded: adopt the server's line limit and start heartbeating."""
        self.max_line = info.max_line
        self.start_heartbeat(info.heartbeat)

    def start_heartbeat(self, interval: float) -> None:
        """Send Heartbeat every ``interval`` s; drop the connection after 3 intervals without a byte."""
        self._stop_heartbeat()
        self._heartbeat = self.clock.callLater(interval, self._beat, interval)

    def _beat(self, interval: float) -> None:
        self._heartbeat = None
        silent = self.clock.seconds() - self._last_received
        if silent >= 3 * interval:
            log.warn("CTI server silent for {silent:.1f}s; dropping the connection", silent=silent)
            self.transport.abortConnection()
            return
        self.request("Heartbeat", timeout=3 * interval).addErrback(lambda _: None)
        self._heartbeat = self.clock.callLater(interval, self._beat, interval)

    def _stop_heartbeat(self) -> None:
        timer, self._heartbeat = self._heartbeat, None
        if timer is not None and timer.active():
            timer.cancel()

    def whenLost(self) -> Deferred[None]:
        """Fires once the connection has closed."""
        waiter: Deferred[None] = Deferred()
        if self.lost_reason is not None:
            waiter.callback(None)
        else:
            self._lost_waiters.append(waiter)
        return waiter

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Fail every pending request with :class:`CTIConnectionLost`; stop the heartbeat."""
        self.connected = False
        self.lost_reason = reason or Failure(ConnectionError("closed"))
        self._stop_heartbeat()
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:  # first, so code woken by the failures below sees the link gone
            waiter.callback(None)
        pending, self._pending = list(self._pending.values()), {}
        for entry in pending:
            if entry.timer.active():
                entry.timer.cancel()
            entry.deferred.errback(CTIConnectionLost(f"connection lost before {entry.command} was answered"))


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, client: CTIClient):
        self.client = client

    def buildProtocol(self, addr: object) -> CTIConnection:
        client = self.client
        return CTIConnection(client.clock, on_event=client._event, on_notice=client._notice,
                             request_timeout=client.request_timeout, max_line=client.max_line)


class CTIClient:
    """A CTI session that survives dropped connections (see the module docstring).

    ``reactor`` (default: the global one) connects and drives the timers;
    ``name`` is sent in Hello; ``setup(connection)`` (may be async) runs on
    each *new* session before anything else is sent — the place to log in
    with ``await connection.call("Login", …)``; it is not run after a
    successful Resume, whose session is still logged in.

    When the server ends the session (``session_ended``, e.g. a forced
    logout) or hands it to another client (``session_replaced``), the client
    stops: :attr:`ended` holds the notice and nothing reconnects or logs in
    again by itself.  ``on_notice`` callbacks see every notice.
    """

    def __init__(self, reactor: Any = None, *, name: str = "ctid-client/1",
                 versions: tuple[int, ...] = PROTOCOL_VERSIONS, request_timeout: float = 10.0,
                 setup: Callable[[Any], Awaitable[object] | object] | None = None,
                 retry_policy: Callable[[int], float] | None = None, max_line: int = DEFAULT_MAX_LINE):
        if reactor is None:
            from twisted.internet import reactor  # composition edge: default to the reactor
        self.reactor = self.clock = reactor
        self.name, self.versions, self.request_timeout, self.max_line = name, tuple(versions), request_timeout, max_line
        self.info: ServerInfo | None = None
        self.last_seq = 0
        self.last_notice: CTIError | None = None
        self.ended: CTIError | None = None
        self._setup = setup
        self._policy = retry_policy if retry_policy is not None else backoffPolicy(initialDelay=0.5, maxDelay=30)
        self._token: str | None = None
        self._service: ClientService | None = None
        self._connection: Any = None
        self._closing = False
        self._waiters: list[Deferred[Any]] = []
        self._handlers: dict[str | None, list[EventHandler]] = {}
        self._session_callbacks: list[Callable[[ServerInfo], object]] = []
        self._notice_callbacks: list[Callable[[CTIError], object]] = []

    @property
    def connected(self) -> bool:
        """True while a greeted connection is up."""
        return self._connection is not None

    # --- connecting

    def connect(self, endpoint: str | IStreamClientEndpoint, *, fail_after: int | None = 1) -> Deferred[ServerInfo]:
        """Start connecting to ``endpoint`` (a client endpoint string or object); fires with the ServerInfo.

        Fails (and stops trying) after ``fail_after`` failed attempts — a
        refused connection, or a failed Hello/setup, such as
        ``unsupported_version`` or a refused login; None: keep trying.
        Reconnecting later is automatic.
        """
        if self._service is not None:
            return fail(RuntimeError("CTIClient.connect called twice"))
        if isinstance(endpoint, str):
            endpoint = clientFromString(self.reactor, endpoint)
        self._closing, self.ended = False, None
        self._service = ClientService(LossTolerantEndpoint(endpoint), _ConnectionFactory(self),
                                      retryPolicy=self._policy, clock=self.clock, prepareConnection=self._prepare)
        self._service.startService()
        return Deferred.fromCoroutine(self._first_connection(self._service, fail_after))

    async def _first_connection(self, service: ClientService, fail_after: int | None) -> ServerInfo:
        try:
            await service.whenConnected(failAfterFailures=fail_after)
        except BaseException:
            if self._service is service:
                self._service = None
                # Not from inside ClientService's own transition (automat refuses re-entry): next turn.
                await deferLater(self.clock, 0, service.stopService)
            raise
        assert self.info is not None
        return self.info

    def hello(self) -> Deferred[ServerInfo]:
        """Fires with the ServerInfo of the current greeted connection, waiting for one if reconnecting."""
        return Deferred.fromCoroutine(self._hello_info())

    async def _hello_info(self) -> ServerInfo:
        await self._wait_connected(self.request_timeout)
        assert self.info is not None
        return self.info

    def _prepare(self, connection: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(self._greet(connection))

    async def _greet(self, connection: Any) -> None:
        try:
            info = await self._resume(connection) if self._token is not None else None
            if info is None:
                info = await self._new_session(connection)
        except CancelledError:
            connection.transport.abortConnection()
            raise
        except Exception as error:
            log.warn("CTI greeting failed: {error}", error=str(error) or repr(error))
            connection.transport.abortConnection()
            raise
        self.info, self._connection = info, connection
        connection.greeted(info)
        connection.whenLost().addCallback(lambda _: self._lost(connection))
        log.info("CTI {how} session with {server} (version {version})", server=info.server, version=info.version,
                 how="resumed" if info.resumed else "new", replay=info.replay)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(connection)
        for fn in list(self._session_callbacks):
            self._call(fn, info)

    async def _resume(self, connection: Any) -> ServerInfo | None:
        try:
            result = await connection.request("Resume", {"session": self._token, "last_seq": self.last_seq})
        except CTIClientError as error:
            if error.code not in (ErrorCode.UNKNOWN_SESSION, ErrorCode.RESUME_GAP):
                raise
            log.info("CTI session could not be resumed ({code}); starting a new one", code=error.code)
            self._token = None
            return None
        return ServerInfo.from_result(result, resumed=True)

    async def _new_session(self, connection: Any) -> ServerInfo:
        result = await connection.request("Hello", {"versions": list(self.versions), "client": self.name})
        info = ServerInfo.from_result(result, resumed=False)
        self._token, self.last_seq = info.session, 0
        if self._setup is not None:
            try:
                outcome = self._setup(connection)
                if inspect.isawaitable(outcome):
                    await outcome
            except BaseException:
                self._token = None  # never resume a session whose setup did not finish
                raise
        return info

    def _lost(self, connection: Any) -> None:
        if self._connection is connection:
            self._connection = None
        reason = connection.lost_reason.getErrorMessage() if connection.lost_reason else "closed"
        if self._closing:
            log.info("CTI connection closed")
        else:
            log.info("CTI connection lost ({reason}); reconnecting", reason=reason)

    # --- requests

    def request(self, command: str, args: Mapping[str, Any] | None = None, *,
                timeout: float | None = None) -> Deferred[dict[str, Any]]:
        """Send ``command`` with ``args`` on the current connection (waiting for one within the timeout).

        Fires with the result dict; fails with :class:`CTIClientError` (the
        server's ``code``/``message``), :class:`CTIRequestTimeout` or
        :class:`CTIConnectionLost` (the connection dropped after sending: the
        outcome is unknown — watch the events).
        """
        delay = self.request_timeout if timeout is None else timeout
        return Deferred.fromCoroutine(self._request(command, args, delay))

    def call(self, command: str, /, **args: Any) -> Deferred[dict[str, Any]]:
        """``request(command, args)`` with the default timeout: ``await client.call("MakeCall", to="1002")``."""
        return self.request(command, args)

    async def _request(self, command: str, args: Mapping[str, Any] | None, timeout: float) -> dict[str, Any]:
        deadline = self.clock.seconds() + timeout
        connection = self._connection if self._connection is not None else await self._wait_connected(timeout)
        return await connection.request(command, args, timeout=max(deadline - self.clock.seconds(), 0.001))

    async def _wait_connected(self, timeout: float) -> Any:
        if self._connection is not None:
            return self._connection
        if self._service is None:
            raise CTIConnectionLost("not connected (call connect first)")
        waiter: Deferred[Any] = Deferred(lambda d: self._waiters.remove(d) if d in self._waiters else None)
        self._waiters.append(waiter)
        try:
            return await waiter.addTimeout(timeout, self.clock)
        except DeferredTimeout:
            raise CTIRequestTimeout(f"not connected within {timeout:g}s") from None

    # --- events

    def on_event(self, name: str | None, fn: EventHandler) -> None:
        """Call ``fn(event)`` for each event called ``name`` (None: every event), once per seq."""
        self._handlers.setdefault(name, []).append(fn)

    def off_event(self, name: str | None, fn: EventHandler) -> None:
        """Stop calling ``fn`` for ``name``."""
        handlers = self._handlers.get(name, [])
        if fn in handlers:
            handlers.remove(fn)

    def on_session(self, fn: Callable[[ServerInfo], object]) -> None:
        """Call ``fn(info)`` after every Hello (``info.resumed`` False: resync your state) or Resume."""
        self._session_callbacks.append(fn)

    def _event(self, event: Event) -> None:
        if event.seq <= self.last_seq:
            log.debug("CTI event {seq} already seen; skipped", seq=event.seq)
            return
        if event.seq != self.last_seq + 1:
            log.warn("CTI events {first}..{last} are missing", first=self.last_seq + 1, last=event.seq - 1)
        self.last_seq = event.seq
        for fn in self._handlers.get(event.name, []) + self._handlers.get(None, []):
            self._call(fn, event)

    def on_notice(self, fn: Callable[[CTIError], object]) -> None:
        """Call ``fn(error)`` for each connection notice (an error with id null: why the server closes)."""
        self._notice_callbacks.append(fn)

    def _notice(self, error: CTIError) -> None:
        self.last_notice = error
        log.warn("CTI server notice {code}: {message}", code=error.code, message=error.message)
        if error.code == ErrorCode.SHUTTING_DOWN:
            self._token = None  # the session is gone; reconnect later with Hello
        elif error.code in (ErrorCode.SESSION_REPLACED, ErrorCode.SESSION_ENDED):
            self._session_over(error)
        for fn in list(self._notice_callbacks):
            self._call(fn, error)

    def _session_over(self, error: CTIError) -> None:
        """The server ended our session (forced logout …) or gave it to another client: stop, do not log in again."""
        self.ended, self._token, self._closing = error, None, True
        service, self._service = self._service, None
        self._fail_waiters(CTIConnectionLost(f"session ended by the server ({error.code})"))
        if service is not None:
            service.stopService().addErrback(lambda failure: log.failure("CTI client stop failed", failure))

    def _call(self, fn: Callable[[Any], object], argument: object) -> None:
        try:
            result = fn(argument)
            if isinstance(result, Deferred) or inspect.isawaitable(result):
                ensureDeferred(result).addErrback(self._callback_failed, fn)  # type: ignore[arg-type]
        except Exception:
            self._callback_failed(Failure(), fn)

    def _callback_failed(self, failure: Failure, fn: object) -> None:
        log.failure("CTI client callback {callback!r} failed", failure, level=LogLevel.error, callback=fn)

    # --- closing

    def close(self) -> Deferred[None]:
        """Say Bye (the session ends, no resume), stop reconnecting, close; fires when closed."""
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        service, self._service = self._service, None
        if service is None:
            return
        self._closing = True
        connection = self._connection
        if connection is not None:
            try:
                await connection.request("Bye", timeout=min(self.request_timeout, 5.0))
            except CTIClientError as error:
                log.info("CTI Bye not answered ({error})", error=str(error))
        self._token, self.info = None, None
        self._fail_waiters(CTIConnectionLost("the client was closed"))
        await service.stopService()

    def _fail_waiters(self, error: Exception) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(error)
