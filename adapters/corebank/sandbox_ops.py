"""The sandbox bank's work, run in a database thread: each function takes a Connection and returns plain data.

Called by :class:`ctid.adapters.corebank.sandbox.SandboxBank` through its
:class:`~ctid.adapters.store.pool.DatabasePool`; they raise the
:mod:`ctid.banking` errors, which carry no number and no password.  Debits
are one conditional ``UPDATE`` (enough funds, not frozen), so concurrent
trades cannot overdraw an account on SQLite or MySQL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Connection

from ctid.adapters.corebank import sandbox_schema as s
from ctid.adapters.directory import DUMMY_HASH, verify_password
from ctid.banking import (
    BadCredentials,
    Balance,
    Bill,
    IdentityMismatch,
    InsufficientFunds,
    NotSigned,
    OwnAccount,
    Receipt,
    TradeRejected,
    Transaction,
    amount_window,
)
from ctid.customers import MASK_PREFIX

_BILL_NAMES = {"phone": "代缴电话费", "mobile": "代缴手机费", "electricity": "代缴电费", "water": "代缴水费"}


@dataclass(frozen=True)
class Verified:
    """Who passed a verification: the customer and their accounts (the verified one first)."""

    customer_id: str
    name: str
    account: OwnAccount
    accounts: tuple[OwnAccount, ...]


def _own(row) -> OwnAccount:
    return OwnAccount(ref=row.ref, kind=row.kind, masked=MASK_PREFIX + row.last4)


def new_reference() -> str:
    """A fresh 12-digit retrieval reference number."""
    return f"{uuid.uuid4().int % 10**12:012d}"


def aware(at: datetime) -> datetime:
    """A stored bank-local time, made timezone-aware."""
    return at.replace(tzinfo=s.BANK_TZ)


def verify(connection: Connection, hash_column: str, digits_hash: str, password: str, kind: str) -> Verified:
    """Find the account by its keyed hash, check the password (one scrypt either way), check the customer's kind."""
    column = s.accounts.c[hash_column]
    kinds = ("corporate",) if kind == "corporate" else ("card", "passbook")
    row = connection.execute(select(s.accounts, s.customers.c.name, s.customers.c.signed)
                             .join(s.customers, s.customers.c.customer_id == s.accounts.c.customer_id)
                             .where(column == digits_hash, s.accounts.c.kind.in_(kinds))).first()
    if not verify_password(password, DUMMY_HASH if row is None else row.password_hash) or row is None:
        raise BadCredentials()
    if kind == "signed" and not row.signed:
        raise NotSigned("this customer has not signed for phone banking")
    others = connection.execute(select(s.accounts).where(s.accounts.c.customer_id == row.customer_id,
                                                         s.accounts.c.kind.in_(kinds), s.accounts.c.ref != row.ref)
                                .order_by(s.accounts.c.ref)).all()
    return Verified(row.customer_id, row.name, _own(row), (_own(row), *map(_own, others)))


def balance(connection: Connection, ref: str) -> Balance:
    """The account's balance."""
    row = connection.execute(select(s.accounts).where(s.accounts.c.ref == ref)).one()
    return Balance(MASK_PREFIX + row.last4, row.currency, row.ledger_fen, row.available_fen)


def _lines(connection: Connection, query) -> tuple[Transaction, ...]:
    return tuple(Transaction(aware(r.at), r.amount_fen, r.balance_fen, r.description, r.reference)
                 for r in connection.execute(query))


def recent(connection: Connection, ref: str, limit: int) -> tuple[Transaction, ...]:
    """The newest ``limit`` transactions, newest first."""
    t = s.transactions
    return _lines(connection, select(t).where(t.c.account_ref == ref).order_by(t.c.at.desc(), t.c.id.desc())
                  .limit(limit))


def since(connection: Connection, ref: str, day: date, limit: int) -> tuple[Transaction, ...]:
    """The first ``limit`` transactions on or after ``day``, oldest first."""
    t = s.transactions
    return _lines(connection, select(t).where(t.c.account_ref == ref, t.c.at >= datetime.combine(day, time()))
                  .order_by(t.c.at, t.c.id).limit(limit))


def by_amount(connection: Connection, ref: str, amount_fen: int, limit: int) -> tuple[Transaction, ...]:
    """Transactions whose absolute amount is within ±5 % of ``amount_fen``, newest first."""
    t = s.transactions
    low, high = amount_window(amount_fen)
    size = func.abs(t.c.amount_fen)
    return _lines(connection, select(t).where(t.c.account_ref == ref, size >= low, size <= high)
                  .order_by(t.c.at.desc(), t.c.id.desc()).limit(limit))


def holder(connection: Connection, ref: str) -> str:
    """The name of the account's holder."""
    return connection.execute(select(s.customers.c.name).join(s.accounts, s.accounts.c.customer_id
                                                              == s.customers.c.customer_id)
                              .where(s.accounts.c.ref == ref)).scalar_one()


def _journal(connection: Connection, kind: str, ref: str, now: datetime, **values) -> str:
    reference = new_reference()
    connection.execute(insert(s.trades).values(reference=reference, kind=kind, account_ref=ref, at=now, **values))
    return reference


def change_password(connection: Connection, ref: str, old: str, new_hash: str, now: datetime) -> str:
    """Replace the password when ``old`` matches; the trade's reference."""
    current = connection.execute(select(s.accounts.c.password_hash).where(s.accounts.c.ref == ref)).scalar_one()
    if not verify_password(old, current):
        raise BadCredentials()
    connection.execute(update(s.accounts).where(s.accounts.c.ref == ref).values(password_hash=new_hash))
    return _journal(connection, "password", ref, now, previous_hash=current)


