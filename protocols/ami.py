"""AMI client protocol: correlated actions, list actions, events, keepalive.

The middle layer between :mod:`ctid.protocols.amiwire` (pure framing) and the
domain.  :class:`AMIProtocol` frames bytes into messages, matches responses
and list events to the action that asked for them by ``ActionID``, and hands
every event to an :class:`EventDispatcher` that lives outside the protocol, so
subscriptions survive reconnects.  Every action has a timeout, can be
cancelled and fails with :class:`AMIConnectionLost` when the link drops.

The action helpers (``login``, ``originate``, …) are the
:class:`~ctid.protocols.amiactions.AMIActions` mixin.  The reconnecting,
logging-in service is in :mod:`ctid.protocols.amiclient` (also importable
from here as ``AMIClientService``).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from .amiactions import AMIActions
from .amiwire import Message, MessageParser, ProtocolViolation, format_message

BANNER_PREFIX = "Asterisk Call Manager/"
FEED_CHUNK = 64 * 1024
"""Bytes handed to the parser at a time, so one huge read can't balloon a parse."""
FEED_BUDGET = 256 * 1024
"""Bytes handled in one reactor turn; the rest waits for the next (TCP reads are 64 KiB)."""

Headers = Mapping[str, object] | Iterable[tuple[str, object]]
EventHandler = Callable[[Message], object]


class AMIError(Exception):
    """Asterisk refused an action (``Response: Error``, a failed Originate, a cancelled list).

    ``response`` is the :class:`Message` that said so; ``str()`` is its
    ``Message:`` header.
    """

    def __init__(self, response: Message, action: str | None = None):
        self.response = response
        self.action = action
        super().__init__(_error_text(response))

    def __repr__(self) -> str:
        return f"AMIError({self.action!r}, {str(self)!r})"


def _error_text(response: Message) -> str:
    text = response.get("Message")
    if text:
        return text
    if response.event == "OriginateResponse":
        return f"Originate failed (Reason {response.get('Reason')})"
    if response.event is not None:
        return f"{response.event}: EventList {response.get('EventList')}"
    return f"Response: {response.get('Response')}"


class ActionTimeout(Exception):
    """An action got no (complete) answer within its timeout."""

    def __init__(self, action: str, action_id: str, timeout: float):
        self.action = action
        self.action_id = action_id
        self.timeout = timeout
        super().__init__(f"{action} (ActionID {action_id}) got no answer within {timeout} s")


class AMIConnectionLost(Exception):
    """The AMI connection closed (or was never open) before the action was answered."""


@dataclass
class ActionResult:
    """The answer to one action.

    ``response`` is the ``Response:`` message; for list actions (``EventList:
    start``) ``events`` holds the item events in order and ``complete`` the
    closing ``…Complete`` event.  Otherwise ``events`` is empty and
    ``complete`` None.
    """

    response: Message
    events: list[Message] = field(default_factory=list)
    complete: Message | None = None


class EventDispatcher:
    """Routes AMI events to handlers by event name (case-insensitive).

    Lives outside the protocol: one dispatcher serves every connection a
    service makes, so handlers registered once keep working across
    reconnects.  A handler that raises (or returns a coroutine/Deferred that
    fails) is logged and never disturbs the others or the connection.
    """

    log = Logger()

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[EventHandler, ...]] = {}
        self._catch_all: tuple[EventHandler, ...] = ()
        self._resolved: dict[str | None, tuple[EventHandler, ...]] = {}

    def register(self, name: str | None, fn: EventHandler) -> None:
        """Call ``fn(message)`` for every event called ``name`` (None: every event)."""
        if name is None:
            self._catch_all += (fn,)
        else:
            key = name.lower()
            self._by_name[key] = self._by_name.get(key, ()) + (fn,)
        self._resolved = {}

    def deregister(self, name: str | None, fn: EventHandler) -> None:
        """Stop calling ``fn`` for ``name``; unknown pairs are ignored."""
        self._resolved = {}
        if name is None:
            self._catch_all = tuple(h for h in self._catch_all if h != fn)
            return
        key = name.lower()
        remaining = tuple(h for h in self._by_name.get(key, ()) if h != fn)
        if remaining:
            self._by_name[key] = remaining
        else:
            self._by_name.pop(key, None)

    def handlers(self, name: str | None) -> tuple[EventHandler, ...]:
        """The handlers an event called ``name`` goes to, in call order."""
        handlers = self._resolved.get(name)
        if handlers is None:
            named = self._by_name.get(name.lower(), ()) if name is not None else ()
            handlers = named + self._catch_all
            if len(self._resolved) > 4096:  # a peer inventing names can't grow this forever
                self._resolved = {}
            self._resolved[name] = handlers
        return handlers

    def dispatch(self, message: Message) -> None:
        """Hand ``message`` to the handlers for its event name, then the catch-alls."""
        name = message.event
        handlers = self._resolved.get(name)
        for fn in self.handlers(name) if handlers is None else handlers:
            try:
                result = fn(message)
            except Exception:
                self._failed(Failure(), fn, name)
                continue
            if result is not None:
                self._settle_result(result, fn, name)

    def _settle_result(self, result: object, fn: EventHandler, name: str | None) -> None:
        if isinstance(result, Deferred) or inspect.isawaitable(result):
            ensureDeferred(result).addErrback(self._failed, fn, name)  # type: ignore[arg-type]

    def _failed(self, failure: Failure, fn: EventHandler, name: str | None) -> None:
        self.log.failure("AMI event handler {handler!r} failed on {event}", failure,
                         level=LogLevel.error, handler=fn, event=name)


