"""The AMI link as a service: connect, log in, keep alive, reconnect.

:class:`AMIClientService` wraps Twisted's ``ClientService`` (exponential
backoff between attempts) and logs in from ``prepareConnection``, so
``whenConnected`` and :attr:`AMIClientService.protocol` only ever give out a
logged-in :class:`~ctid.protocols.ami.AMIProtocol`.  Event handlers live on
the shared :class:`~ctid.protocols.ami.EventDispatcher` and survive
reconnects; ``on_connected`` callbacks are the place to resync state.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, cast

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IProtocol, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from .ami import AMIError, AMIFactory, AMIProtocol, EventDispatcher
from .amiwire import ProtocolViolation
from .clientguard import LossTolerantEndpoint


class AMIClientService(Service):
    """Keeps one logged-in AMI connection to ``endpoint``, reconnecting with backoff.

    Login failures are logged (never the secret), the connection is dropped
    and retried with backoff.  ``add_connected_callback(fn)`` callbacks get
    the logged-in protocol after every (re)login;
    ``add_disconnected_callback(fn)`` callbacks get the reason (a Failure)
    when a logged-in connection ends.
    """

    log = Logger()

    def __init__(self, endpoint: IStreamClientEndpoint, username: str, secret: str, *, md5: bool = True,
                 dispatcher: EventDispatcher | None = None, clock: IReactorTime | None = None,
                 action_timeout: float = 10.0, ping_interval: float | None = 20.0, ping_timeout: float = 5.0,
                 events: str | None = "on", name: str = "ami",
                 retry_policy: Callable[[int], float] | None = None):
        if clock is None:
            from twisted.internet import reactor  # composition edge: default to the reactor
            clock = reactor
        self.name = name
        self.username = username
        self._secret = secret
        self._md5 = md5
        self._events = events
        self._clock = clock
        self._timeout = action_timeout
        self.dispatcher = dispatcher if dispatcher is not None else EventDispatcher()
        self.factory = AMIFactory(self.dispatcher, clock, action_timeout=action_timeout,
                                  ping_interval=ping_interval, ping_timeout=ping_timeout)
        self.protocol: AMIProtocol | None = None
        self._on_connected: list[Callable[[AMIProtocol], object]] = []
        self._on_disconnected: list[Callable[[Failure], object]] = []
        policy = retry_policy if retry_policy is not None else backoffPolicy(initialDelay=0.5, maxDelay=30)
        self._client = ClientService(LossTolerantEndpoint(endpoint), self.factory, retryPolicy=policy,
                                     clock=clock, prepareConnection=self._prepare)

    def add_connected_callback(self, fn: Callable[[AMIProtocol], object]) -> None:
        """Call ``fn(protocol)`` after every successful login (now, too, if logged in)."""
        self._on_connected.append(fn)
        if self.protocol is not None:
            self._call(fn, self.protocol)

    def add_disconnected_callback(self, fn: Callable[[Failure], object]) -> None:
        """Call ``fn(reason)`` whenever a logged-in connection ends."""
        self._on_disconnected.append(fn)

    def whenConnected(self, failAfterFailures: int | None = None) -> Deferred[AMIProtocol]:
        """Fires with the current logged-in protocol, or the next one.

        Fails after ``failAfterFailures`` consecutive failed attempts (None:
        only when the service stops, with ``CancelledError``).
        """
        connected = self._client.whenConnected(failAfterFailures=failAfterFailures)
        return cast("Deferred[AMIProtocol]", connected)  # our factory builds AMIProtocol

    def startService(self) -> None:
        """Start connecting."""
        super().startService()
        self._client.startService()

    def stopService(self) -> Deferred[None]:
        """Stop reconnecting and close the connection; fires when it is closed."""
        super().stopService()
        return self._client.stopService()

    def _prepare(self, connection: IProtocol) -> Deferred[None]:
        return Deferred.fromCoroutine(self._log_in(connection))

    async def _log_in(self, connection: Any) -> None:
        try:
            protocol: AMIProtocol = await connection.whenBanner().addTimeout(self._timeout, self._clock)
            await protocol.login(self.username, self._secret, md5=self._md5, events=self._events)
        except AMIError as error:
            self.log.error("AMI login failed for user {username}: {error}", username=self.username,
                           error=str(error), peer=connection.peer)
            connection.transport.abortConnection()
            raise
        except ProtocolViolation:
            raise  # the protocol logged it and dropped the connection
        except CancelledError:
            connection.transport.abortConnection()  # the service is stopping
            raise
        except Exception as error:
            self.log.warn("AMI login as {username} to {peer} did not complete: {error}",
                          username=self.username, peer=connection.peer, error=str(error) or repr(error))
            connection.transport.abortConnection()
            raise
        self.protocol = protocol
        protocol.whenDisconnected().addCallback(lambda _: self._link_lost(protocol))
        self.log.info("AMI connected to {peer} (Asterisk Call Manager/{version}) as {username}",
                      peer=protocol.peer, version=protocol.ami_version, username=self.username)
        for fn in list(self._on_connected):
            self._call(fn, protocol)

    def _link_lost(self, protocol: AMIProtocol) -> None:
        if self.protocol is protocol:
            self.protocol = None
        reason = protocol.lost_reason or Failure(ConnectionError("AMI connection closed"))
        if self.running:
            self.log.warn("AMI link lost: {reason}; reconnecting", reason=reason.getErrorMessage())
        else:
            self.log.info("AMI link closed: {reason}", reason=reason.getErrorMessage())
        for fn in list(self._on_disconnected):
            self._call(fn, reason)

    def _call(self, fn: Callable[[Any], object], argument: object) -> None:
        try:
            result = fn(argument)
            if result is not None and (inspect.isawaitable(result) or isinstance(result, Deferred)):
                # ensureDeferred raises for other awaitables: logged below like any callback error.
                ensureDeferred(cast("Coroutine[Any, Any, object]", result)).addErrback(self._callback_failed, fn)
        except Exception:
            self._callback_failed(Failure(), fn)

    def _callback_failed(self, failure: Failure, fn: object) -> None:
        self.log.failure("AMI link callback {callback!r} failed", failure, level=LogLevel.error, callback=fn)
