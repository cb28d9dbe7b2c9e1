"""What the digits a caller typed become: plain digits, a date (YYYYMMDD), an amount in fen
or an ID number.

Each parser returns None for input it cannot accept, and the input node
asks again.  An amount uses ``*`` as the decimal point (``123*45`` is
123.45 yuan), as Chinese bank IVRs do.
"""

from __future__ import annotations

from datetime import date

MAX_AMOUNT_FEN = 10**13


def parse_digits(text: str, today: date) -> str | None:
    """Digits only."""
    return text if text.isdigit() else None


def parse_date(text: str, today: date) -> date | None:
    """``YYYYMMDD``, a real date, not after ``today``."""
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        day = date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None
    return day if day <= today else None


def parse_amount(text: str, today: date) -> int | None:
    """Yuan with ``*`` as the decimal point (at most two decimals) -> fen, more than 0."""
    whole, star, fraction = text.partition("*")
    if not whole.isdigit() or (star and (not fraction.isdigit() or len(fraction) > 2)):
        return None
    fen = int(whole) * 100 + (int(fraction.ljust(2, "0")) if fraction else 0)
    return fen if 0 < fen < MAX_AMOUNT_FEN else None


def parse_id(text: str, today: date) -> str | None:
    """An ID document number: digits, ``*`` standing for the letter X (the check digit of an ID card)."""
    return text.replace("*", "X") if text and text.replace("*", "").isdigit() else None


PARSERS = {"digits": parse_digits, "date": parse_date, "amount": parse_amount, "id": parse_id}
