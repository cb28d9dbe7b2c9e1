"""A guard for ``ClientService``: connections lost before it accepted them.

Shared by the AMI client service and the CTI client library.
"""

from __future__ import annotations

from typing import Any, cast

from automat import NoTransition
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IStreamClientEndpoint)
class LossTolerantEndpoint:
    """Hides from ``ClientService`` the loss of a connection it never accepted.

    ``ClientService`` (Twisted 26.x) has no transition for a connection that
    closes while ``prepareConnection`` runs or after it failed: the loss
    notification raises automat's ``NoTransition`` out of ``connectionLost``.
    Our protocol still sees the loss (which fails the login, so the attempt
    counts as failed and is retried with backoff); only that exception is
    swallowed.
    """

    def __init__(self, endpoint: IStreamClientEndpoint):
        self._endpoint = endpoint

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        connecting = self._endpoint.connect(_GuardFactory(factory))
        return connecting.addCallback(_wrapped_protocol)


def _wrapped_protocol(guard: IProtocol) -> IProtocol:
    return cast(_LossGuard, guard).wrapped  # what _GuardFactory builds


@implementer(IProtocolFactory)
class _GuardFactory:
    def __init__(self, factory: IProtocolFactory):
        self._factory = factory

    def doStart(self) -> None:
        self._factory.doStart()

    def doStop(self) -> None:
        self._factory.doStop()

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:
        built = self._factory.buildProtocol(addr)
        return None if built is None else _LossGuard(built)


class _LossGuard(Protocol):
    log = Logger()

    def __init__(self, wrapped: IProtocol):
        self.wrapped = wrapped

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.wrapped.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.wrapped.dataReceived(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        try:
            self.wrapped.connectionLost(reason)
        except NoTransition:
            self.log.debug("connection closed before ClientService accepted it")
