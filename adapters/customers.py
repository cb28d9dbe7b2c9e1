"""The database-backed customer directory: profiles for the screen pop, found by caller, account or id.

:class:`SQLCustomers` implements :class:`~ctid.interfaces.ICustomerDirectory`
on a :class:`~ctid.adapters.store.pool.DatabasePool`, with admin methods to
load customers (``scripts/ctid-seed``, imports).

Card and account numbers are never stored: ``customer_accounts`` keeps the
last 4 digits and ``HMAC-SHA256(account_key, digits)`` in hex, so a full
number keyed in the IVR finds its customer without the number being anywhere
in the database.  The key comes from the configuration and is the same for
every writer and reader; without it the hashes cannot be brute-forced from a
stolen database.  Changing the key orphans every stored hash: accounts must be
loaded again from the core-banking system.

A lookup is one indexed query for the customer and their accounts, plus one
for the recent contacts.  It still waits on SQL, so the screen pop bounds it
with a timeout (see :meth:`SQLCustomers.lookup`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from datetime import datetime
from typing import cast

from sqlalchemy import String, exists, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ctid.adapters.store.pool import DatabasePool
from ctid.adapters.store.schema import customer_accounts, customer_contacts, customer_phones, customers
from ctid.customers import (
    ACCOUNT_KINDS,
    Contact,
    CustomerDirectoryError,
    CustomerProfile,
    account_digits,
    mask_number,
    national_number,
    redact,
    utc_naive,
)
from ctid.interfaces import ICustomerDirectory

log = Logger()

#: Contacts a profile carries; the most :meth:`SQLCustomers.recent_contacts` returns.
PROFILE_CONTACTS, MAX_CONTACTS = 5, 100
#: A full card or account number is this many digits.
MIN_ACCOUNT_DIGITS, MAX_ACCOUNT_DIGITS = 8, 32
MIN_KEY_BYTES = 16
_MAX_ID = 32
_KIND_ORDER = {"card": 0, "passbook": 1, "corporate": 2}


def _failing(method):
    """Make a Deferred-returning method fail its Deferred with the validation errors it raises."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs) -> Deferred:
        return maybeDeferred(method, *args, **kwargs)

    return wrapper


