"""ICoreBanking over ISO 8583 to the bank's host: timeouts, no blind retries, reversals, a breaker, live counters.

Every trade gets a fresh STAN and one deadline (``trade_timeout`` seconds,
from taking a link to the answer).  What happens when it passes:

- inquiries (balance, statements, bills, rates…) are idempotent: sent once
  more, then :class:`~ctid.banking.HostTimeout`;
- verifications are not sent again (a retry would count a second PIN try);
- financial trades (0200: transfers, payments, prepayments, password
  changes, loss reports) are never sent again: a reversal advice (0420,
  repeated as 0421 up to ``reversal_attempts`` times) undoes whatever the host
  may have done, in the background, and the caller gets HostTimeout at once.
  A link dropping with the trade out is treated the same way.

The :class:`~.breaker.CircuitBreaker` refuses trades while the host is down
(:class:`~ctid.banking.HostUnavailable`).  PINs travel only as encrypted
PIN blocks (:mod:`.pinblock`).  :meth:`HostClient.counters` feeds the
supervisor view.  The host link pool (:class:`~.hostlink.HostPool`) is a
service the owner starts and stops.
"""

from __future__ import annotations

import itertools
from collections import deque
from datetime import UTC, date, datetime

from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from ctid.adapters.corebank import pinblock, wire
from ctid.adapters.corebank.breaker import CircuitBreaker
from ctid.adapters.corebank.hostlink import HostLinkLost, HostPool
from ctid.adapters.corebank.iso8583 import (
    APPROVED,
    OPERATIONS,
    REVERSAL,
    REVERSAL_REPEAT,
    FrameError,
    Operation,
    error_for,
    payload,
    to_json,
)
from ctid.adapters.corebank.sandbox_schema import BANK_TZ
from ctid.banking import (
    MAX_SPOKEN,
    MAX_STATEMENT,
    BadCredentials,
    HostError,
    HostTimeout,
    HostUnavailable,
    ICoreBanking,
    ICoreBankingMonitor,
    InvalidRequest,
    Session,
    SessionExpired,
    check_amount,
    check_limit,
    is_password,
)
from ctid.customers import account_digits

log = Logger()

#: Answers whose latency the percentiles are taken over.
LATENCY_WINDOW = 1000
_MAX_PAN = 19


def _digits(number: object) -> str | None:
    try:
        return account_digits(str(number))
    except ValueError:
        return None


def _percentile(values, share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3)


class _Sent:
    """Whether a request left for the host (after a timeout: unknown outcome, versus never sent)."""

    sent = False


