"""Who is calling: the customer profile an agent's screen pop shows (AG-2), and masking of account numbers.

Pure: no SQL.  :class:`ctid.interfaces.ICustomerDirectory` is implemented by
``ctid.adapters.customers.SQLCustomers``; it fires with a
:class:`CustomerProfile` — plain, frozen data the domain can keep and send
to the agent's client.

House rule (DESIGN.md): a card or account number beyond its last 4 digits
never reaches a log, an event or a column in clear.  A profile only holds
numbers already masked by :func:`mask_number` (it refuses anything else), and
free text (notes, contact summaries) goes through :func:`redact` before it is
stored.  No function here puts the number it was given into an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Customer segments the sample data and the routing rules use (others are allowed).
SEGMENTS = ("vip", "private", "corporate", "retail")

#: Kinds of account a customer holds: bank card, passbook (存折), corporate account.
ACCOUNT_KINDS = frozenset({"card", "passbook", "corporate"})

#: What every masked number starts with: the same shape whatever the length, so the length is hidden too.
MASK_PREFIX = "**** **** **** "

_MASKED = re.compile(r"\*{4} \*{4} \*{4} [0-9]{4}")
_SEPARATORS = re.compile(r"[\s\-.()/]")
#: 13 or more digits, possibly grouped by single spaces or dashes: a card or account number in free text.
_LONG_NUMBER = re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,}(?![0-9])")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_MAX_PHONE_DIGITS = 20


class CustomerDirectoryError(Exception):
    """The customer directory could not answer (database down or slow): pop the call without a profile."""


def account_digits(number: str) -> str:
    """The digits of a card or account number typed with spaces or dashes (``"6222 0200-1234"``).

    ValueError (which never quotes the number) for anything but digits and
    separators, or fewer than 4 digits.
    """
    digits = _SEPARATORS.sub("", str(number))
    if not digits.isascii() or not digits.isdigit() or len(digits) < 4:
        raise ValueError("an account number is at least 4 digits (spaces and dashes allowed)")
    return digits


def mask_number(number: str) -> str:
    """``"6222 0212 3456 1234"`` or ``"1234"`` -> ``"**** **** **** 1234"``: only the last 4 digits survive.

    The shape is the same for every length (cards, passbooks, corporate
    accounts), so the mask does not tell the length either.
    """
    return MASK_PREFIX + account_digits(number)[-4:]


def is_masked(text: str) -> bool:
    """True for a string shaped like :func:`mask_number`'s result."""
    return isinstance(text, str) and _MASKED.fullmatch(text) is not None


def redact(text: str) -> str:
    """``text`` with every run of 13+ digits (spaces or dashes between them allowed) masked to its last 4.

    For free text an agent or an import wrote (notes, contact summaries): a
    card number typed into it is stored as ``**** **** **** 1234``.  Phone
    numbers (11 digits, or 12 with a trunk prefix) are left alone.
    """
    return _LONG_NUMBER.sub(lambda match: mask_number(match.group()), text or "")


def national_number(number: str | None) -> str:
    """A caller number in the national form customers' phones are stored in; ``""`` when there is none.

    ``+86 138 0013 8000``, ``008613800138000``, ``8613800138000`` and
    ``013800138000`` (a mobile with the trunk prefix) become ``13800138000``;
    ``+86 21 1234 5678`` becomes ``02112345678``; other countries keep their
    code as ``+<digits>``; anything else is kept as its digits.  ValueError
    for letters or more than 20 digits.
    """
    text = _SEPARATORS.sub("", str(number or ""))
    international = text.startswith("+")
    digits = text[1:] if international else text
    if not digits:
        return ""
    if not digits.isascii() or not digits.isdigit() or len(digits) > _MAX_PHONE_DIGITS:
        raise ValueError("a phone number is at most 20 digits, with an optional leading +")
    if digits.startswith("00"):
        international, digits = True, digits[2:]
    if international:
        if not digits.startswith("86"):
            return "+" + digits
        digits = digits[2:]
        if not (digits.startswith("0") or _MOBILE.fullmatch(digits)):
            digits = "0" + digits  # a landline: put the trunk prefix back before the area code
    elif digits.startswith("86") and _MOBILE.fullmatch(digits[2:]):
        return digits[2:]
    if digits.startswith("0") and _MOBILE.fullmatch(digits[1:]):
        return digits[1:]
    return digits


def utc_naive(at: datetime) -> datetime:
    """``at`` in UTC without a zone (how times are stored); a naive ``at`` is taken to be UTC already."""
    if not isinstance(at, datetime):
        raise TypeError("a contact's time is a datetime")
    return at if at.tzinfo is None else at.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Contact:
    """One past contact with the customer: when (UTC), on which channel, what about, which agent.

    ``channel`` is a short word: ``phone``, ``branch``, ``app``, ``web``,
    ``sms``, ``wechat`` …; ``agent_id`` is None when no agent took part.
    """

    at: datetime
    channel: str
    summary: str = ""
    agent_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the time as ISO 8601 with ``Z``)."""
        return {"at": self.at.isoformat(timespec="seconds") + "Z", "channel": self.channel,
                "summary": self.summary, "agent_id": self.agent_id}


@dataclass(frozen=True)
class CustomerProfile:
    """A customer as the agent's screen pop shows them.

    ``accounts`` holds masked numbers only (``"**** **** **** 1234"``):
    anything else is refused with ValueError.  ``contacts`` are the most
    recent first.  ``verified`` says whether the caller passed the IVR's
    verification: the directory does not know, so it is False in what it
    returns; set it with ``dataclasses.replace(profile, verified=True)``.
    ``matched_by`` tells how the customer was found: ``"customer_id"``,
    ``"account"`` (the full number keyed in the IVR) or ``"caller"`` (the
    phone number only — a hint, not proof of identity).
    """

    customer_id: str
    name: str
    segment: str = "retail"
    city: str | None = None
    language: str = "zh"
    accounts: tuple[str, ...] = ()
    verified: bool = False
    contacts: tuple[Contact, ...] = ()
    notes: str = ""
    matched_by: str = ""

    def __post_init__(self) -> None:
        accounts = tuple(self.accounts)
        if not all(is_masked(account) for account in accounts):
            raise ValueError("a profile holds masked account numbers only ('**** **** **** 1234')")
        object.__setattr__(self, "accounts", accounts)
        object.__setattr__(self, "contacts", tuple(self.contacts))

    @property
    def vip(self) -> bool:
        """True for the segments served first: ``vip`` and ``private`` (private banking)."""
        return self.segment in ("vip", "private")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data for the screen pop (CTI event)."""
        return {"customer_id": self.customer_id, "name": self.name, "segment": self.segment, "city": self.city,
                "language": self.language, "accounts": list(self.accounts), "verified": self.verified,
                "contacts": [contact.as_dict() for contact in self.contacts], "notes": self.notes,
                "matched_by": self.matched_by}
