"""The core-banking seam (GW-1): what the IVR and the agents may ask the bank's host, as plain data.

:class:`ICoreBanking` is implemented by the sandbox bank
(``ctid.adapters.corebank.sandbox``), by the ISO 8583 host client
(``ctid.adapters.corebank.hostclient``) and wrapped by the lockout/audit guard
(``ctid.adapters.corebank.guard``).  Pure: no I/O here.

Conventions every implementation keeps:

- **Every method returns a Deferred** (``await`` it from ``async def`` code).
  It fails with a :class:`CoreBankingError` subclass, never anything else the
  caller has to know about.
- **Money is integer fen** (1 yuan = 100 fen), never float; rates are
  :class:`~decimal.Decimal`.
- **A verification opens a :class:`Session`**; every account operation takes
  that session, so the full card number and the password are needed once,
  at the verification, and are kept by nobody afterwards.  A session expires
  (:class:`SessionExpired`); :meth:`ICoreBanking.close` ends it early.
- **Secrets stay secret**: results hold masked numbers only
  (:func:`mask_account`), and no error's message quotes a number or a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from zope.interface import Interface

from ctid.customers import account_digits, is_masked, mask_number

#: Customer kinds: public (普通) personal customers, signed (签约) personal customers, corporate (单位) customers.
KINDS = ("public", "signed", "corporate")

#: Kinds of account: bank card, savings passbook (存折), corporate account.
ACCOUNT_KINDS = ("card", "passbook", "corporate")

#: Bills the intermediary business (中间业务) pays: fixed-line phone, mobile, electricity, water.
BILL_SERVICES = ("phone", "mobile", "electricity", "water")

#: Bills that also take a prepayment (预存).
PREPAY_SERVICES = ("mobile", "electricity", "water")

#: ID document types a public customer's verbal loss report names, by the digit the caller presses.
ID_TYPES = {"1": "id_card", "2": "passport", "3": "officer_card", "4": "hk_macao_pass", "5": "taiwan_pass"}

#: Most lines of one query: 10 spoken transactions, 100 lines of a faxed statement.
MAX_SPOKEN, MAX_STATEMENT = 10, 100

#: The amount search's tolerance: ±5 % of the amount asked for.
AMOUNT_TOLERANCE = Decimal("0.05")


def mask_account(number: str) -> str:
    """``"6222021234561234"`` -> ``"**** **** **** 1234"`` (the shape the screen pop and the records use).

    ValueError (never quoting the number) for anything but digits and separators.
    """
    return mask_number(number)


def last4(number: str) -> str:
    """The last 4 digits of a card or account number (what the IVR may read back)."""
    return account_digits(number)[-4:]


def amount_window(amount_fen: int) -> tuple[int, int]:
    """The inclusive range of fen within :data:`AMOUNT_TOLERANCE` of ``amount_fen`` (absolute values)."""
    amount = abs(int(amount_fen))
    delta = int(amount * AMOUNT_TOLERANCE)
    return amount - delta, amount + delta


#: Passwords are what a phone keypad types: 4 to 12 digits (the ISO 9564 PIN lengths).
MIN_PASSWORD, MAX_PASSWORD = 4, 12

#: The largest amount one trade carries (ISO 8583 field 4 holds 12 digits of fen).
MAX_AMOUNT_FEN = 10**12 - 1


def is_password(text: object) -> bool:
    """True for 4..12 ASCII digits."""
    return isinstance(text, str) and text.isascii() and text.isdigit() and MIN_PASSWORD <= len(text) <= MAX_PASSWORD


def check_amount(amount_fen: object) -> int:
    """``amount_fen`` as a positive int of at most :data:`MAX_AMOUNT_FEN`, else :class:`InvalidRequest`."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or not 0 < amount_fen <= MAX_AMOUNT_FEN:
        raise InvalidRequest("an amount is a positive whole number of fen")
    return amount_fen


