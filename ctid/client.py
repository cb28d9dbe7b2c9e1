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

This module is the library's public face: it also exports what callers
handle from :mod:`ctid.clientconnection` — :class:`CTIConnection` (one
connection, usable alone with ``connectProtocol`` for tests and tools), the
errors and :class:`ServerInfo`.  Like the server, the library is an edge of
ctid: it imports :mod:`ctid.protocols.cticodec`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ctid.clientconnection import CTIClientError, CTIConnection, CTIConnectionLost, CTIRequestTimeout, ServerInfo
from ctid.protocols.clientguard import LossTolerantEndpoint
from ctid.protocols.cticodec import DEFAULT_MAX_LINE, PROTOCOL_VERSIONS, CTIError, ErrorCode, Event

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
        target: IStreamClientEndpoint = (clientFromString(self.reactor, endpoint) if isinstance(endpoint, str)
                                         else endpoint)
        self._closing, self.ended = False, None
        self._service = ClientService(LossTolerantEndpoint(target), _ConnectionFactory(self),
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
