"""The JSON shapes of field 63: each ICoreBanking result to plain JSON values and back.

The host side (:mod:`.hostsim`) calls the ``*_data`` functions, the client
(:mod:`.hostclient`) the matching ``*_from`` ones.  Times are bank-local
``YYYYMMDDhhmmss``, dates ``YYYY-MM-DD``, money integer fen, rates decimal
strings; accounts travel as ``[ref, kind, last4]`` and are masked on arrival.
``*_from`` raise :class:`~.iso8583.FrameError` for anything malformed.
"""

from __future__ import annotations

import functools
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from ctid.adapters.corebank.iso8583 import FrameError
from ctid.adapters.corebank.sandbox_schema import BANK_TZ
from ctid.banking import (
    Balance,
    Bill,
    ExchangeRate,
    InterestRate,
    LossReport,
    OwnAccount,
    Policy,
    Product,
    Receipt,
    Session,
    Statement,
    Transaction,
)
from ctid.customers import MASK_PREFIX

_TIME = "%Y%m%d%H%M%S"


def _strict(fn):
    """Make a ``*_from`` function raise FrameError for any malformed value."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (KeyError, IndexError, TypeError, ValueError, InvalidOperation) as e:
            raise FrameError(f"malformed response data ({type(e).__name__})") from None

    return wrapper


def time_text(at: datetime) -> str:
    """A time in bank-local ``YYYYMMDDhhmmss``."""
    return at.astimezone(BANK_TZ).strftime(_TIME)


def time_from(text: str) -> datetime:
    """The aware datetime of a bank-local ``YYYYMMDDhhmmss``."""
    return datetime.strptime(text, _TIME).replace(tzinfo=BANK_TZ)


def _account(account: OwnAccount) -> list:
    return [account.ref, account.kind, account.masked[-4:]]


def _own(data: list) -> OwnAccount:
    ref, kind, last4 = data
    if not (isinstance(last4, str) and len(last4) == 4 and last4.isdigit()):
        raise ValueError("last4")
    return OwnAccount(str(ref), str(kind), MASK_PREFIX + last4)


def session_data(session: Session) -> dict:
    """A session without its token (which travels in field 62)."""
    return dict(kind=session.kind, customer_id=session.customer_id, name=session.customer_name,
                account=_account(session.account), accounts=[_account(a) for a in session.accounts],
                expires=time_text(session.expires_at))


@_strict
def session_from(data: dict, token: str) -> Session:
    """The Session of a verification response."""
    return Session(token=token, kind=str(data["kind"]), customer_id=str(data["customer_id"]),
                   customer_name=str(data["name"]), account=_own(data["account"]),
                   accounts=tuple(_own(a) for a in data["accounts"]), expires_at=time_from(data["expires"]))


def balance_data(balance: Balance) -> dict:
    """A balance (the account is the session's)."""
    return dict(currency=balance.currency, ledger=balance.ledger_fen, available=balance.available_fen)


@_strict
def balance_from(data: dict, masked: str) -> Balance:
    """The Balance of ``masked``."""
    return Balance(masked, str(data["currency"]), int(data["ledger"]), int(data["available"]))


def lines_data(lines: tuple[Transaction, ...]) -> list:
    """Statement lines as ``[time, amount, balance, description, reference]``."""
    return [[time_text(t.at), t.amount_fen, t.balance_fen, t.description, t.reference] for t in lines]


@_strict
def lines_from(data: list) -> tuple[Transaction, ...]:
    """Transactions from :func:`lines_data`'s shape."""
    return tuple(Transaction(time_from(at), int(amount), int(balance), str(text), str(reference))
                 for at, amount, balance, text, reference in data)


def statement_data(statement: Statement) -> dict:
    """A statement's holder, start date and lines."""
    return dict(holder=statement.holder, since=statement.since.isoformat(), lines=lines_data(statement.lines))


@_strict
def statement_from(data: dict, masked: str) -> Statement:
    """The Statement of ``masked``."""
    return Statement(masked, str(data["holder"]), date.fromisoformat(data["since"]), lines_from(data["lines"]))


def receipt_data(receipt: Receipt) -> dict:
    """A receipt's balance and time (the reference is field 37, the amount field 4)."""
    return dict(balance=receipt.balance_fen, at=time_text(receipt.at))


@_strict
def receipt_from(data: dict, reference: str, amount_fen: int) -> Receipt:
    """The Receipt of a trade."""
    return Receipt(reference, amount_fen, int(data["balance"]), time_from(data["at"]))


def loss_data(report: LossReport) -> dict:
    """A loss report's time (the reference is field 37)."""
    return dict(at=time_text(report.at))


@_strict
def loss_from(data: dict, reference: str, masked: str) -> LossReport:
    """The LossReport on ``masked``."""
    return LossReport(reference, masked, time_from(data["at"]))


def bill_data(bill: Bill) -> dict:
    """A bill's payee, period, amount due and due date."""
    return dict(payee=bill.payee, period=bill.period, due_fen=bill.amount_due_fen,
                due=bill.due.isoformat() if bill.due else None)


@_strict
def bill_from(data: dict, service: str, number: str) -> Bill:
    """The Bill for ``service`` ``number``."""
    due = date.fromisoformat(data["due"]) if data["due"] is not None else None
    return Bill(service, number, str(data["payee"]), str(data["period"]), int(data["due_fen"]), due)


def info_data(items: tuple) -> list:
    """Rates, products or policies as lists of strings."""
    return [[str(value) for value in vars(item).values()] for item in items]


_INFO = {"interest_rates": InterestRate, "exchange_rates": ExchangeRate, "products": Product, "policies": Policy,
         "policy": Policy}


@_strict
def info_from(operation: str, data: list) -> tuple:
    """The tuple of results of an information operation from :func:`info_data`'s shape."""
    kind = _INFO[operation]
    if kind is InterestRate:
        return tuple(InterestRate(product, term, Decimal(rate)) for product, term, rate in data)
    if kind is ExchangeRate:
        return tuple(ExchangeRate(currency, Decimal(buy), Decimal(sell)) for currency, buy, sell in data)
    return tuple(kind(*(str(value) for value in row)) for row in data)
