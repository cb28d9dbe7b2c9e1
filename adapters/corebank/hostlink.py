"""The links to the host: length-prefixed ISO 8583 frames, requests matched to answers by STAN, and a pool.

:class:`HostProtocol` frames messages (2-byte big-endian length, then the
message) and keeps the requests waiting for an answer by STAN (field 11);
an answer must carry the STAN and the matching response MTI.  Malformed
frames are counted and dropped; after :data:`MAX_MALFORMED` in a row the
link is closed.  When the link drops, every waiting request fails with
:class:`HostLinkLost` (its outcome unknown).  Requests are cancellable: the
caller's timeout forgets them, and a late answer is counted, not delivered.

:class:`HostPool` is a service holding ``size`` persistent connections, each
a :class:`~twisted.application.internet.ClientService` reconnecting with
backoff; :meth:`HostPool.acquire` hands out the connected link with the
fewest requests waiting.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import Int16StringReceiver
from twisted.python.failure import Failure

from ctid.adapters.corebank.iso8583 import MAX_FRAME, FrameError, decode, encode, response_mti
from ctid.banking import HostUnavailable

log = Logger()

#: Malformed frames in a row after which a link is closed (and reopened by its ClientService).
MAX_MALFORMED = 5


class HostLinkLost(HostUnavailable):
    """The link dropped while the request was out: the host may or may not have done it."""


class HostProtocol(Int16StringReceiver):
    """One connection to the host (see the module docstring)."""

    MAX_LENGTH = MAX_FRAME

    def __init__(self, pool: HostPool):
        self.pool = pool
        self.pending: dict[str, tuple[str, Deferred]] = {}
        self._malformed = 0

    def connectionMade(self) -> None:
        """Offer this link to the pool."""
        self.pool.link_up(self)

    def send(self, fields: dict[str, str]) -> Deferred[dict[str, str]]:
        """Send a request (``fields["11"]`` its STAN); fires with the answer's fields.  Cancelling forgets it."""
        stan = fields["11"]
        try:
            data = encode(fields)
        except FrameError as e:
            return fail(e)
        if stan in self.pending:
            return fail(HostUnavailable("a request with this STAN is already waiting"))
        d: Deferred[dict[str, str]] = Deferred(lambda _: self._forget(stan))
        self.pending[stan] = (response_mti(fields["t"]), d)
        self.sendString(data)
        return d

    def stringReceived(self, data: bytes) -> None:
        """Decode an answer and fire the request waiting for it."""
        try:
            fields = decode(data)
        except FrameError as e:
            self._bad_frame(str(e))
            return
        self._malformed = 0
        stan = fields.get("11", "")
        entry = self.pending.get(stan)
        if entry is None or entry[0] != fields["t"]:
            self.pool.counts["late"] += 1
            log.info("host answer {mti} with STAN {stan} matches no waiting request (late?)", mti=fields["t"],
                     stan=stan)
            return
        del self.pending[stan]
        entry[1].callback(fields)

    def _bad_frame(self, error: str) -> None:
        self._malformed += 1
        self.pool.counts["malformed"] += 1
        log.warn("host sent a malformed frame: {error} ({count} in a row)", error=error, count=self._malformed)
        if self._malformed >= MAX_MALFORMED:
            log.warn("closing the host link after {count} malformed frames", count=self._malformed)
            if self.transport is not None:
                self.transport.loseConnection()

    def _forget(self, stan: str) -> None:
        """A request was cancelled: its answer, if it comes, is not awaited any more."""
        self.pending.pop(stan, None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Leave the pool; fail the waiting requests with HostLinkLost."""
        self.pool.link_down(self)
        pending, self.pending = self.pending, {}
        for _, d in pending.values():
            d.errback(HostLinkLost("the host link dropped"))


class _LinkFactory(Factory):
    def __init__(self, pool: HostPool):
        self.pool = pool

    def buildProtocol(self, addr) -> HostProtocol:
        protocol = HostProtocol(self.pool)
        protocol.factory = self
        return protocol


class HostPool(MultiService):
    """``size`` persistent, reconnecting links to the host at ``endpoint`` (a client endpoint)."""

    def __init__(self, endpoint, clock, size: int = 2, name: str = "host-links", max_delay: float = 10.0):
        super().__init__()
        if size < 1:
            raise ValueError("a host pool has at least one connection")
        self.setName(name)
        self.size = size
        self._clock = clock
        self.links: list[HostProtocol] = []
        self.counts = dict(malformed=0, late=0, connects=0, disconnects=0)
        factory = _LinkFactory(self)
        for i in range(size):
            service = ClientService(endpoint, factory, retryPolicy=backoffPolicy(initialDelay=0.2, maxDelay=max_delay),
                                    clock=clock)
            service.setName(f"link-{i}")
            service.setServiceParent(self)

    def link_up(self, link: HostProtocol) -> None:
        """A link connected."""
        self.links.append(link)
        self.counts["connects"] += 1
        log.info("host link up ({count}/{size})", count=len(self.links), size=self.size)

    def link_down(self, link: HostProtocol) -> None:
        """A link dropped."""
        if link in self.links:
            self.links.remove(link)
            self.counts["disconnects"] += 1
            log.warn("host link down ({count}/{size})", count=len(self.links), size=self.size)

    def acquire(self) -> Deferred[HostProtocol]:
        """Fire with a connected link (the least busy), waiting for one to connect if none is; cancellable.

        Fails with HostUnavailable when the pool is stopped or every
        connection's next attempt fails.
        """
        if not self.running:
            return fail(HostUnavailable("the host link pool is not running"))
        if self.links:
            return succeed(min(self.links, key=lambda link: len(link.pending)))
        waits = [service.whenConnected(failAfterFailures=1) for service in self]
        first: Deferred[HostProtocol] = Deferred(lambda _: _cancel_all(waits))
        failures = []

        # ClientService fires these from inside its state machine, which must not be re-entered (another
        # whenConnected, stopService) by whatever the caller does next: settle ``first`` from the reactor instead.
        def settle(fire, value):
            if not first.called:
                fire(value)
                for wait in waits:
                    wait.cancel()

        def connected(link):
            self._clock.callLater(0, settle, first.callback, link)

        def failed(failure):
            failures.append(failure)
            if len(failures) == len(waits):
                self._clock.callLater(0, settle, first.errback, HostUnavailable("cannot connect to the host"))

        for wait in waits:
            wait.addCallbacks(connected, failed)
        return first


def _cancel_all(waits: list[Deferred[Any]]) -> None:
    for wait in waits:
        wait.cancel()