@implementer(ICoreBanking, ICoreBankingMonitor)
class HostClient:
    """The host's ICoreBanking (see the module docstring); ``pin_key`` from :func:`.pinblock.parse_key`."""

    def __init__(self, pool: HostPool, clock, pin_key: bytes, terminal_id: str = "CTID0001",
                 trade_timeout: float = 10.0, breaker: CircuitBreaker | None = None, reversal_attempts: int = 3):
        if len(terminal_id) != 8 or not terminal_id.isascii() or not terminal_id.isalnum():
            raise ValueError("a terminal id is 8 letters or digits")
        self.pool = pool
        self.terminal_id = terminal_id
        self.trade_timeout = trade_timeout
        self.reversal_attempts = reversal_attempts
        self.breaker = breaker or CircuitBreaker(clock)
        self._clock = clock
        self._key = pin_key
        self._stans = itertools.cycle(range(1, 1_000_000))
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.counts = dict(trades=0, errors=0, timeouts=0, refused=0, retries=0, reversals=0,
                           reversals_acknowledged=0, reversals_failed=0)

    # -- messages ---------------------------------------------------------------------------------------------

    def _stamp(self, fields: dict[str, str]) -> dict[str, str]:
        """Add the STAN, times and terminal to ``fields``."""
        now = self._clock.seconds()
        utc, local = datetime.fromtimestamp(now, UTC), datetime.fromtimestamp(now, BANK_TZ)
        fields.update({"11": f"{next(self._stans):06d}", "7": utc.strftime("%m%d%H%M%S"),
                       "12": local.strftime("%H%M%S"), "13": local.strftime("%m%d"), "41": self.terminal_id})
        return fields

    async def _roundtrip(self, fields: dict[str, str], sent: _Sent) -> dict[str, str]:
        link = await self.pool.acquire()
        sent.sent = True
        return await link.send(fields)

    async def _exchange_once(self, fields: dict[str, str]) -> dict[str, str]:
        """One request and its answer within the deadline; HostTimeout if sent and unanswered, else HostUnavailable."""
        sent = _Sent()
        started = self._clock.seconds()
        d = Deferred.fromCoroutine(self._roundtrip(self._stamp(fields), sent))
        d.addTimeout(self.trade_timeout, self._clock)
        try:
            answer = await d
        except TimeoutError:
            if sent.sent:
                raise HostTimeout("the host did not answer in time") from None
            raise HostUnavailable("no link to the host in time") from None
        self._latencies.append((self._clock.seconds() - started) * 1000)
        return answer

    async def _exchange(self, op: Operation, fields: dict[str, str]) -> dict[str, str]:
        """Send ``op`` through the breaker; retry idempotent inquiries once; reverse financial trades on doubt."""
        retried = False
        while True:
            if not self.breaker.allow():
                self.counts["refused"] += 1
                raise HostUnavailable("the core-banking host is unavailable (circuit open)")
            request = dict(fields, t=op.mti, **{"3": op.code})
            self.counts["trades"] += 1
            try:
                answer = await self._exchange_once(request)
            except (HostTimeout, HostLinkLost) as e:
                self._host_failed(isinstance(e, HostTimeout))
                if op.reversible:
                    self._reverse(request)
                elif op.idempotent and not retried:
                    retried = True
                    self.counts["retries"] += 1
                    continue
                raise HostTimeout("the host did not answer in time") from None
            except HostUnavailable:
                self._host_failed(False)
                raise
            code = answer.get("39", "")
            if code in ("91", "96"):
                self._host_failed(False)
            else:
                self.breaker.succeeded()
            if code != APPROVED:
                raise error_for(code)
            return answer

    def _host_failed(self, timeout: bool) -> None:
        self.counts["errors"] += 1
        if timeout:
            self.counts["timeouts"] += 1
        self.breaker.failed()

    # -- reversals --------------------------------------------------------------------------------------------

    def _reverse(self, original: dict[str, str]) -> None:
        """Start reversing ``original`` in the background (never raises)."""
        self.counts["reversals"] += 1
        d = Deferred.fromCoroutine(self._send_reversal(original))
        d.addErrback(lambda failure: log.failure("core banking: reversal machinery failed", failure))

    async def _send_reversal(self, original: dict[str, str]) -> None:
        key = f"{original['t']}{original['11']}{original['7']}"
        base = {"90": key.ljust(42, "0"), "3": original["3"], "49": "156"}
        if "4" in original:
            base["4"] = original["4"]
        for attempt in range(self.reversal_attempts):
            try:
                answer = await self._exchange_once(dict(base, t=REVERSAL if attempt == 0 else REVERSAL_REPEAT))
            except HostError:
                await deferLater(self._clock, self.trade_timeout, lambda: None)
                continue
            if answer.get("39") == APPROVED:
                self.counts["reversals_acknowledged"] += 1
                log.info("core banking: trade STAN {stan} reversed", stan=original["11"])
                return
            break
        self.counts["reversals_failed"] += 1
        log.error("core banking: reversal of trade STAN {stan} ({code}) not acknowledged: reconcile it by hand",
                  stan=original["11"], code=original["3"])

    # -- helpers ----------------------------------------------------------------------------------------------

    def _call(self, name: str, fields: dict[str, str], decode) -> Deferred:
        """Run operation ``name`` and decode its answer with ``decode(answer)``; malformed data is HostUnavailable."""

        async def run():
            answer = await self._exchange(OPERATIONS[name], fields)
            try:
                return decode(answer)
            except FrameError as e:
                log.warn("core banking: the host's answer to {op} is malformed: {error}", op=name, error=str(e))
                raise HostUnavailable("the host's answer was malformed") from None

        return Deferred.fromCoroutine(run())

    def _session_call(self, name: str, session, fields: dict[str, str], decode) -> Deferred:
        if not isinstance(session, Session):
            return Deferred.fromCoroutine(_raise(SessionExpired("not a session")))
        return self._call(name, dict(fields, **{"62": session.token}), decode)

    def _verify(self, name: str, number_field: str, number, password) -> Deferred[Session]:
        digits = _digits(number)
        if digits is None or len(digits) > _MAX_PAN or not is_password(password):
            return Deferred.fromCoroutine(_raise(BadCredentials()))
        fields = {number_field: digits, "52": pinblock.encrypt(password, digits, self._key)}
        return self._call(name, fields, lambda answer: wire.session_from(payload(answer), answer.get("62", "")))

    # -- ICoreBanking -----------------------------------------------------------------------------------------

    def verify_public(self, number, password):
        """See :meth:`ICoreBanking.verify_public`."""
        return self._verify("verify_public", "2", number, password)

    def verify_signed(self, number, password):
        """See :meth:`ICoreBanking.verify_signed`."""
        return self._verify("verify_signed", "2", number, password)

    def verify_corporate(self, short_account, password):
        """See :meth:`ICoreBanking.verify_corporate`."""
        return self._verify("verify_corporate", "102", short_account, password)

    def close(self, session):
        """See :meth:`ICoreBanking.close`; a host that cannot be told lets the session expire by itself."""
        if not isinstance(session, Session):
            return succeed(None)
        def ignore(failure):
            failure.trap(HostError, SessionExpired)

        return self._session_call("close", session, {}, lambda answer: None).addErrback(ignore)

    def balance(self, session):
        """See :meth:`ICoreBanking.balance`."""
        return self._session_call("balance", session, {},
                                  lambda a: wire.balance_from(payload(a), session.account_masked))

    def recent_transactions(self, session, limit=MAX_SPOKEN):
        """See :meth:`ICoreBanking.recent_transactions`."""
        return self._lines("recent_transactions", session, {"limit": limit})

    def transactions_since(self, session, since, limit=MAX_SPOKEN):
        """See :meth:`ICoreBanking.transactions_since`."""
        return self._lines("transactions_since", session, {"limit": limit, "since": since})

    def transactions_by_amount(self, session, amount_fen, limit=MAX_SPOKEN):
        """See :meth:`ICoreBanking.transactions_by_amount`."""
        return self._lines("transactions_by_amount", session, {"limit": limit}, amount_fen)

    def _lines(self, name, session, query, amount_fen=None):
        try:
            fields = self._query_fields(query, MAX_STATEMENT, amount_fen)
        except InvalidRequest as e:
            return Deferred.fromCoroutine(_raise(e))
        return self._session_call(name, session, fields, lambda a: wire.lines_from(payload(a, list)))

    @staticmethod
    def _query_fields(query: dict, most: int, amount_fen=None) -> dict[str, str]:
        query = dict(query, limit=check_limit(query["limit"], most))
        if "since" in query:
            since = query["since"]
            if isinstance(since, datetime) or not isinstance(since, date):
                raise InvalidRequest("a date is a datetime.date")
            query["since"] = since.isoformat()
        fields = {"48": to_json(query)}
        if amount_fen is not None:
            fields["4"] = f"{check_amount(amount_fen):012d}"
        return fields

    def statement(self, session, since, limit=MAX_STATEMENT):
        """See :meth:`ICoreBanking.statement`."""
        try:
            fields = self._query_fields({"limit": limit, "since": since}, MAX_STATEMENT)
        except InvalidRequest as e:
            return Deferred.fromCoroutine(_raise(e))
        return self._session_call("statement", session, fields,
                                  lambda a: wire.statement_from(payload(a), session.account_masked))

    def can_change_password(self, session):
        """See :meth:`ICoreBanking.can_change_password`."""
        return self._session_call("can_change_password", session, {}, lambda a: payload(a).get("allowed") is True)

    def change_password(self, session, old_password, new_password):
        """See :meth:`ICoreBanking.change_password`; both passwords travel as format-1 PIN blocks."""
        if not is_password(new_password) or new_password == old_password:
            return Deferred.fromCoroutine(_raise(InvalidRequest("a new password is 4..12 digits, not the old one")))
        if not is_password(old_password):
            return Deferred.fromCoroutine(_raise(BadCredentials()))
        fields = {"52": pinblock.encrypt(old_password, None, self._key),
                  "120": pinblock.encrypt(new_password, None, self._key)}
        return self._session_call("change_password", session, fields, lambda a: None)

    def report_loss(self, session, id_type=None, id_number=None):
        """See :meth:`ICoreBanking.report_loss`."""
        query = {} if id_type is None else {"id_type": str(id_type), "id_number": str(id_number or "")}
        return self._session_call("report_loss", session, {"48": to_json(query)},
                                  lambda a: wire.loss_from(payload(a), a.get("37", ""), session.account_masked))

    def transfer(self, session, to_ref, amount_fen):
        """See :meth:`ICoreBanking.transfer`."""
        return self._money("transfer", session, amount_fen, {"103": str(to_ref)})

    def _money(self, name, session, amount_fen, fields):
        try:
            amount = check_amount(amount_fen)
        except InvalidRequest as e:
            return Deferred.fromCoroutine(_raise(e))
        fields = dict(fields, **{"4": f"{amount:012d}", "49": "156"})
        return self._session_call(name, session, fields,
                                  lambda a: wire.receipt_from(payload(a), a.get("37", ""), amount))

    def query_bill(self, session, service, number):
        """See :meth:`ICoreBanking.query_bill`."""
        fields = {"48": to_json({"service": str(service), "number": str(number)})}
        return self._session_call("query_bill", session, fields,
                                  lambda a: wire.bill_from(payload(a), str(service), str(number)))

    def pay_bill(self, session, service, number, amount_fen):
        """See :meth:`ICoreBanking.pay_bill`."""
        return self._money("pay_bill", session, amount_fen,
                           {"48": to_json({"service": str(service), "number": str(number)})})

    def prepay(self, session, service, number, amount_fen):
        """See :meth:`ICoreBanking.prepay`."""
        return self._money("prepay", session, amount_fen,
                           {"48": to_json({"service": str(service), "number": str(number)})})

    def _info(self, name: str, fields: dict | None = None) -> Deferred:
        return self._call(name, fields or {}, lambda a: wire.info_from(name, payload(a, list)))

    def interest_rates(self):
        """See :meth:`ICoreBanking.interest_rates`."""
        return self._info("interest_rates")

    def exchange_rates(self):
        """See :meth:`ICoreBanking.exchange_rates`."""
        return self._info("exchange_rates")

    def products(self):
        """See :meth:`ICoreBanking.products`."""
        return self._info("products")

    def policies(self):
        """See :meth:`ICoreBanking.policies`."""
        return self._info("policies")

    def policy(self, code):
        """See :meth:`ICoreBanking.policy`."""
        def first(answer):
            found = wire.info_from("policy", payload(answer, list))
            if len(found) != 1:
                raise FrameError("a policy answer holds one policy")
            return found[0]

        return self._call("policy", {"48": to_json({"code": str(code)})}, first)

    # -- monitoring -------------------------------------------------------------------------------------------

    def counters(self) -> dict:
        """Trades, errors, timeouts, retries, reversals, latency p50/p99 (ms), breaker state, links up."""
        latencies = list(self._latencies)
        return dict(self.counts, **self.pool.counts, latency_p50_ms=_percentile(latencies, 0.50),
                    latency_p99_ms=_percentile(latencies, 0.99), breaker=self.breaker.state,
                    breaker_opened=self.breaker.opened, links_up=len(self.pool.links), links=self.pool.size)


async def _raise(error: Exception):
    raise error