class _Pending:
    """One action waiting for its answer."""

    __slots__ = ("action", "action_id", "deferred", "timer", "response", "events", "complete",
                 "until_originate")

    def __init__(self, action: str, action_id: str, until_originate: bool):
        self.action = action
        self.action_id = action_id
        self.until_originate = until_originate
        self.response: Message | None = None
        self.events: list[Message] = []
        self.complete: Message | None = None
        self.deferred: Deferred[Any]
        self.timer: Any = None


class AMIProtocol(AMIActions, Protocol):
    """One AMI connection: frames messages, correlates actions, dispatches events.

    The action helpers come from :class:`AMIActions`.  Create through
    :class:`AMIFactory`.  ``banner`` / ``ami_version`` are set
    once the ``Asterisk Call Manager/x.y.z`` banner arrived; a peer sending
    anything else, an over-long line or message is logged and dropped.
    """

    log = Logger()
    _serial = itertools.count(1)
    #: A TCP or TLS connection (``Protocol`` declares only an optional ``ITransport``, without ``abortConnection``).
    transport: ITCPTransport

    def __init__(self, clock: IReactorTime, dispatcher: EventDispatcher | None = None, *,
                 action_timeout: float = 10.0, ping_interval: float | None = 20.0,
                 ping_timeout: float = 5.0):
        self.clock = clock
        self.dispatcher = dispatcher if dispatcher is not None else EventDispatcher()
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.banner: str | None = None
        self.ami_version: str | None = None
        self.logged_in = False
        self.lost_reason: Failure | None = None
        self._open = False
        self._parser = MessageParser(banner=True)
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._id_prefix = f"ctid-{next(self._serial)}-"
        self._banner_waiters: list[Deferred[AMIProtocol]] = []
        self._lost_waiters: list[Deferred[BaseException]] = []
        self._keepalive: LoopingCall | None = None
        self._backlog: list[bytes] | None = None
        self._drain_call: Any = None

    # -- connection lifecycle ------------------------------------------------

    def connectionMade(self) -> None:
        self._open = True

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Fail every pending action with :class:`AMIConnectionLost`; stop the keepalive."""
        self._open = False
        self.logged_in = False
        self.lost_reason = reason
        self._stop_keepalive()
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._backlog = self._drain_call = None
        lost = AMIConnectionLost(f"AMI connection lost: {reason.getErrorMessage() if reason else 'closed'}")
        pending = list(self._pending.values())
        self._pending.clear()
        for entry in pending:
            if entry.timer.active():
                entry.timer.cancel()
            entry.deferred.errback(lost)
        self._fire_banner_waiters(lost)
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(reason.value if reason is not None and reason.value is not None else lost)

    def whenBanner(self) -> Deferred[AMIProtocol]:
        """Fires with this protocol once a valid banner arrived.

        Fails with :class:`ProtocolViolation` for a foreign banner and with
        :class:`AMIConnectionLost` if the connection closes first.
        """
        if self.ami_version is not None:
            return succeed(self)
        if not self._open and self.lost_reason is not None:
            return fail(AMIConnectionLost("AMI connection closed before the banner"))
        waiter: Deferred[AMIProtocol] = Deferred(lambda d: self._banner_waiters.remove(d))
        self._banner_waiters.append(waiter)
        return waiter

    def whenDisconnected(self) -> Deferred[BaseException]:
        """Fires with the exception that ended the connection (see also ``lost_reason``)."""
        waiter: Deferred[BaseException] = Deferred(lambda d: self._lost_waiters.remove(d))
        self._lost_waiters.append(waiter)
        return waiter

    def _fire_banner_waiters(self, outcome: AMIProtocol | BaseException) -> None:
        waiters, self._banner_waiters = self._banner_waiters, []
        for waiter in waiters:
            if isinstance(outcome, BaseException):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    @property
    def peer(self) -> str:
        """The peer as ``host:port`` (for logs)."""
        peer = self.transport.getPeer() if self.transport is not None else None
        host, port = getattr(peer, "host", None), getattr(peer, "port", None)
        return f"{host}:{port}" if host is not None else str(peer)

    def _drop(self, why: Exception) -> None:
        """Give up on a peer that broke the protocol."""
        self._open = False
        self._fire_banner_waiters(why)
        self.transport.abortConnection()

    # -- input ---------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Parse and route the bytes, yielding to the reactor after ``FEED_BUDGET`` bytes."""
        if self._backlog is not None:
            self._backlog.append(data)  # still working through earlier bytes: keep the order
            return
        self._consume(data)

    def _consume(self, data: bytes) -> None:
        try:
            for start in range(0, len(data), FEED_CHUNK):
                if not self._open:
                    return
                if start >= FEED_BUDGET:
                    self._backlog = [data[start:]]
                    cast(IPushProducer, self.transport).pauseProducing()  # TCP and TLS transports are producers
                    self._drain_call = self.clock.callLater(0, self._drain)
                    return
                messages = self._parser.feed(data[start:start + FEED_CHUNK] if len(data) > FEED_CHUNK else data)
                if self.banner is None and not self._banner_arrived():
                    continue
                self._deliver(iter(messages))
        except ProtocolViolation as error:
            self.log.error("AMI peer {peer} broke the protocol ({error}); dropping the connection",
                           peer=self.peer, error=str(error))
            self._drop(error)

    def _drain(self) -> None:
        backlog, self._backlog, self._drain_call = self._backlog, None, None
        if not self._open or backlog is None:
            return
        self._consume(b"".join(backlog))
        if self._backlog is None and self._open:
            cast(IPushProducer, self.transport).resumeProducing()

    def _banner_arrived(self) -> bool:
        banner = self._parser.banner
        if banner is None:
            return False
        self.banner = banner = banner.strip()
        if not banner.startswith(BANNER_PREFIX):
            raise ProtocolViolation(f"not an Asterisk manager: banner {banner[:80]!r}")
        self.ami_version = banner[len(BANNER_PREFIX):]
        self._fire_banner_waiters(self)
        return True

    def _deliver(self, messages: Iterator[Message]) -> None:
        """Route each message; one that can't be handled is logged and skipped, the rest go on."""
        while True:
            try:
                self._route(messages)
                return
            except ProtocolViolation as error:
                self.log.warn("AMI message skipped: {error}", error=str(error))
            except Exception:
                self.log.failure("AMI message could not be handled", level=LogLevel.error)

    def _route(self, messages: Iterator[Message]) -> None:
        pending, dispatch = self._pending, self.dispatcher.dispatch
        for message in messages:
            event = message.event
            if event is None:
                self._response_received(message)
                continue
            if pending:
                action_id = message.action_id
                entry = pending.get(action_id) if action_id is not None else None
                if entry is not None:
                    self._action_event(entry, message, event)
            dispatch(message)

    def _response_received(self, message: Message) -> None:
        action_id = message.action_id
        entry = self._pending.get(action_id) if action_id is not None else None
        if entry is None:
            if message.get("Response") is None:
                self.log.warn("AMI message is neither event nor response, skipped: {text!r}",
                              text=message.text[:200])
            else:
                self.log.debug("AMI response for unknown ActionID {action_id}", action_id=action_id)
            return
        if (message.get("Response") or "").lower() == "error":
            self._settle(entry, AMIError(message, entry.action))
            return
        entry.response = message
        if (message.get("EventList") or "").lower() == "start":
            if entry.complete is not None:
                self._settle(entry, ActionResult(message, entry.events, entry.complete))
        elif not entry.until_originate:
            self._settle(entry, ActionResult(message, entry.events, entry.complete))

    def _action_event(self, entry: _Pending, message: Message, event: str) -> None:
        if entry.until_originate:
            if event.lower() == "originateresponse":
                failed = (message.get("Response") or "").lower() == "failure"
                self._settle(entry, AMIError(message, entry.action) if failed else message)
            return
        state = (message.get("EventList") or "").lower()
        if not (state in ("complete", "cancelled") or (not state and event.endswith("Complete"))):
            entry.events.append(message)
            return
        entry.complete = message
        if state == "cancelled":
            self._settle(entry, AMIError(message, entry.action))
        elif entry.response is not None:
            self._settle(entry, ActionResult(entry.response, entry.events, message))

    def _settle(self, entry: _Pending, outcome: object) -> None:
        self._pending.pop(entry.action_id, None)
        if entry.timer.active():
            entry.timer.cancel()
        if isinstance(outcome, BaseException):
            entry.deferred.errback(outcome)
        else:
            entry.deferred.callback(outcome)

    # -- output --------------------------------------------------------------

    def sendAction(self, action: str, headers: Headers = (), timeout: float | None = None) -> Deferred[ActionResult]:
        """Send ``action`` with ``headers`` (mapping or ordered pairs; pairs may repeat).

        Fires with an :class:`ActionResult`; fails with :class:`AMIError`,
        :class:`ActionTimeout` (after ``timeout`` s, default the factory's),
        :class:`AMIConnectionLost` or ``ValueError`` (CR/LF in a value).
        Cancelling the Deferred forgets the action.
        """
        return self._send(action, headers, timeout, until_originate=False)

    def _send(self, action: str, headers: Headers, timeout: float | None, until_originate: bool) -> Deferred[Any]:
        if not self._open:
            return fail(AMIConnectionLost(f"AMI not connected; {action} not sent"))
        action_id = f"{self._id_prefix}{next(self._ids)}"
        pairs: list[tuple[str, object]] = [("Action", action), ("ActionID", action_id)]
        pairs.extend(headers.items() if isinstance(headers, Mapping) else headers)
        try:
            data = format_message(pairs)
        except ValueError as error:
            return fail(error)
        entry = _Pending(action, action_id, until_originate)
        entry.deferred = Deferred(lambda _: self._cancelled(action_id))
        delay = self.action_timeout if timeout is None else timeout
        entry.timer = self.clock.callLater(delay, self._timed_out, action_id, delay)
        self._pending[action_id] = entry
        self.log.debug("AMI action {action} sent (ActionID {action_id})", action=action, action_id=action_id)
        self.transport.write(data)
        return entry.deferred

    def _cancelled(self, action_id: str) -> None:
        entry = self._pending.pop(action_id, None)
        if entry is not None and entry.timer.active():
            entry.timer.cancel()

    def _timed_out(self, action_id: str, timeout: float) -> None:
        entry = self._pending.get(action_id)
        if entry is not None:
            self._settle(entry, ActionTimeout(entry.action, action_id, timeout))

    # -- keepalive -----------------------------------------------------------

    def _start_keepalive(self) -> None:
        if not self.ping_interval or self._keepalive is not None or not self._open:
            return
        self._keepalive = LoopingCall(self._ping_once)
        self._keepalive.clock = self.clock
        self._keepalive.start(self.ping_interval, now=False).addErrback(
            lambda f: self.log.failure("AMI keepalive stopped", f, level=LogLevel.error))

    def _logged_in(self) -> None:
        """The Login action succeeded: the session is up, start the keepalive ping."""
        self.logged_in = True
        self._start_keepalive()

    def _stop_keepalive(self) -> None:
        loop, self._keepalive = self._keepalive, None
        if loop is not None and loop.running:
            loop.stop()

    def _ping_once(self) -> Deferred[Any]:
        return self.sendAction("Ping", timeout=self.ping_timeout).addErrback(self._ping_failed)

    def _ping_failed(self, failure: Failure) -> None:
        if not self._open:
            return
        self.log.warn("AMI keepalive to {peer} failed ({error}); dropping the link",
                      peer=self.peer, error=failure.getErrorMessage())
        self.transport.abortConnection()


class AMIFactory(Factory):
    """Builds :class:`AMIProtocol` instances sharing one dispatcher, clock and settings."""

    protocol = AMIProtocol
    noisy = False

    def __init__(self, dispatcher: EventDispatcher | None = None, clock: IReactorTime | None = None, *,
                 action_timeout: float = 10.0, ping_interval: float | None = 20.0, ping_timeout: float = 5.0):
        if clock is None:
            from twisted.internet import reactor  # composition edge: default to the reactor
            clock = reactor
        self.dispatcher = dispatcher if dispatcher is not None else EventDispatcher()
        self.clock = clock
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout

    def buildProtocol(self, addr: object) -> AMIProtocol:
        """A new protocol wired to this factory's dispatcher and clock."""
        protocol = self.protocol(self.clock, self.dispatcher, action_timeout=self.action_timeout,
                                 ping_interval=self.ping_interval, ping_timeout=self.ping_timeout)
        protocol.factory = self
        return protocol


def __getattr__(name: str) -> Any:
    if name == "AMIClientService":
        from .amiclient import AMIClientService

        return AMIClientService
    raise AttributeError(name)