def report_loss(connection: Connection, ref: str, id_type: str | None, id_number: str | None, now: datetime) -> str:
    """Freeze the account (checking the holder's ID when given); the trade's reference."""
    if id_type is not None:
        row = connection.execute(select(s.customers.c.id_type, s.customers.c.id_hash)
                                 .join(s.accounts, s.accounts.c.customer_id == s.customers.c.customer_id)
                                 .where(s.accounts.c.ref == ref)).one()
        if not verify_password(id_number or "", row.id_hash or DUMMY_HASH) or row.id_type != id_type:
            raise IdentityMismatch("the ID given is not the account holder's")
    connection.execute(update(s.accounts).where(s.accounts.c.ref == ref).values(frozen=True))
    return _journal(connection, "loss", ref, now)


def _move(connection: Connection, ref: str, amount_fen: int, description: str, reference: str,
          now: datetime, checked: bool = True) -> int:
    """Add ``amount_fen`` (negative: a debit) to the account and write the line; the new ledger balance.

    A checked debit needs enough available funds and an account not frozen.
    """
    a = s.accounts
    condition = a.c.ref == ref
    if checked and amount_fen < 0:
        condition = and_(condition, a.c.available_fen >= -amount_fen, a.c.frozen.is_(False))
    done = connection.execute(update(a).where(condition).values(ledger_fen=a.c.ledger_fen + amount_fen,
                                                                available_fen=a.c.available_fen + amount_fen))
    if done.rowcount != 1:
        frozen = connection.execute(select(a.c.frozen).where(a.c.ref == ref)).scalar_one()
        raise TradeRejected("frozen", "the account is frozen") if frozen else InsufficientFunds("not enough funds")
    balance_fen = connection.execute(select(a.c.ledger_fen).where(a.c.ref == ref)).scalar_one()
    connection.execute(insert(s.transactions).values(account_ref=ref, at=now, amount_fen=amount_fen,
                                                     balance_fen=balance_fen, description=description,
                                                     reference=reference))
    return balance_fen


def transfer(connection: Connection, from_ref: str, to_ref: str, amount_fen: int, now: datetime) -> Receipt:
    """Move money between two accounts of one customer."""
    reference = _journal(connection, "transfer", from_ref, now, amount_fen=amount_fen, to_ref=to_ref)
    balance_fen = _move(connection, from_ref, -amount_fen, "转账支出", reference, now)
    _move(connection, to_ref, amount_fen, "转账存入", reference, now)
    return Receipt(reference, amount_fen, balance_fen, aware(now))


def _bill_row(connection: Connection, service: str, number: str):
    row = connection.execute(select(s.bills).where(s.bills.c.service == service, s.bills.c.number == number)).first()
    if row is None:
        raise TradeRejected("not_found", "no such bill")
    return row


def query_bill(connection: Connection, service: str, number: str) -> Bill:
    """What is owed on the bill."""
    row = _bill_row(connection, service, number)
    return Bill(service, number, row.payee, row.period, row.amount_due_fen, row.due)


def pay(connection: Connection, ref: str, service: str, number: str, amount_fen: int, prepay: bool,
        now: datetime) -> Receipt:
    """Pay (at most what is due) or prepay a bill from the account."""
    row = _bill_row(connection, service, number)
    if not prepay and amount_fen > row.amount_due_fen:
        raise TradeRejected("over_due", "more than the amount due")
    kind = "prepay" if prepay else "pay_bill"
    reference = _journal(connection, kind, ref, now, amount_fen=amount_fen, bill_service=service, bill_number=number)
    balance_fen = _move(connection, ref, -amount_fen, _BILL_NAMES[service], reference, now)
    _bill_change(connection, service, number, amount_fen, prepay)
    return Receipt(reference, amount_fen, balance_fen, aware(now))


def _bill_change(connection: Connection, service: str, number: str, amount_fen: int, prepay: bool) -> None:
    b = s.bills
    values = dict(prepaid_fen=b.c.prepaid_fen + amount_fen) if prepay else dict(
        amount_due_fen=b.c.amount_due_fen - amount_fen)
    connection.execute(update(b).where(b.c.service == service, b.c.number == number).values(**values))


def reverse(connection: Connection, reference: str, now: datetime) -> bool:
    """Undo the trade ``reference`` once (冲正); False when there is no such trade or it was already reversed."""
    t = s.trades
    row = connection.execute(select(t).where(t.c.reference == reference)).first()
    if row is None or row.reversed:
        return False
    connection.execute(update(t).where(t.c.reference == reference).values(reversed=True))
    if row.kind == "password":
        connection.execute(update(s.accounts).where(s.accounts.c.ref == row.account_ref)
                           .values(password_hash=row.previous_hash))
    elif row.kind == "loss":
        connection.execute(update(s.accounts).where(s.accounts.c.ref == row.account_ref).values(frozen=False))
    else:
        _move(connection, row.account_ref, row.amount_fen, "冲正", reference, now, checked=False)
        if row.kind == "transfer":
            _move(connection, row.to_ref, -row.amount_fen, "冲正", reference, now, checked=False)
        else:
            _bill_change(connection, row.bill_service, row.bill_number, -row.amount_fen, row.kind == "prepay")
    return True

