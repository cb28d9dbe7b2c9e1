"""Build the configured core bank: :func:`make_corebank` returns the ``corebank`` service and its ICoreBanking.

``[corebank] backend = sandbox`` runs the sandbox bank on its own database
(tables created at start-up, filled by ``scripts/ctid-seed-bank``);
``backend = iso8583`` talks to a host (or ``twistd ctid-hostsim``) through a
pool of links.  Either way the bank is wrapped in the
:class:`~.guard.GuardedBank` (lockout and trade log), exposed as
:attr:`CoreBankService.bank`; the service owns the database pool or the links
and starts and stops them.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger

from ctid.adapters.corebank.breaker import CircuitBreaker
from ctid.adapters.corebank.guard import GuardedBank
from ctid.adapters.corebank.hostclient import HostClient
from ctid.adapters.corebank.hostlink import HostPool
from ctid.adapters.corebank.pinblock import parse_key
from ctid.adapters.corebank.sandbox import SandboxBank
from ctid.adapters.corebank.sandbox_data import SANDBOX_ACCOUNT_KEY
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import DatabasePool
from ctid.banking import ICoreBanking

log = Logger()


class SandboxTables(Service):
    """Creates the sandbox bank's missing tables once its pool runs; ``done`` fires when that is over."""

    def __init__(self, bank: SandboxBank):
        self.bank = bank
        self.done: Deferred[None] = Deferred()
        self.setName("bank-tables")

    def startService(self) -> None:
        """Create the tables (on the pool's threads); a failure is logged, and trades then fail cleanly."""
        super().startService()
        d = self.bank.create_tables()
        d.addErrback(lambda failure: log.failure("sandbox bank: cannot create its tables", failure))
        d.chainDeferred(self.done)


class CoreBankService(MultiService):
    """The ``corebank`` service: ``bank`` is the guarded ICoreBanking, ``backend`` the bank behind the guard."""

    def __init__(self, backend, bank: GuardedBank):
        super().__init__()
        self.setName("corebank")
        self.backend = backend
        self.bank = bank


def trade_recorder(records) -> Callable[..., object]:
    """A ``trade_log`` writing each guard record to the trade log (交易流水) through ``records.trade``.

    ``records`` is a :class:`ctid.records.Records`; a result that is a host
    failure (timeout, host down) is stored without a latency (no answer came).
    """

    def record(kind, account_masked, amount_fen, result, latency_ms, channel, at, trade_id, customer_id):
        answered = result not in ("host_timeout", "host_unavailable")
        return records.trade(trade_id, kind, result, account=account_masked[-4:] or None,
                             amount=None if amount_fen is None else Decimal(amount_fen) / 100,
                             currency=None if amount_fen is None else "CNY",
                             latency_ms=round(latency_ms) if answered else None, customer_id=customer_id,
                             channel=channel, at=at.timestamp())

    return record


def make_corebank(settings, reactor, trade_log: Callable[..., object] | None = None,
                  channel: str = "ivr") -> CoreBankService:
    """The ``corebank`` service for ``settings`` (a :class:`ctid.config.CoreBankSettings`); nothing starts here.

    ``trade_log`` receives one record per verification and trade (see
    :mod:`.guard`); it can also be set later as ``service.bank.trade_log``.
    """
    children: list[Service] = []
    backend: ICoreBanking
    if settings.backend == "sandbox":
        pool = DatabasePool(make_engine(settings.database, pool_size=settings.database_threads), reactor,
                            name="bank-db", max_threads=settings.database_threads)
        backend = SandboxBank(pool, settings.sandbox_account_key or SANDBOX_ACCOUNT_KEY, reactor,
                              password_change_allowed=settings.password_change_allowed,
                              session_minutes=settings.session_minutes)
        children += [pool, SandboxTables(backend)]
    else:
        links = HostPool(clientFromString(reactor, settings.host_endpoint), reactor, size=settings.pool_size)
        breaker = CircuitBreaker(reactor, settings.breaker_failures, settings.breaker_reset)
        backend = HostClient(links, reactor, parse_key(settings.pin_key), terminal_id=settings.terminal_id,
                             trade_timeout=settings.trade_timeout, breaker=breaker,
                             reversal_attempts=settings.reversal_attempts)
        children.append(links)
    guard = GuardedBank(backend, reactor, trade_log=trade_log, channel=channel,
                        max_attempts=settings.lockout_attempts, lockout_minutes=settings.lockout_minutes)
    service = CoreBankService(backend, guard)
    for child in children:
        child.setServiceParent(service)
    return service
