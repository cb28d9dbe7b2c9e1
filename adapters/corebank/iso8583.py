"""ctid's ISO 8583 dialect with the host: the message spec, which trade is which, and the response codes.

Messages are ISO 8583:1987 in ASCII (pyiso8583 does the codec), each sent as
one frame with a 2-byte big-endian length prefix.  docs/corebank.md has the
field map; in short:

=====  =====================================================================
field  use
=====  =====================================================================
2      card or passbook number (personal verifications only)
3      processing code: the operation (:data:`OPERATIONS`)
4      amount in fen, 12 digits
7      transmission date and time, MMDDhhmmss (UTC)
11     STAN: the client's trace number, matches a response to its request
12/13  local time hhmmss / date MMDD (bank time)
37     RRN: the host's reference of a trade (responses)
39     response code (:data:`RESPONSE_CODES`)
41     terminal id (ctid's, from the configuration)
48     request parameters, JSON (limits, dates, bill service and number, ID)
49     currency, 156 (CNY)
52     PIN block (ISO 9564 format 0, TDES, 16 hex digits)
62     session token (responses to verifications; every later request)
63     response data, JSON (up to 60,000 bytes)
90     original data elements of a reversal (MTI, STAN, field 7, terminal)
102    corporate short account number (corporate verification)
103    the account credited by a transfer (the host's account reference)
120    the new PIN block of a password change
=====  =====================================================================
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import iso8583
from iso8583.specs import default_ascii

from ctid.banking import (
    AccountLocked,
    BadCredentials,
    CoreBankingError,
    HostUnavailable,
    IdentityMismatch,
    InsufficientFunds,
    InvalidRequest,
    NotSigned,
    PasswordChangeNotAllowed,
    SessionExpired,
    TradeRejected,
)

#: The largest frame either side accepts (the 2-byte length prefix's limit).
MAX_FRAME = 65535

SPEC = copy.deepcopy(default_ascii)
SPEC["48"] = dict(data_enc="utf-8", len_enc="ascii", len_type=3, max_len=999, desc="Request parameters (JSON)")
SPEC["62"] = dict(data_enc="ascii", len_enc="ascii", len_type=3, max_len=64, desc="Session token")
SPEC["63"] = dict(data_enc="utf-8", len_enc="ascii", len_type=5, max_len=60000, desc="Response data (JSON)")
SPEC["120"] = dict(data_enc="ascii", len_enc="ascii", len_type=3, max_len=16, desc="New PIN block")

#: MTIs: inquiries, financial trades (not idempotent), reversal advices and their repeats.
INQUIRY, FINANCIAL, REVERSAL, REVERSAL_REPEAT = "0100", "0200", "0420", "0421"


@dataclass(frozen=True)
class Operation:
    """An ICoreBanking method on the wire: its MTI and processing code, and whether a timeout may retry it."""

    name: str
    mti: str
    code: str

    @property
    def idempotent(self) -> bool:
        """Inquiries other than verifications and closing may be sent again after a timeout."""
        return self.mti == INQUIRY and not self.name.startswith(("verify_", "close"))

    @property
    def reversible(self) -> bool:
        """Financial trades are reversed (0420) when their outcome is unknown, never retried."""
        return self.mti == FINANCIAL


OPERATIONS = {op.name: op for op in (
    Operation("verify_public", INQUIRY, "900000"),
    Operation("verify_signed", INQUIRY, "900100"),
    Operation("verify_corporate", INQUIRY, "900200"),
    Operation("close", INQUIRY, "990000"),
    Operation("balance", INQUIRY, "310000"),
    Operation("recent_transactions", INQUIRY, "380000"),
    Operation("transactions_since", INQUIRY, "380100"),
    Operation("transactions_by_amount", INQUIRY, "380200"),
    Operation("statement", INQUIRY, "380300"),
    Operation("can_change_password", INQUIRY, "910000"),
    Operation("query_bill", INQUIRY, "320000"),
    Operation("interest_rates", INQUIRY, "930000"),
    Operation("exchange_rates", INQUIRY, "930100"),
    Operation("products", INQUIRY, "930200"),
    Operation("policies", INQUIRY, "930300"),
    Operation("policy", INQUIRY, "930400"),
    Operation("change_password", FINANCIAL, "960000"),
    Operation("report_loss", FINANCIAL, "970000"),
    Operation("transfer", FINANCIAL, "400000"),
    Operation("pay_bill", FINANCIAL, "500000"),
    Operation("prepay", FINANCIAL, "510000"),
)}
BY_CODE = {(op.mti, op.code): op for op in OPERATIONS.values()}

APPROVED = "00"
#: Response code -> (error class, TradeRejected code or None); "00" is approved.
RESPONSE_CODES: dict[str, tuple[type[CoreBankingError], str | None]] = {
    "55": (BadCredentials, None),
    "14": (BadCredentials, None),
    "75": (AccountLocked, None),
    "57": (NotSigned, None),
    "51": (InsufficientFunds, None),
    "62": (TradeRejected, "frozen"),
    "25": (TradeRejected, "not_found"),
    "61": (TradeRejected, "over_due"),
    "12": (InvalidRequest, None),
    "30": (InvalidRequest, None),
    "91": (HostUnavailable, None),
    "96": (HostUnavailable, None),
    "P1": (SessionExpired, None),
    "P2": (PasswordChangeNotAllowed, None),
    "P3": (IdentityMismatch, None),
    "P4": (TradeRejected, "not_permitted"),
}
_REJECT_CODES = {code: response for response, (kind, code) in RESPONSE_CODES.items() if kind is TradeRejected}


class FrameError(ValueError):
    """A frame that is not a message of this dialect."""


def encode(fields: dict[str, str]) -> bytes:
    """The frame body of ``fields`` (``"t"`` is the MTI); FrameError when a field does not fit the spec."""
    try:
        raw, _ = iso8583.encode(dict(fields), SPEC)
    except iso8583.EncodeError as e:
        raise FrameError(f"cannot encode: {_field_only(e)}") from None
    return bytes(raw)


def decode(data: bytes) -> dict[str, str]:
    """The fields of a frame body; FrameError for anything malformed (never echoing the data)."""
    try:
        fields, _ = iso8583.decode(data, SPEC)
    except (iso8583.DecodeError, UnicodeDecodeError, ValueError) as e:
        raise FrameError(f"malformed message: {_field_only(e)}") from None
    return fields


def _field_only(error: Exception) -> str:
    """pyiso8583's message names the field and position; keep that and drop anything quoting data."""
    text = str(error)
    return text[text.rfind(": field") + 2:] if ": field" in text else type(error).__name__


