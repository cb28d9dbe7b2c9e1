"""CTI server: agents' desktops, CRM toolbars and supervisors connect here.

Layers (docs/cti-protocol.md describes the wire):

* :mod:`ctid.protocols.cticodec` frames and validates JSON lines;
* :mod:`ctid.protocols.cticonnection` is one connection (its limits in
  :mod:`ctid.protocols.ctilimits`, its output and backpressure in
  :mod:`ctid.protocols.ctioutbox`);
* :mod:`ctid.protocols.ctisession` holds the sessions, which survive the
  connection for ``resume_grace`` seconds, with their replay buffers
  (:mod:`ctid.protocols.ctireplay`);
* :mod:`ctid.protocols.ctiapi` is the :class:`ICTIHandler` seam the command
  handlers implement.

This module assembles them: :class:`CTIServerFactory` carries the settings,
the session registry and the per-address connection count, and
:class:`CTIServerService` listens.  TLS is a different endpoint string.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from importlib import metadata
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from .ctiapi import CommandRouter, ICTIHandler, require_login
from .cticodec import CTIError, ErrorCode, encode_error
from .cticonnection import ConnectionState, CTIServerProtocol
from .ctilimits import CTISettings, TokenBucket
from .ctisession import CTISession, ICTISession, SessionRegistry

__all__ = [
    "CTIError",
    "CTIServerFactory",
    "CTIServerProtocol",
    "CTIServerService",
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


def _default_server_version() -> str:
    try:
        return f"ctid/{metadata.version('ctid')}"
    except metadata.PackageNotFoundError:
        return "ctid/unknown"


def _peer_of(address: object) -> str:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    return f"{host}:{port}" if host is not None else str(address)


class _Refusal(Protocol):
    """Says ``too_many_connections`` and closes."""

    transport: ITransport  # set by makeConnection, before connectionMade

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
            from twisted.internet import reactor  # composition edge: default to the reactor
            clock = reactor
        self.handler = handler
        self.trace = trace
        self.clock: IReactorTime = clock
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
