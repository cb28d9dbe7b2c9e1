"""The sandbox bank: :class:`~ctid.banking.ICoreBanking` on its own SQL database, for ``make run``, tests and demos.

:class:`SandboxBank` keeps the open sessions in memory (token → verified
account, expiring after ``session_minutes``) and runs every query, trade and
password hash on a :class:`~ctid.adapters.store.pool.DatabasePool`'s threads
(:mod:`.sandbox_ops`).  The tables (:mod:`.sandbox_schema`) are created by
:meth:`SandboxBank.create_tables`; ``scripts/ctid-seed-bank`` fills them.
Database failures become :class:`~ctid.banking.HostUnavailable`.

Beyond the interface, :meth:`SandboxBank.session` finds a session by token and
:meth:`SandboxBank.reverse` undoes a trade: the ISO 8583 host simulator uses both.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ctid.adapters.corebank import sandbox_ops as ops
from ctid.adapters.corebank import sandbox_schema as schema
from ctid.adapters.corebank.sandbox_data import number_hash
from ctid.adapters.directory import hash_password
from ctid.adapters.store.pool import DatabasePool, DatabasePoolStopped
from ctid.banking import (
    BILL_SERVICES,
    ID_TYPES,
    MAX_SPOKEN,
    MAX_STATEMENT,
    PREPAY_SERVICES,
    BadCredentials,
    ExchangeRate,
    HostUnavailable,
    ICoreBanking,
    InterestRate,
    InvalidRequest,
    LossReport,
    NotSigned,
    PasswordChangeNotAllowed,
    Policy,
    Product,
    Session,
    SessionExpired,
    Statement,
    TradeRejected,
    check_amount,
    check_limit,
    is_password,
)
from ctid.customers import account_digits

log = Logger()

_MAX_NUMBER_DIGITS = 32


def _digits(number: object) -> str | None:
    """The digits of a typed number, or None when it is not one (never raising with the number in it)."""
    try:
        digits = account_digits(str(number))
    except ValueError:
        return None
    return digits if len(digits) <= _MAX_NUMBER_DIGITS else None


def _unavailable(failure: Failure) -> Failure:
    """Database trouble becomes HostUnavailable (only the driver's message is logged, never the parameters)."""
    if failure.check(SQLAlchemyError, DatabasePoolStopped):
        error = failure.value
        detail = repr(error.orig) if isinstance(error, DBAPIError) else type(error).__name__
        log.warn("sandbox bank database error: {detail}", detail=detail)
        raise HostUnavailable("the sandbox bank's database is unavailable") from None
    return failure


def _failing(method):
    """Turn what a method raises into a failed Deferred."""

    def wrapper(self, *args, **kwargs) -> Deferred:
        return maybeDeferred(method, self, *args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper


@implementer(ICoreBanking)
class SandboxBank:
    """A bank in a SQL database (see the module docstring); ``clock`` is an ``IReactorTime``."""

    def __init__(self, pool: DatabasePool, account_key: str, clock, password_change_allowed: bool = False,
                 session_minutes: float = 30.0):
        self.pool = pool
        self.password_change_allowed = password_change_allowed
        self._key = account_key
        self._clock = clock
        self._session_seconds = session_minutes * 60
        self._sessions: OrderedDict[str, tuple[Session, float]] = OrderedDict()

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _run(self, fn, *args) -> Deferred:
        return self.pool.run(fn, *args).addErrback(_unavailable)

    def _now(self) -> datetime:
        """Bank-local naive time to the second, as the tables store it."""
        return datetime.fromtimestamp(int(self._clock.seconds()), schema.BANK_TZ).replace(tzinfo=None)

    def create_tables(self) -> Deferred[None]:
        """Create the sandbox tables that do not exist yet (``create_all``)."""
        return self._run(lambda connection: schema.metadata.create_all(connection))

    def session(self, token: str) -> Session | None:
        """The open session ``token``, or None when unknown, closed or expired."""
        now = self._clock.seconds()
        while self._sessions:  # sessions expire in the order they were opened
            oldest, (_, expires) = next(iter(self._sessions.items()))
            if expires > now:
                break
            del self._sessions[oldest]
        entry = self._sessions.get(token) if isinstance(token, str) else None
        return None if entry is None else entry[0]

    def _open(self, kind: str, verified: ops.Verified) -> Session:
        expires = self._clock.seconds() + self._session_seconds
        session = Session(token=secrets.token_hex(16), kind=kind, customer_id=verified.customer_id,
                          customer_name=verified.name, account=verified.account, accounts=verified.accounts,
                          expires_at=datetime.fromtimestamp(int(expires), schema.BANK_TZ))
        self._sessions[session.token] = (session, expires)
        return session

    def _ref(self, session: Session) -> str:
        """The verified account of a session still open."""
        if not isinstance(session, Session) or self.session(session.token) is None:
            raise SessionExpired("the session is closed or expired")
        return session.account.ref

    def _verify(self, kind: str, hash_column: str, number: object, password: object) -> Deferred[Session]:
        digits = _digits(number)
        secret = password if is_password(password) else ""
        if digits is None:  # still one scrypt, so malformed and wrong numbers look alike
            digits, secret = "0000", ""
        d = self._run(ops.verify, hash_column, number_hash(self._key, digits), secret, kind)
        return d.addCallback(lambda verified: self._open(kind, verified))

    # -- ICoreBanking -----------------------------------------------------------------------------------------

    def verify_public(self, number, password) -> Deferred[Session]:
        """See :meth:`ICoreBanking.verify_public`."""
        return self._verify("public", "number_hash", number, password)

    def verify_signed(self, number, password) -> Deferred[Session]:
        """See :meth:`ICoreBanking.verify_signed`."""
        return self._verify("signed", "number_hash", number, password)

    def verify_corporate(self, short_account, password) -> Deferred[Session]:
        """See :meth:`ICoreBanking.verify_corporate`."""
        return self._verify("corporate", "short_hash", short_account, password)

    def close(self, session) -> Deferred[None]:
        """See :meth:`ICoreBanking.close`."""
        if isinstance(session, Session):
            self._sessions.pop(session.token, None)
        return succeed(None)

    @_failing
    def balance(self, session):
        """See :meth:`ICoreBanking.balance`."""
        return self._run(ops.balance, self._ref(session))

    @_failing
    def recent_transactions(self, session, limit=MAX_SPOKEN):
        """See :meth:`ICoreBanking.recent_transactions`."""
        return self._run(ops.recent, self._ref(session), check_limit(limit, MAX_STATEMENT))

    @_failing
    def transactions_since(self, session, since, limit=MAX_SPOKEN):
        """See :meth:`ICoreBanking.transactions_since`."""
        return self._run(ops.since, self._ref(session), _date(since), check_limit(limit, MAX_STATEMENT))

    @_failing
    def transactions_by_amount(self, session, amount_fen, limit=MAX_SPOKEN):
        """See :meth:`ICoreBanking.transactions_by_amount`."""
        return self._run(ops.by_amount, self._ref(session), check_amount(amount_fen), check_limit(limit, MAX_STATEMENT))

    @_failing
    def statement(self, session, since, limit=MAX_STATEMENT):
        """See :meth:`ICoreBanking.statement`."""
        ref, day = self._ref(session), _date(since)

        def build(connection):
            return Statement(session.account_masked, ops.holder(connection, ref), day,
                             ops.since(connection, ref, day, check_limit(limit, MAX_STATEMENT)))

        return self._run(build)

    def _may_change_password(self, session: Session) -> bool:
        return session.kind != "public" or self.password_change_allowed

    @_failing
    def can_change_password(self, session):
        """See :meth:`ICoreBanking.can_change_password`: public customers only when the bank setting allows."""
        self._ref(session)
        return self._may_change_password(session)

    @_failing
    def change_password(self, session, old_password, new_password):
        """See :meth:`ICoreBanking.change_password`."""
        ref = self._ref(session)
        if not self._may_change_password(session):
            raise PasswordChangeNotAllowed("please change it at a counter or ATM")
        if not is_password(new_password) or new_password == old_password:
            raise InvalidRequest("a new password is 4..12 digits, not the old one")
        if not is_password(old_password):
            raise BadCredentials()

        def change(connection):
            ops.change_password(connection, ref, old_password, hash_password(new_password), self._now())

        return self._run(change)

    @_failing
    def report_loss(self, session, id_type=None, id_number=None):
        """See :meth:`ICoreBanking.report_loss`; corporate accounts are refused (``"not_permitted"``)."""
        ref = self._ref(session)
        if session.kind == "corporate":
            raise TradeRejected("not_permitted", "no loss reports on corporate accounts")
        if session.kind == "public":
            if id_type not in ID_TYPES.values() or not isinstance(id_number, str) or not 0 < len(id_number) <= 32:
                raise InvalidRequest("a public customer's loss report needs an ID type and number")
        else:
            id_type = id_number = None
        now = self._now()
        d = self._run(ops.report_loss, ref, id_type, id_number, now)
        return d.addCallback(lambda reference: LossReport(reference, session.account_masked, ops.aware(now)))

    @_failing
    def transfer(self, session, to_ref, amount_fen):
        """See :meth:`ICoreBanking.transfer`."""
        ref = self._ref(session)
        if not session.signed:
            raise NotSigned("transfers need a signed customer")
        if to_ref == ref or to_ref not in {account.ref for account in session.accounts}:
            raise InvalidRequest("transfers go to another of the customer's own accounts")
        return self._run(ops.transfer, ref, to_ref, check_amount(amount_fen), self._now())

    def _bill_request(self, session, service, number, services=BILL_SERVICES) -> str:
        ref = self._ref(session)
        if not session.signed:
            raise NotSigned("bill payments need a signed customer")
        if service not in services or _digits(number) != number or len(number) > 20:
            raise InvalidRequest("unknown bill service or malformed bill number")
        return ref

    @_failing
    def query_bill(self, session, service, number):
        """See :meth:`ICoreBanking.query_bill`."""
        self._bill_request(session, service, number)
        return self._run(ops.query_bill, service, number)

    @_failing
    def pay_bill(self, session, service, number, amount_fen):
        """See :meth:`ICoreBanking.pay_bill`."""
        ref = self._bill_request(session, service, number)
        return self._run(ops.pay, ref, service, number, check_amount(amount_fen), False, self._now())

    @_failing
    def prepay(self, session, service, number, amount_fen):
        """See :meth:`ICoreBanking.prepay`."""
        ref = self._bill_request(session, service, number, PREPAY_SERVICES)
        return self._run(ops.pay, ref, service, number, check_amount(amount_fen), True, self._now())

    def interest_rates(self) -> Deferred[tuple[InterestRate, ...]]:
        """See :meth:`ICoreBanking.interest_rates`."""
        t = schema.interest_rates
        return self._rows(t, t.c.position, lambda r: InterestRate(r.product, r.term, r.rate_percent))

    def exchange_rates(self) -> Deferred[tuple[ExchangeRate, ...]]:
        """See :meth:`ICoreBanking.exchange_rates`."""
        t = schema.exchange_rates
        return self._rows(t, t.c.position, lambda r: ExchangeRate(r.currency, r.buy, r.sell))

    def products(self) -> Deferred[tuple[Product, ...]]:
        """See :meth:`ICoreBanking.products`."""
        t = schema.products
        return self._rows(t, t.c.code, lambda r: Product(r.code, r.name, r.summary))

    def policies(self) -> Deferred[tuple[Policy, ...]]:
        """See :meth:`ICoreBanking.policies`."""
        t = schema.policies
        return self._rows(t, t.c.code, lambda r: Policy(r.code, r.title, r.text))

    def policy(self, code) -> Deferred[Policy]:
        """See :meth:`ICoreBanking.policy`."""

        def pick(found: tuple[Policy, ...]) -> Policy:
            for entry in found:
                if entry.code == code:
                    return entry
            raise TradeRejected("not_found", "no such policy")

        return self.policies().addCallback(pick)

    def _rows(self, table, order, make) -> Deferred[tuple]:
        return self._run(lambda connection: tuple(make(r) for r in connection.execute(select(table).order_by(order))))

    # -- for the host simulator -------------------------------------------------------------------------------

    def reverse(self, reference: str) -> Deferred[bool]:
        """Undo the trade ``reference`` (冲正).  Fires with False when unknown or already reversed."""
        return self._run(ops.reverse, str(reference), self._now())


def _date(value: object) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise InvalidRequest("a date is a datetime.date")
    return value