def response_mti(mti: str) -> str:
    """The MTI answering ``mti`` (0100 -> 0110, 0420 -> 0430; a repeat 0421 -> 0430)."""
    return f"{mti[:2]}{int(mti[2]) + 1}0"


def error_for(code: str, text: str = "") -> CoreBankingError:
    """The error a non-approved response code stands for."""
    kind, reject = RESPONSE_CODES.get(code, (TradeRejected, f"host_{code}"))
    if kind is TradeRejected:
        return TradeRejected(reject or f"host_{code}", text)
    if kind is BadCredentials:
        return BadCredentials()
    if kind is AccountLocked:
        return AccountLocked()
    return kind(text or f"host response {code}")


def code_for(error: CoreBankingError) -> str:
    """The response code a host answers ``error`` with (the inverse of :func:`error_for`)."""
    if isinstance(error, TradeRejected):
        return _REJECT_CODES.get(error.code, "96")
    for code, (kind, _) in RESPONSE_CODES.items():
        if type(error) is kind:
            return code
    return "96"


def params(fields: dict[str, str]) -> dict:
    """Field 48's JSON object (empty when absent); FrameError when it is not one."""
    return _json(fields.get("48"), dict)


def payload(fields: dict[str, str], kind: type = dict):
    """Field 63's JSON value; FrameError when absent, malformed or not of ``kind``."""
    return _json(fields.get("63"), kind, required=True)


def _json(text: str | None, kind: type, required: bool = False):
    if text is None and not required:
        return kind()
    try:
        value = json.loads(text) if text is not None else None
    except ValueError:
        raise FrameError("a JSON field is malformed") from None
    if not isinstance(value, kind):
        raise FrameError(f"a JSON field is not a {kind.__name__}")
    return value


def to_json(value) -> str:
    """Compact UTF-8 JSON for fields 48 and 63."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