def check_limit(limit: object, most: int) -> int:
    """``limit`` as an int in 1..``most``, else :class:`InvalidRequest`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= most:
        raise InvalidRequest(f"a limit is 1..{most}")
    return limit


def _check_masked(value: str) -> None:
    if not is_masked(value):
        raise ValueError("a banking result holds masked account numbers only")


# -- errors -------------------------------------------------------------------------------------------------------


class CoreBankingError(Exception):
    """Base of every core-banking failure; ``code`` is a short stable token (for logs, prompts and audits)."""

    code = "error"


class BadCredentials(CoreBankingError):
    """Unknown number or wrong password (the same error for both); ``attempts_left`` before lockout, when known."""

    code = "bad_credentials"

    def __init__(self, attempts_left: int | None = None):
        super().__init__("bad credentials" if attempts_left is None else f"bad credentials, {attempts_left} left")
        self.attempts_left = attempts_left


class AccountLocked(CoreBankingError):
    """Too many wrong passwords: the account refuses verification until ``until`` (None: until a counter unlocks)."""

    code = "locked"

    def __init__(self, until: datetime | None = None):
        super().__init__("account locked" + ("" if until is None else f" until {until.isoformat()}"))
        self.until = until


class NotSigned(CoreBankingError):
    """The service needs a signed (签约) customer and this one is not."""

    code = "not_signed"


class SessionExpired(CoreBankingError):
    """The session is unknown, closed or expired: verify again."""

    code = "session_expired"


class InsufficientFunds(CoreBankingError):
    """The account cannot cover the amount."""

    code = "insufficient_funds"


class PasswordChangeNotAllowed(CoreBankingError):
    """The bank does not offer password changes here: "please change it at a counter or ATM"."""

    code = "password_change_not_allowed"


class IdentityMismatch(CoreBankingError):
    """The ID type and number given for a loss report are not the account holder's."""

    code = "identity_mismatch"


class InvalidRequest(CoreBankingError, ValueError):
    """The request itself is malformed (bad amount, unknown bill service, malformed number…)."""

    code = "invalid"


class TradeRejected(CoreBankingError):
    """The host refused the trade for another reason; ``code`` is the reason (``"frozen"``, ``"not_found"``…)."""

    def __init__(self, code: str, reason: str = ""):
        super().__init__(f"trade rejected: {code}" + (f" ({reason})" if reason else ""))
        self.code = code
        self.reason = reason


class HostError(CoreBankingError):
    """The bank could not be asked (no answer, link down, breaker open): say sorry and offer an agent."""

    code = "host_error"


class HostUnavailable(HostError):
    """The host cannot be reached, or the circuit breaker is open."""

    code = "host_unavailable"


class HostTimeout(HostError):
    """The host did not answer in time; a non-idempotent trade was reversed, never retried."""

    code = "host_timeout"


# -- results ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OwnAccount:
    """One of the verified customer's accounts: ``ref`` is the bank's opaque handle, ``masked`` what may be said."""

    ref: str
    kind: str
    masked: str

    def __post_init__(self):
        _check_masked(self.masked)


@dataclass(frozen=True)
class Session:
    """A verified customer: the handle every account operation takes.

    ``token`` is opaque (issued by the bank, valid until ``expires_at``);
    ``account`` is the verified account and ``accounts`` all the customer's
    own accounts (the verified one first) — the transfer targets.
    """

    token: str
    kind: str
    customer_id: str
    customer_name: str
    account: OwnAccount
    accounts: tuple[OwnAccount, ...]
    expires_at: datetime

    @property
    def signed(self) -> bool:
        """True for signed personal customers and corporate customers (who are always signed)."""
        return self.kind in ("signed", "corporate")

    @property
    def account_masked(self) -> str:
        """The verified account, masked."""
        return self.account.masked


@dataclass(frozen=True)
class Balance:
    """An account's balance: ``ledger_fen`` booked, ``available_fen`` spendable."""

    account_masked: str
    currency: str
    ledger_fen: int
    available_fen: int


@dataclass(frozen=True)
class Transaction:
    """One statement line: ``amount_fen`` negative for debits; ``balance_fen`` after it."""

    at: datetime
    amount_fen: int
    balance_fen: int
    description: str
    reference: str


@dataclass(frozen=True)
class Statement:
    """Statement lines from ``since`` (oldest first, at most :data:`MAX_STATEMENT`) for a fax."""

    account_masked: str
    holder: str
    since: date
    lines: tuple[Transaction, ...]


@dataclass(frozen=True)
class Receipt:
    """A completed trade: the bank's ``reference`` (RRN), the amount, and the debited account's balance after."""

    reference: str
    amount_fen: int
    balance_fen: int
    at: datetime


@dataclass(frozen=True)
class LossReport:
    """A verbal loss report (口头挂失) taken: the account is frozen until reported formally at a counter."""

    reference: str
    account_masked: str
    at: datetime


@dataclass(frozen=True)
class Bill:
    """What is owed on a bill: ``number`` is the phone or utility account number (not a bank number)."""

    service: str
    number: str
    payee: str
    period: str
    amount_due_fen: int
    due: date | None


@dataclass(frozen=True)
class InterestRate:
    """A deposit or loan rate: ``rate_percent`` a year, e.g. Decimal("1.45")."""

    product: str
    term: str
    rate_percent: Decimal


