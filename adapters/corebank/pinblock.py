"""PIN blocks: ISO 9564-1 formats 0 and 1, encrypted with triple DES under the PIN key shared with the host.

Format 0 (verifications, where the account number is known): the PIN field
(``0``, the PIN length, the PIN, ``F`` padding: 16 nibbles) XOR the account
field (``0000`` and the 12 rightmost digits of the account number excluding
its check digit, zero-padded on the left for short corporate numbers).
Format 1 (a password change inside a session, where the client no longer
holds the number): ``1``, the length, the PIN, random fill.  Blocks are
encrypted with TDES-ECB under a double- or triple-length key (32 or 48 hex
digits) and travel as 16 hex digits in field 52 (the new PIN of a change in
field 120).  Nothing here logs; errors never quote a PIN.
"""

from __future__ import annotations

import os

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from ctid.banking import MAX_PASSWORD, MIN_PASSWORD


class PinBlockError(ValueError):
    """A PIN block that does not decrypt to a well-formed format-0 block (or a malformed key)."""


def parse_key(text: str) -> bytes:
    """A 24-byte TDES key from 32 or 48 hex digits; PinBlockError (not quoting it) otherwise."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise PinBlockError("a PIN key is 32 or 48 hex digits") from None
    if len(key) not in (16, 24):
        raise PinBlockError("a PIN key is 32 or 48 hex digits")
    return key + key[:8] if len(key) == 16 else key  # a double-length key K1K2 is K1K2K1


def _account_field(account_digits: str) -> bytes:
    body = account_digits[:-1][-12:].rjust(12, "0")
    return bytes.fromhex("0000" + body)


def _cipher(key: bytes) -> Cipher:
    return Cipher(TripleDES(key), modes.ECB())


def encrypt(pin: str, account_digits: str | None, key: bytes) -> str:
    """The encrypted block of ``pin`` (4..12 digits) as 16 upper-case hex digits.

    Format 0 for ``account_digits``; format 1 when it is None.
    """
    if not (pin.isascii() and pin.isdigit() and MIN_PASSWORD <= len(pin) <= MAX_PASSWORD):
        raise PinBlockError("a PIN is 4..12 digits")
    if account_digits is None:
        clear = bytes.fromhex(f"1{len(pin):X}{pin}" + os.urandom(8).hex()[:14 - len(pin)])
    else:
        pin_field = bytes.fromhex(f"0{len(pin):X}{pin}".ljust(16, "F"))
        clear = bytes(a ^ b for a, b in zip(pin_field, _account_field(account_digits), strict=True))
    encryptor = _cipher(key).encryptor()
    return (encryptor.update(clear) + encryptor.finalize()).hex().upper()


def decrypt(block: str, account_digits: str | None, key: bytes) -> str:
    """The PIN in the encrypted ``block`` (format 0 for ``account_digits``, 1 for None); PinBlockError if malformed."""
    try:
        data = bytes.fromhex(block)
    except ValueError:
        raise PinBlockError("a PIN block is 16 hex digits") from None
    if len(data) != 8:
        raise PinBlockError("a PIN block is 16 hex digits")
    decryptor = _cipher(key).decryptor()
    clear = decryptor.update(data) + decryptor.finalize()
    if account_digits is not None:
        clear = bytes(a ^ b for a, b in zip(clear, _account_field(account_digits), strict=True))
    nibbles = clear.hex().upper()
    length = int(nibbles[1], 16)
    pin, padding = nibbles[2:2 + length], nibbles[2 + length:]
    format_ok = nibbles[0] == "1" if account_digits is None else nibbles[0] == "0" and not set(padding) - {"F"}
    if not format_ok or not MIN_PASSWORD <= length <= MAX_PASSWORD or not pin.isdigit():
        raise PinBlockError("not a PIN block of the expected format (wrong key or account?)")
    return pin
