"""The FastAGI client side: the simulator connects OUT to ctid's FastAGI server.

A thin ``LineOnlyReceiver`` (LF framing, as Asterisk writes and reads it) in
front of :class:`~.agi.AgiSession`.  The endpoint is a client endpoint
string (``tcp:127.0.0.1:4573``), so TLS or UNIX sockets are a settings change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

if TYPE_CHECKING:  # pragma: no cover
    from twisted.python.failure import Failure

    from .agi import AgiSession

log = Logger(namespace="ctid.pbxsim")

MAX_AGI_LINE = 8192


class FastAgiClientProtocol(LineOnlyReceiver):
    """Writes the agi_ block and the replies; hands command lines to the session."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_AGI_LINE
    transport: ITransport  # set by makeConnection, before connectionMade

    def __init__(self, session: AgiSession):
        self.session = session

    def connectionMade(self) -> None:
        self.session.write = self._write
        self.session.close = self.transport.loseConnection

    def _write(self, line: str) -> None:
        if self.transport is not None and self.connected:
            self.sendLine(line.encode("utf-8"))

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if text.lower().startswith("failure"):
            self.transport.loseConnection()
            return
        self.session.line_received(text)

    def lineLengthExceeded(self, line: bytes) -> None:
        log.warn("pbxsim: FastAGI server sent a line over {limit} bytes; closing", limit=self.MAX_LENGTH)
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = False
        self.session.connection_lost()


class _OneShotFactory(Factory):
    noisy = False

    def __init__(self, session: AgiSession):
        self.session = session

    def buildProtocol(self, addr: Any) -> FastAgiClientProtocol:
        proto = FastAgiClientProtocol(self.session)
        proto.factory = self
        return proto


class EndpointAgiRunner:
    """Connects each AGI session to ``endpoint`` (a client endpoint string)."""

    def __init__(self, reactor: Any, endpoint: str, timeout: float = 5.0):
        self.reactor = reactor
        self.endpoint = endpoint if "timeout=" in endpoint else f"{endpoint}:timeout={int(max(timeout, 1))}"

    def connect(self, session: AgiSession) -> Deferred[Any]:
        """Fires with the protocol once the TCP (or TLS) connection is up."""
        endpoint = clientFromString(self.reactor, self.endpoint)
        return endpoint.connect(_OneShotFactory(session))
