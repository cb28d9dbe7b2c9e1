"""The guard in front of any core bank: wrong-password lockout and an audit record of every attempt and trade.

:class:`GuardedBank` wraps an :class:`~ctid.banking.ICoreBanking` and is one
itself.  It counts wrong passwords per account — keyed by an HMAC of the
account number under a key drawn at start-up, never the number — and after
``max_attempts`` in a row refuses that account with
:class:`~ctid.banking.AccountLocked` for ``lockout_minutes`` without asking
the bank.  A wrong *old* password in a password change counts too.  The
counts live in memory (bounded, least recently used dropped first) and reset
on restart; the bank's own lockout still applies behind it.

Every verification attempt and every operation calls ``trade_log`` with plain
keyword values: ``kind``, ``account_masked``, ``amount_fen``, ``result`` (``ok``
or the error's code), ``latency_ms``, ``channel``, ``at`` (when it was asked,
an aware UTC datetime), ``trade_id`` (the bank's reference when the result has
one, else a serial) and ``customer_id`` (once known) — never a number, a
password or an ID.
A failing ``trade_log`` is logged and never fails the caller's trade.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ctid.banking import (
    MAX_SPOKEN,
    MAX_STATEMENT,
    AccountLocked,
    BadCredentials,
    CoreBankingError,
    ICoreBanking,
    ICoreBankingMonitor,
    Session,
    mask_account,
)
from ctid.customers import account_digits

log = Logger()

#: Accounts whose wrong-password counts are remembered at once; the least recently seen are dropped beyond it.
MAX_TRACKED = 100_000


def _masked(number: object) -> str:
    try:
        return mask_account(str(number))
    except ValueError:
        return ""


@implementer(ICoreBanking, ICoreBankingMonitor)
class GuardedBank:
    """``bank`` behind a wrong-password lockout and a trade log (see the module docstring)."""

    def __init__(self, bank, clock, trade_log: Callable[..., object] | None = None, channel: str = "ivr",
                 max_attempts: int = 3, lockout_minutes: float = 30.0):
        if max_attempts < 1 or lockout_minutes <= 0:
            raise ValueError("max_attempts must be at least 1 and lockout_minutes positive")
        self.bank = bank
        self.channel = channel
        self.max_attempts = max_attempts
        self.lockout_seconds = lockout_minutes * 60
        self._clock = clock
        self.trade_log = trade_log
        self._key = os.urandom(32)
        self._failures: OrderedDict[str, int] = OrderedDict()
        self._locked: OrderedDict[str, float] = OrderedDict()
        self._session_keys: OrderedDict[str, str] = OrderedDict()
        self._counts = dict(verify_attempts=0, verify_failures=0, lockouts=0, calls=0, call_errors=0)
        self._serial = 0

    # -- lockout ----------------------------------------------------------------------------------------------

    def _account_key(self, kind: str, number: object) -> str:
        try:
            digits = account_digits(str(number))
        except ValueError:
            digits = ""
        return hmac.new(self._key, f"{kind}:{digits}".encode(), hashlib.sha256).hexdigest()

    def _locked_until(self, key: str) -> float | None:
        until = self._locked.get(key)
        if until is not None and until <= self._clock.seconds():
            del self._locked[key]
            return None
        return until

    @staticmethod
    def _remember(table: OrderedDict, key: str, value) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > MAX_TRACKED:
            table.popitem(last=False)

    def _wrong_password(self, key: str, masked: str) -> CoreBankingError:
        """Count a wrong password; the error to give the caller (BadCredentials with attempts left, or locked)."""
        count = self._failures.get(key, 0) + 1
        if count < self.max_attempts:
            self._remember(self._failures, key, count)
            return BadCredentials(self.max_attempts - count)
        self._failures.pop(key, None)
        until = self._clock.seconds() + self.lockout_seconds
        self._remember(self._locked, key, until)
        self._counts["lockouts"] += 1
        log.info("core banking: account {account} locked for {minutes:g} min after {attempts} wrong passwords",
                 account=masked, minutes=self.lockout_seconds / 60, attempts=self.max_attempts)
        return AccountLocked(datetime.fromtimestamp(until, UTC))

    # -- audit ------------------------------------------------------------------------------------------------

    def _audit(self, kind: str, masked: str, amount_fen: int | None, outcome, started: float,
               customer_id: str | None) -> None:
        if self.trade_log is None:
            return
        code = outcome.value.code if isinstance(outcome, Failure) and isinstance(outcome.value, CoreBankingError) \
            else "error" if isinstance(outcome, Failure) else "ok"
        self._serial += 1
        trade_id = getattr(outcome, "reference", None) or f"{self.channel}-{self._serial:08d}"
        now = self._clock.seconds()
        d = maybeDeferred(self.trade_log, kind=kind, account_masked=masked, amount_fen=amount_fen, result=code,
                          latency_ms=round((now - started) * 1000, 3), channel=self.channel,
                          at=datetime.fromtimestamp(started, UTC), trade_id=trade_id, customer_id=customer_id)
        d.addErrback(lambda failure: log.failure("core banking: the trade log failed", failure))

    def _call(self, kind: str, session, amount_fen: int | None, fn, *args) -> Deferred:
        started = self._clock.seconds()
        verified = session if isinstance(session, Session) else None
        masked, customer_id = (verified.account_masked, verified.customer_id) if verified else ("", None)
        d = maybeDeferred(fn, *args)

        def done(outcome):
            self._counts["calls"] += 1
            if isinstance(outcome, Failure):
                self._counts["call_errors"] += 1
            self._audit(kind, masked, amount_fen, outcome, started, customer_id)
            return outcome

        return d.addBoth(done)

    # -- verification -----------------------------------------------------------------------------------------

    def _verify(self, kind: str, fn, number, password) -> Deferred[Session]:
        key, masked, started = self._account_key(kind, number), _masked(number), self._clock.seconds()
        self._counts["verify_attempts"] += 1
        until = self._locked_until(key)
        if until is None:
            d = maybeDeferred(fn, number, password)
        else:
            d = fail(AccountLocked(datetime.fromtimestamp(until, UTC)))

        def done(outcome):
            if isinstance(outcome, Failure):
                self._counts["verify_failures"] += 1
                if outcome.check(BadCredentials) and until is None:
                    outcome = Failure(self._wrong_password(key, masked))
            else:
                self._failures.pop(key, None)
                self._remember(self._session_keys, outcome.token, key)
            self._audit(f"verify_{kind}", masked, None, outcome, started,
                        None if isinstance(outcome, Failure) else outcome.customer_id)
            return outcome

        return d.addBoth(done)

    def verify_public(self, number, password):
        """See :meth:`ICoreBanking.verify_public`; locked accounts are refused without asking the bank."""
        return self._verify("public", self.bank.verify_public, number, password)

    def verify_signed(self, number, password):
        """See :meth:`ICoreBanking.verify_signed`."""
        return self._verify("signed", self.bank.verify_signed, number, password)

    def verify_corporate(self, short_account, password):
        """See :meth:`ICoreBanking.verify_corporate`."""
        return self._verify("corporate", self.bank.verify_corporate, short_account, password)

    def close(self, session):
        """See :meth:`ICoreBanking.close`."""
        if isinstance(session, Session):
            self._session_keys.pop(session.token, None)
        return self.bank.close(session)

    # -- operations -------------------------------------------------------------------------------------------

    def balance(self, session):
        """See :meth:`ICoreBanking.balance`."""
        return self._call("balance", session, None, self.bank.balance, session)

    def recent_transactions(self, session, limit=MAX_SPOKEN):
        """See :meth:`ICoreBanking.recent_transactions`."""
        return self._call("recent_transactions", session, None, self.bank.recent_transactions,
                          session, limit)

    def transactions_since(self, session, since, limit=MAX_SPOKEN):
        """See :meth:`ICoreBanking.transactions_since`."""
        return self._call("transactions_since", session, None, self.bank.transactions_since,
                          session, since, limit)

    def transactions_by_amount(self, session, amount_fen, limit=MAX_SPOKEN):
        """See :meth:`ICoreBanking.transactions_by_amount`."""
        return self._call("transactions_by_amount", session, amount_fen,
                          self.bank.transactions_by_amount, session, amount_fen, limit)

    def statement(self, session, since, limit=MAX_STATEMENT):
        """See :meth:`ICoreBanking.statement`."""
        return self._call("statement", session, None, self.bank.statement, session, since, limit)

    def can_change_password(self, session):
        """See :meth:`ICoreBanking.can_change_password` (not audited: it changes nothing and asks nothing secret)."""
        return self.bank.can_change_password(session)

    def change_password(self, session, old_password, new_password):
        """See :meth:`ICoreBanking.change_password`; a wrong old password counts towards the lockout."""
        key = self._session_keys.get(session.token) if isinstance(session, Session) else None
        d = self._call("change_password", session, None, self.bank.change_password, session, old_password,
                       new_password)
        if key is None:
            return d

        def count(failure: Failure):
            if failure.check(BadCredentials):
                return Failure(self._wrong_password(key, session.account_masked))
            return failure

        return d.addErrback(count)

    def report_loss(self, session, id_type=None, id_number=None):
        """See :meth:`ICoreBanking.report_loss`."""
        return self._call("report_loss", session, None, self.bank.report_loss, session, id_type,
                          id_number)

    def transfer(self, session, to_ref, amount_fen):
        """See :meth:`ICoreBanking.transfer`."""
        return self._call("transfer", session, amount_fen, self.bank.transfer, session, to_ref,
                          amount_fen)

    def query_bill(self, session, service, number):
        """See :meth:`ICoreBanking.query_bill`."""
        return self._call(f"query_bill_{service}", session, None, self.bank.query_bill, session,
                          service, number)

    def pay_bill(self, session, service, number, amount_fen):
        """See :meth:`ICoreBanking.pay_bill`."""
        return self._call(f"pay_bill_{service}", session, amount_fen, self.bank.pay_bill, session,
                          service, number, amount_fen)

    def prepay(self, session, service, number, amount_fen):
        """See :meth:`ICoreBanking.prepay`."""
        return self._call(f"prepay_{service}", session, amount_fen, self.bank.prepay, session,
                          service, number, amount_fen)

    def interest_rates(self):
        """See :meth:`ICoreBanking.interest_rates`."""
        return self._call("interest_rates", None, None, self.bank.interest_rates)

    def exchange_rates(self):
        """See :meth:`ICoreBanking.exchange_rates`."""
        return self._call("exchange_rates", None, None, self.bank.exchange_rates)

    def products(self):
        """See :meth:`ICoreBanking.products`."""
        return self._call("products", None, None, self.bank.products)

    def policies(self):
        """See :meth:`ICoreBanking.policies`."""
        return self._call("policies", None, None, self.bank.policies)

    def policy(self, code):
        """See :meth:`ICoreBanking.policy`."""
        return self._call("policy", None, None, self.bank.policy, code)

    # -- monitoring -------------------------------------------------------------------------------------------

    def counters(self) -> dict:
        """The wrapped bank's counters (if any) plus attempts, failures, lockouts, calls and accounts locked now."""
        base = dict(self.bank.counters()) if ICoreBankingMonitor.providedBy(self.bank) else {}
        now = self._clock.seconds()
        base.update(self._counts, locked_accounts=sum(1 for until in self._locked.values() if until > now))
        return base
