"""One connection to ctid's CTI server, as the client library sees it (docs/cti-protocol.md).

:class:`CTIConnection` is the protocol: requests paired with their responses
by id, each with a timeout, all failed with :class:`CTIConnectionLost` when
the connection closes; events and connection notices handed to callbacks;
the heartbeat once greeted.  It is usable alone with ``connectProtocol``
for tests and tools; :class:`ctid.client.CTIClient` keeps one up and
greets it.  The errors requests fail with and :class:`ServerInfo`, the
greeting, live here too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ctid.protocols.cticodec import (
    DEFAULT_MAX_LINE,
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

log = Logger()


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

    #: A TCP or TLS connection (``Protocol`` declares only an optional ``ITransport``, without ``abortConnection``).
    transport: ITCPTransport

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
            assert response.result is not None
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