def _text(value: str | None, column, what: str, required: bool = True) -> str | None:
    """``value`` checked against ``column``'s length (ValueError naming ``what``, never the value)."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > column.type.length:
        raise ValueError(f"{what} is {'1' if required else '0'}..{column.type.length} characters of text")
    return value


# --- in a pool thread ----------------------------------------------------------------------------


def _profile(connection: Connection, match, matched_by: str, contacts: int) -> CustomerProfile | None:
    """The profile of the one customer ``match`` (a select of customer ids) finds; None for zero or several."""
    found, c, a = match.limit(2).subquery(), customers.c, customer_accounts.c
    rows = connection.execute(
        select(c.customer_id, c.name, c.segment, c.city, c.language, c.notes, a.last4, a.kind)
        .select_from(found.join(customers, c.customer_id == found.c.customer_id)
                     .outerjoin(customer_accounts, a.customer_id == c.customer_id))
    ).all()
    if len({row.customer_id for row in rows}) != 1:
        return None
    row = rows[0]
    accounts = sorted((_KIND_ORDER.get(r.kind, 9), r.last4) for r in rows if r.last4 is not None)
    return CustomerProfile(customer_id=row.customer_id, name=row.name, segment=row.segment, city=row.city,
                           language=row.language, accounts=tuple(mask_number(last4) for _, last4 in accounts),
                           contacts=tuple(_contacts(connection, row.customer_id, contacts)) if contacts else (),
                           notes=row.notes, matched_by=matched_by)


def _contacts(connection: Connection, customer_id: str, limit: int) -> list[Contact]:
    c = customer_contacts.c
    rows = connection.execute(select(c.at, c.channel, c.summary, c.agent_id).where(c.customer_id == customer_id)
                              .order_by(c.at.desc(), c.contact_id.desc()).limit(limit)).all()
    return [Contact(at=row.at, channel=row.channel, summary=row.summary, agent_id=row.agent_id) for row in rows]


def _lookup(connection: Connection, matches: list[tuple[str, object]], contacts: int) -> CustomerProfile | None:
    """Try each ``(matched_by, select of customer ids)`` in turn; the first one identifying a customer wins."""
    for matched_by, match in matches:
        profile = _profile(connection, match, matched_by, contacts)
        if profile is not None:
            return profile
    return None


def _customer_exists(connection: Connection, customer_id: str) -> None:
    if connection.execute(select(customers.c.customer_id).where(customers.c.customer_id == customer_id)).first() \
            is None:
        raise LookupError(f"unknown customer {customer_id!r}")


def _add_customer(connection: Connection, values: dict, replace: bool) -> None:
    customer_id = values["customer_id"]
    if connection.execute(select(customers.c.customer_id).where(customers.c.customer_id == customer_id)).first():
        if not replace:
            raise ValueError(f"customer {customer_id!r} already exists")
        connection.execute(update(customers).where(customers.c.customer_id == customer_id).values(**values))
    else:
        connection.execute(insert(customers).values(**values))


def _add_phone(connection: Connection, customer_id: str, number: str) -> None:
    _customer_exists(connection, customer_id)
    p = customer_phones.c
    if connection.execute(select(p.number).where(p.number == number, p.customer_id == customer_id)).first() is None:
        connection.execute(insert(customer_phones).values(number=number, customer_id=customer_id))


def _add_account(connection: Connection, customer_id: str, number_hmac: str, last4: str, kind: str) -> None:
    _customer_exists(connection, customer_id)
    a = customer_accounts.c
    owner = connection.execute(select(a.customer_id).where(a.number_hmac == number_hmac)).scalar()
    if owner is None:
        connection.execute(insert(customer_accounts).values(number_hmac=number_hmac, customer_id=customer_id,
                                                            last4=last4, kind=kind))
    elif owner == customer_id:
        connection.execute(update(customer_accounts).where(a.number_hmac == number_hmac).values(kind=kind))
    else:
        raise ValueError("this account number already belongs to another customer")


def _add_contact(connection: Connection, values: dict) -> None:
    _customer_exists(connection, values["customer_id"])
    connection.execute(insert(customer_contacts).values(**values))


def _unavailable(failure: Failure) -> Failure:
    """Turn database errors into CustomerDirectoryError (the domain never sees SQLAlchemy); pass others on.

    Only the driver's own message is logged: SQLAlchemy's text would add the
    statement's parameters.  Cancellation and timeouts pass through untouched.
    """
    if failure.check(SQLAlchemyError):
        error = failure.value
        detail = repr(error.orig) if isinstance(error, DBAPIError) else type(error).__name__
        log.warn("customer database error: {detail}", detail=detail)
        raise CustomerDirectoryError(f"customer database unavailable ({type(error).__name__})") from None
    return failure


# --- the directory -------------------------------------------------------------------------------


@implementer(ICustomerDirectory)
class SQLCustomers:
    """Customers in ctid's own database (``customers``, ``customer_phones``, ``customer_accounts``,
    ``customer_contacts``).

    ``account_key`` (at least 16 bytes; text is UTF-8 encoded) keys the
    account-number hashes; keep it secret, out of logs, and the same
    everywhere the tables are written or read.
    """

    def __init__(self, pool: DatabasePool, account_key: bytes | str, profile_contacts: int = PROFILE_CONTACTS):
        key = account_key.encode("utf-8") if isinstance(account_key, str) else bytes(account_key)
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the account key needs at least {MIN_KEY_BYTES} bytes")
        self.pool = pool
        self._key = key
        self.profile_contacts = max(0, min(int(profile_contacts), MAX_CONTACTS))

    def __repr__(self) -> str:
        return f"<SQLCustomers on {self.pool.name!r}>"

    def _run(self, fn, *args) -> Deferred:
        return self.pool.run(fn, *args).addErrback(_unavailable)

    def account_hmac(self, number: str) -> str:
        """The hex HMAC-SHA256 of a full card or account number's digits (ValueError for a malformed number)."""
        digits = account_digits(number)
        if not MIN_ACCOUNT_DIGITS <= len(digits) <= MAX_ACCOUNT_DIGITS:
            raise ValueError(f"a full account number is {MIN_ACCOUNT_DIGITS}..{MAX_ACCOUNT_DIGITS} digits")
        return hmac.new(self._key, digits.encode("ascii"), hashlib.sha256).hexdigest()

    def _matches(self, caller, account_last4, customer_id, account_number) -> list[tuple[str, object]]:
        """The well-formed keys of a lookup, as selects of customer ids, in the order they are tried."""
        matches: list[tuple[str, object]] = []
        if isinstance(customer_id, str) and 0 < len(customer_id) <= _MAX_ID:
            c = customers.c
            matches.append(("customer_id", select(c.customer_id).where(c.customer_id == customer_id)))
        try:
            number_hmac = self.account_hmac(account_number) if account_number else None
        except ValueError:
            number_hmac = None
        if number_hmac is not None:
            a = customer_accounts.c
            matches.append(("account", select(a.customer_id).where(a.number_hmac == number_hmac)))
        try:
            caller = national_number(caller) if isinstance(caller, str) else ""
        except ValueError:
            caller = ""
        if caller:
            p, a = customer_phones.c, customer_accounts.c
            match = select(p.customer_id).where(p.number == caller)
            last4 = account_last4 if isinstance(account_last4, str) else ""
            if len(last4) == 4 and last4.isascii() and last4.isdigit():
                # The customers on this number holding that account first; then the number alone.
                matches.append(("caller", match.where(exists().where(a.customer_id == p.customer_id,
                                                                      a.last4 == last4))))
            matches.append(("caller", match))
        return matches

    @_failing
    def lookup(self, caller: str | None = None, account_last4: str | None = None, customer_id: str | None = None,
               account_number: str | None = None) -> Deferred[CustomerProfile | None]:
        """See :meth:`ICustomerDirectory.lookup`: one query per key tried, plus one for the contacts.

        Malformed input (from the IVR or the switch: untrusted) identifies no
        one rather than failing.  The full ``account_number`` is hashed here,
        on the calling thread, and goes no further.

        Callers on the call path bound the wait and go on without a profile::

            d = customers.lookup(caller=ani).addTimeout(0.5, reactor)
            d.addErrback(lambda failure: None)   # late (TimeoutError) or database down

        A timed-out lookup's query still finishes on its pool thread; its
        result is dropped.
        """
        matches = self._matches(caller, account_last4, customer_id, account_number)
        if not matches:
            return succeed(None)
        return self._run(_lookup, matches, self.profile_contacts)

    @_failing
    def recent_contacts(self, customer_id: str, limit: int = 5) -> Deferred[list[Contact]]:
        """See :meth:`ICustomerDirectory.recent_contacts`; ``limit`` is capped at :data:`MAX_CONTACTS`."""
        limit = int(limit)
        if limit < 1:
            raise ValueError("limit is at least 1")
        return self._run(_contacts, str(customer_id), min(limit, MAX_CONTACTS))

    # --- administration ---------------------------------------------------------------------------

    @_failing
    def add_customer(self, customer_id: str, name: str, segment: str = "retail", city: str | None = None,
                     language: str = "zh", notes: str = "", replace: bool = False) -> Deferred[None]:
        """Create a customer (rewrite an existing one's details when ``replace``).  Fires with None.

        ValueError for an empty or over-long field, or an existing id without
        ``replace``.  Card numbers typed into ``notes`` are masked (:func:`~ctid.customers.redact`).
        """
        c = customers.c
        values = dict(customer_id=_text(customer_id, c.customer_id, "a customer id"),
                      name=_text(name, c.name, "a name"), segment=_text(segment, c.segment, "a segment"),
                      city=_text(city, c.city, "a city", required=False),
                      language=_text(language, c.language, "a language"),
                      notes=_text(redact(notes), c.notes, "notes", required=False))
        return self._run(_add_customer, values, bool(replace))

    @_failing
    def add_phone(self, customer_id: str, number: str) -> Deferred[None]:
        """Link a phone number (stored in national form) to a customer; linking it again changes nothing.

        Fires with None; ValueError for a malformed number, LookupError for an unknown customer.
        """
        national = national_number(number)
        if not national or len(national) > (cast(String, customer_phones.c.number.type).length or 0):
            raise ValueError("a phone number needs digits")
        return self._run(_add_phone, str(customer_id), national)

    @_failing
    def add_account(self, customer_id: str, number: str, kind: str = "card") -> Deferred[None]:
        """Record a customer's card or account: only its last 4 digits and its keyed hash are stored.

        Adding it again updates its ``kind``.  Fires with None; ValueError for
        a malformed number, an unknown kind or a number another customer holds;
        LookupError for an unknown customer.  The number is never quoted.
        """
        if kind not in ACCOUNT_KINDS:
            raise ValueError(f"an account's kind is one of {sorted(ACCOUNT_KINDS)}")
        number_hmac = self.account_hmac(number)
        return self._run(_add_account, str(customer_id), number_hmac, account_digits(number)[-4:], kind)

    @_failing
    def add_contact(self, customer_id: str, at: datetime, channel: str, summary: str = "",
                    agent_id: str | None = None) -> Deferred[None]:
        """Record a past contact (``at`` in UTC, or zone-aware).  Fires with None; LookupError for an unknown customer.

        Card numbers in ``summary`` are masked; a summary longer than the
        column is cut (a record is worth more than its tail).
        """
        c = customer_contacts.c
        summary = redact(summary)[:cast(String, c.summary.type).length]
        values = dict(customer_id=str(customer_id), at=utc_naive(at), channel=_text(channel, c.channel, "a channel"),
                      summary=summary, agent_id=_text(agent_id, c.agent_id, "an agent id", required=False))
        return self._run(_add_contact, values)

