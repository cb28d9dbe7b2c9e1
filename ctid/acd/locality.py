"""Caller number → city, for local preference routing (AC-4, 本地偏好路由).

Numbers are first brought to their national form by :func:`national`: digits
only; a ``0086``/``+86``/``86`` country code (the last only on numbers of 12
digits or more) is dropped and a landline then regains its trunk ``0``
(``+86 21 6888 1234`` → ``02168881234``, ``+86 10 …`` → ``010…``); a mobile
number (11 digits, ``1[3-9]…``) stays as it is (``+86 138…`` → ``138…``).  Other
numbers are kept as dialled.

A :class:`CityTable` maps number prefixes to cities and answers with the
*longest* matching prefix, so area codes (``021`` Shanghai, ``0755``
Shenzhen) and mobile number segments (``1380021`` Shanghai) can share one
table.  Numbers of 8 digits or fewer that start with 2–9 are local numbers
dialled without an area code: they belong to ``local_city`` when one is set.
A lookup costs one slice and one dict probe per distinct prefix length.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CHINA_AREA_CODES", "COUNTRY_CODES", "CityTable", "national"]

#: A few area codes, as an example and for tests; the site configures its own table.
CHINA_AREA_CODES: Mapping[str, str] = {
    "010": "Beijing",
    "020": "Guangzhou",
    "021": "Shanghai",
    "022": "Tianjin",
    "023": "Chongqing",
    "024": "Shenyang",
    "025": "Nanjing",
    "027": "Wuhan",
    "028": "Chengdu",
    "029": "Xian",
    "0571": "Hangzhou",
    "0755": "Shenzhen",
}


#: A number of digits that starts with none of these is already in national form.
COUNTRY_CODES = ("0086", "86")


def national(number: str) -> str:
    """The national form of a Chinese number (see the module docstring); '' for no digits."""
    if number.isdigit() and not number.startswith(COUNTRY_CODES):
        return number
    if not number.isdigit():
        number = "".join(ch for ch in number if ch.isdigit())
    if number.startswith("0086"):
        number = number[4:]
    elif number.startswith("86") and len(number) >= 12:
        number = number[2:]
    else:
        return number
    mobile = len(number) == 11 and number[0] == "1" and number[1] in "3456789"
    return number if mobile or number.startswith("0") else "0" + number


class CityTable:
    """Longest-prefix lookup of a caller's city."""

    __slots__ = ("_prefixes", "_lengths", "local_city")

    def __init__(self, prefixes: Mapping[str, str], local_city: str | None = None):
        self._prefixes = {national(prefix): city for prefix, city in prefixes.items()}
        self._lengths = sorted({len(prefix) for prefix in self._prefixes}, reverse=True)
        #: The city of short local numbers (no area code), if known.
        self.local_city = local_city

    def city_of(self, number: str) -> str | None:
        """The city of ``number`` (any format), or None when no prefix matches."""
        return self.city_of_national(national(number))

    def city_of_national(self, number: str) -> str | None:
        """The city of ``number``, already in national form."""
        prefixes = self._prefixes
        for length in self._lengths:
            city = prefixes.get(number[:length])
            if city is not None:
                return city
        if self.local_city is not None and 0 < len(number) <= 8 and number[0] not in "01":
            return self.local_city
        return None