@dataclass(frozen=True)
class ExchangeRate:
    """Yuan per 100 units of ``currency`` (buying and selling, 现汇)."""

    currency: str
    buy: Decimal
    sell: Decimal


@dataclass(frozen=True)
class Product:
    """A product introduction (业务介绍): ``code`` the key, ``summary`` the text to speak or fax."""

    code: str
    name: str
    summary: str


@dataclass(frozen=True)
class Policy:
    """A policy or regulation (政策法规) entry."""

    code: str
    title: str
    text: str


# -- the interface ------------------------------------------------------------------------------------------------


class ICoreBanking(Interface):
    """The bank's host, as the flows use it.

    Every method returns a Deferred.  Verification methods fail with
    :class:`BadCredentials`, :class:`AccountLocked` (and :class:`NotSigned`
    where said); every method may fail with :class:`HostUnavailable` or
    :class:`HostTimeout`, account operations with :class:`SessionExpired`,
    and any with :class:`InvalidRequest` for malformed input.
    """

    def verify_public(number, password):
        """Verify a card or passbook ``number`` and its withdrawal ``password``.  Fires with a :class:`Session`."""

    def verify_signed(number, password):
        """Verify a signed personal customer by card or passbook and password.  Fires with a :class:`Session`.

        Fails with :class:`NotSigned` when the right credentials belong to a customer who has not signed.
        """

    def verify_corporate(short_account, password):
        """Verify a corporate customer's short account number (短帐号) and query password.  Fires with a Session."""

    def close(session):
        """End ``session`` (the caller hung up or left the menu).  Fires with None; closing twice is harmless."""

    def balance(session):
        """Fires with the verified account's :class:`Balance`."""

    def recent_transactions(session, limit=MAX_SPOKEN):
        """Fires with a tuple of at most ``limit`` :class:`Transaction`, newest first."""

    def transactions_since(session, since, limit=MAX_SPOKEN):
        """Fires with at most ``limit`` transactions on or after the date ``since``, oldest first."""

    def transactions_by_amount(session, amount_fen, limit=MAX_SPOKEN):
        """Fires with at most ``limit`` transactions whose absolute amount is within ±5 % (newest first)."""

    def statement(session, since, limit=MAX_STATEMENT):
        """Fires with a :class:`Statement` of at most ``limit`` lines from ``since`` (for a fax)."""

    def can_change_password(session):
        """Fires with True when the bank lets this customer change the password here (a bank setting)."""

    def change_password(session, old_password, new_password):
        """Change the verified account's password.  Fires with None.

        Fails with :class:`PasswordChangeNotAllowed` when the bank does not
        offer it, :class:`BadCredentials` when ``old_password`` is wrong,
        :class:`InvalidRequest` for a malformed new password.
        """

    def report_loss(session, id_type=None, id_number=None):
        """Take a verbal loss report on the verified account.  Fires with a :class:`LossReport`.

        Public customers must give ``id_type`` (a value of :data:`ID_TYPES`)
        and ``id_number`` (:class:`IdentityMismatch` when wrong); signed
        customers need neither.
        """

    def transfer(session, to_ref, amount_fen):
        """Move ``amount_fen`` from the verified account to the customer's own account ``to_ref``.

        Signed and corporate customers only (:class:`NotSigned`).  Fires with
        a :class:`Receipt`; :class:`InsufficientFunds` when it cannot be covered.
        """

    def query_bill(session, service, number):
        """Fires with the :class:`Bill` owed on ``number`` for a :data:`BILL_SERVICES` ``service`` (signed only)."""

    def pay_bill(session, service, number, amount_fen):
        """Pay ``amount_fen`` of the bill from the verified account (signed only).  Fires with a :class:`Receipt`."""

    def prepay(session, service, number, amount_fen):
        """Prepay ``amount_fen`` on a :data:`PREPAY_SERVICES` ``number`` (signed only).  Fires with a Receipt."""

    def interest_rates():
        """Fires with a tuple of :class:`InterestRate`."""

    def exchange_rates():
        """Fires with a tuple of :class:`ExchangeRate`."""

    def products():
        """Fires with a tuple of :class:`Product` introductions."""

    def policies():
        """Fires with a tuple of :class:`Policy` entries (title and text)."""

    def policy(code):
        """Fires with the :class:`Policy` ``code``; :class:`TradeRejected` ``"not_found"`` when there is none."""


class ICoreBankingMonitor(Interface):
    """Live figures of a core-banking link for the supervisor view and alarms (SV-2, SV-3)."""

    def counters():
        """A dict of plain values: trades, errors, timeouts, latency p50/p99 (ms), breaker state, lockouts…"""
