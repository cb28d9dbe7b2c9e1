"""Numbers, money, dates and digit strings as sequences of prompt pieces, in Chinese and English.

Pure functions: each returns the names of the pieces to play in order (the
prompt manifest maps a name to a sound file per language).  Money is integer
fen (1 yuan = 10 jiao = 100 fen), as the core-banking seam gives it.

Chinese reads numbers in groups of four digits (万, 亿), one 零 for any run
of zeros inside a number, 十 alone for 10–19 at the front; money is
``十二元五角``, ``十二元零五分``, ``十二元整``; dates ``二〇二六年三月五日``.
English is British: "one thousand two hundred and three"; money "one
thousand two hundred and three yuan fifty"; dates "March fifth, twenty
twenty-six".
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

LANGUAGES = ("zh", "en")

_ZH_UNITS = ("", "num-10", "num-100", "num-1000")
_ZH_GROUPS = ("", "num-10000", "num-100000000", "num-1000000000000")
_EN_GROUPS = ((10**12, "num-trillion"), (10**9, "num-billion"), (10**6, "num-million"), (1000, "num-thousand"))

#: Every piece :mod:`say` may produce, per language (the manifest must list each).
PIECES: dict[str, frozenset[str]] = {
    "zh": frozenset(
        [f"num-{n}" for n in range(10)]
        + [unit for unit in _ZH_UNITS + _ZH_GROUPS if unit]
        + ["minus", "point", "percent", "money-yuan", "money-jiao", "money-fen", "money-zheng",
           "date-year", "date-month", "date-day"]
    ),
    "en": frozenset(
        [f"num-{n}" for n in range(20)]
        + [f"num-{n}" for n in range(20, 100, 10)]
        + ["num-hundred", "and", "minus", "point", "percent", "money-yuan", "money-fen"]
        + [name for _, name in _EN_GROUPS]
        + [f"month-{n}" for n in range(1, 13)]
        + [f"ord-{n}" for n in range(1, 32)]
    ),
}


def _check(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"no number pieces for language {language!r} (known: {', '.join(LANGUAGES)})")


def number(value: int, language: str) -> list[str]:
    """An integer (negative: "minus …")."""
    _check(language)
    value = int(value)
    if value < 0:
        return ["minus"] + number(-value, language)
    if value >= 10**15:
        raise ValueError("number too large to say")
    return _zh_number(value) if language == "zh" else _en_number(value)


def digits(text: str, language: str) -> list[str]:
    """Each digit of ``text`` on its own (anything but 0–9 is skipped)."""
    _check(language)
    return [f"num-{ch}" for ch in str(text) if ch in "0123456789"]


def decimal(value: Decimal | int | str, language: str) -> list[str]:
    """A decimal number: the integer part, then "point" and each fraction digit (trailing zeros dropped)."""
    _check(language)
    text = format(Decimal(str(value)), "f")
    sign, text = (["minus"], text[1:]) if text.startswith("-") else ([], text)
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0")
    return sign + number(int(whole), language) + (["point"] + digits(fraction, language) if fraction else [])


def percent(value: Decimal | int | str, language: str) -> list[str]:
    """A percentage: 百分之一点四五 / one point four five percent."""
    spoken = decimal(value, language)
    return ["percent"] + spoken if language == "zh" else spoken + ["percent"]


def money(fen: int, language: str) -> list[str]:
    """An amount of integer fen, as yuan (and jiao/fen); the sign is said as "minus"."""
    _check(language)
    fen = int(fen)
    if fen < 0:
        return ["minus"] + money(-fen, language)
    yuan, cents = divmod(fen, 100)
    if language == "zh":
        return _zh_money(yuan, cents)
    if yuan == 0 and cents:
        return number(cents, "en") + ["money-fen"]
    return number(yuan, "en") + ["money-yuan"] + (number(cents, "en") if cents else [])


def say_date(day: date | datetime, language: str) -> list[str]:
    """A calendar date."""
    _check(language)
    if isinstance(day, datetime):
        day = day.date()
    if language == "zh":
        return (digits(f"{day.year:04d}", "zh") + ["date-year"] + number(day.month, "zh") + ["date-month"]
                + number(day.day, "zh") + ["date-day"])
    return [f"month-{day.month}", f"ord-{day.day}"] + _en_year(day.year)


# --- Chinese -----------------------------------------------------------------------------------------------------


def _zh_group(value: int) -> list[str]:
    """0 < value < 10000, with inner zeros as one 零 and no trailing zeros."""
    pieces: list[str] = []
    pending_zero = False
    for power in range(3, -1, -1):
        digit = value // 10**power % 10
        if digit == 0:
            pending_zero = bool(pieces)
            continue
        if pending_zero:
            pieces.append("num-0")
            pending_zero = False
        pieces.append(f"num-{digit}")
        if _ZH_UNITS[power]:
            pieces.append(_ZH_UNITS[power])
    return pieces


def _zh_number(value: int) -> list[str]:
    if value == 0:
        return ["num-0"]
    groups = []
    while value:
        value, group = divmod(value, 10000)
        groups.append(group)
    pieces: list[str] = []
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            continue
        if pieces and (group < 1000 or groups[index + 1] == 0):
            pieces.append("num-0")
        pieces += _zh_group(group) + ([_ZH_GROUPS[index]] if _ZH_GROUPS[index] else [])
    if pieces[:2] == ["num-1", "num-10"]:
        pieces = pieces[1:]  # 十二, not 一十二
    return pieces


def _zh_money(yuan: int, cents: int) -> list[str]:
    jiao, fen = divmod(cents, 10)
    if yuan == 0 and cents == 0:
        return ["num-0", "money-yuan"]
    pieces = number(yuan, "zh") + ["money-yuan"] if yuan else []
    if cents == 0:
        return pieces + ["money-zheng"]
    if jiao:
        pieces += [f"num-{jiao}", "money-jiao"]
    elif yuan:
        pieces.append("num-0")
    if fen:
        pieces += [f"num-{fen}", "money-fen"]
    return pieces


# --- English -----------------------------------------------------------------------------------------------------


def _en_below_100(value: int) -> list[str]:
    if value < 20:
        return [f"num-{value}"]
    tens, unit = divmod(value, 10)
    return [f"num-{tens * 10}"] + ([f"num-{unit}"] if unit else [])


def _en_below_1000(value: int) -> list[str]:
    hundreds, rest = divmod(value, 100)
    pieces = [f"num-{hundreds}", "num-hundred"] if hundreds else []
    if rest:
        pieces += (["and"] if hundreds else []) + _en_below_100(rest)
    return pieces


def _en_number(value: int) -> list[str]:
    if value == 0:
        return ["num-0"]
    pieces: list[str] = []
    for size, name in _EN_GROUPS:
        if value >= size:
            count, value = divmod(value, size)
            pieces += _en_below_1000(count) + [name]
    if value:
        pieces += (["and"] if pieces and value < 100 else []) + _en_below_1000(value)
    return pieces


def _en_year(year: int) -> list[str]:
    high, low = divmod(year, 100)
    if low < 10 or year < 1000:
        return _en_number(year)
    return _en_below_100(high) + _en_below_100(low)
