"""CTI wire format: one JSON object per line (docs/cti-protocol.md).

Pure code, no I/O, no Twisted.  :class:`LineFramer` cuts bytes into lines
(LF, or CRLF, at most ``max_line`` bytes); :func:`parse_request` reads a
client line into a :class:`Request`, :func:`parse_server_message` reads a
server line into a :class:`Response`, an :class:`Event` or a
:class:`Heartbeat`; the ``encode_*`` functions build the lines (an event's
body is encoded once for all its recipients, :func:`event_line` puts each
one's seq in front).  A line that cannot be read raises :class:`CodecError`
carrying the stable error code to answer with and, when it could be read,
the request's id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeGuard, Union

#: Protocol versions this implementation speaks, oldest first.
PROTOCOL_VERSIONS: tuple[int, ...] = (1,)
#: Default longest line, in bytes, not counting the LF (or CRLF) that ends it.
DEFAULT_MAX_LINE = 64 * 1024
#: Longest string request id, in characters.
MAX_ID_LENGTH = 128
#: Largest magnitude of an integer request id (exact in IEEE doubles, so JavaScript is safe).
MAX_ID_INT = 2**53 - 1

RequestId = Union[str, int]

_NAME = re.compile(r"[A-Z][A-Za-z0-9]{0,63}\Z")
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
_REQUEST_KEYS = frozenset({"id", "cmd", "args"})


class ErrorCode(StrEnum):
    """The stable error codes of the transport layer (commands add their own)."""

    BAD_JSON = "bad_json"
    LINE_TOO_LONG = "line_too_long"
    BAD_REQUEST = "bad_request"
    UNKNOWN_COMMAND = "unknown_command"
    HELLO_REQUIRED = "hello_required"
    LOGIN_REQUIRED = "login_required"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_SESSION = "unknown_session"
    RESUME_GAP = "resume_gap"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    TIMEOUT = "timeout"
    INTERNAL_ERROR = "internal_error"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    SLOW_CONSUMER = "slow_consumer"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    PROTOCOL_ERROR = "protocol_error"
    SESSION_REPLACED = "session_replaced"
    SESSION_ENDED = "session_ended"
    SHUTTING_DOWN = "shutting_down"


class CTIError(Exception):
    """A refusal sent to the client as ``{"ok": false, "error": {...}}``.

    ``code`` is a stable snake_case string (see :class:`ErrorCode`; command
    handlers add their own), ``message`` human text, ``data`` an optional
    JSON object with details.  A malformed code raises ValueError.
    """

    def __init__(self, code: str, message: str, data: Mapping[str, Any] | None = None):
        if not isinstance(code, str) or not _CODE.match(code):
            raise ValueError(f"not a CTI error code: {code!r}")
        super().__init__(code, message)
        self.code = str(code)
        self.message = message
        self.data = dict(data) if data is not None else None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """The ``error`` member of an error response."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class CodecError(CTIError):
    """A line that is not a valid message; ``request_id`` is its id when that much could be read."""

    def __init__(self, code: str, message: str, request_id: RequestId | None = None):
        super().__init__(code, message)
        self.request_id = request_id


class LineTooLong(Exception):
    """A line grew past the limit; the stream cannot be resynchronised, so the connection must close."""


@dataclass(frozen=True, slots=True)
class Request:
    """A client request: ``{"id": …, "cmd": "<Name>", "args": {…}}``."""

    id: RequestId
    cmd: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    """The server's answer to one request (``id`` is None for a connection-level error)."""

    id: RequestId | None
    ok: bool
    result: dict[str, Any] | None = None
    error: CTIError | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A session event: name, per-session sequence number (from 1), epoch seconds, payload."""

    name: str
    seq: int
    at: float
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The server's keep-alive line ``{"heartbeat": <epoch seconds>}``."""

    at: float


# --- framing ----------------------------------------------------------------------------------


class LineFramer:
    """Cuts a byte stream into lines ending in LF; a CR before the LF is dropped.

    A line (without its terminator) may be at most ``max_line`` bytes; a
    longer one raises :class:`LineTooLong` as soon as it is known, without
    waiting for its end.  The framer is useless after that.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE):
        self.max_line = max_line
        self._buffer = bytearray()
        self._scanned = 0

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the end of their line."""
        return len(self._buffer)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Add ``data`` and yield every complete line (without LF or CRLF), in order."""
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(buffer)
                if self._scanned > self.max_line + 1:  # +1: a CR may still precede the LF
                    raise LineTooLong(f"line longer than {self.max_line} bytes")
                return
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            self._scanned = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line:
                raise LineTooLong(f"line longer than {self.max_line} bytes")
            yield line


# --- reading ----------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in object")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def load_object(line: bytes) -> dict[str, Any]:
    """Decode one line as a UTF-8 JSON object (strict: no NaN, no duplicate keys).

    Raises :class:`CodecError` ``bad_json`` for bytes that are not UTF-8
    JSON and ``bad_request`` for JSON that is not an object.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CodecError(ErrorCode.BAD_JSON, f"not UTF-8 (byte {error.start})") from None
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as error:
        raise CodecError(ErrorCode.BAD_JSON, f"not JSON: {error.msg} at column {error.colno}") from None
    except (ValueError, RecursionError) as error:
        raise CodecError(ErrorCode.BAD_JSON, f"not JSON: {str(error)[:100] or 'nested too deeply'}") from None
    if not isinstance(value, dict):
        raise CodecError(ErrorCode.BAD_REQUEST, "a message must be a JSON object")
    return value


def is_valid_id(value: object) -> TypeGuard[RequestId]:
    """Whether ``value`` may be a request id: a 1–128 character string or an integer within ±(2**53-1)."""
    if type(value) is int:
        return -MAX_ID_INT <= value <= MAX_ID_INT
    if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape cannot be echoed back
            return False
        return True
    return False


def is_name(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a command or event name: PascalCase ASCII letters and digits, 1–64 long."""
    return isinstance(value, str) and _NAME.match(value) is not None


def parse_request(line: bytes) -> Request:
    """Read one client line into a :class:`Request`.

    Raises :class:`CodecError`: ``bad_json`` (not UTF-8 JSON) or
    ``bad_request`` (not an object, no valid id, an unknown member, a bad
    command name, ``args`` not an object).  ``request_id`` is set once the
    id has been read.
    """
    message = load_object(line)
    request_id = message.get("id")
    if not is_valid_id(request_id):
        raise CodecError(ErrorCode.BAD_REQUEST, "a request needs an id: a non-empty string or an integer")
    unknown = message.keys() - _REQUEST_KEYS
    if unknown:
        raise CodecError(ErrorCode.BAD_REQUEST, f"unknown request member {sorted(unknown)[0][:40]!r}", request_id)
    command = message.get("cmd")
    if not is_name(command):
        raise CodecError(ErrorCode.BAD_REQUEST, "cmd must be a PascalCase command name", request_id)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise CodecError(ErrorCode.BAD_REQUEST, "args must be a JSON object", request_id)
    return Request(request_id, command, args)


def request_id_of(line: bytes) -> RequestId | None:
    """The id of a request line, or None when it cannot be read (used to answer without running it)."""
    try:
        return parse_request(line).id
    except CodecError as error:
        return error.request_id


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_server_message(line: bytes) -> Response | Event | Heartbeat | None:
    """Read one server line (client side); None for a kind of message this version does not know.

    Raises :class:`CodecError` (``bad_json``/``bad_request``) for a malformed
    line.  Unknown members are ignored, as the protocol requires of clients.
    """
    message = load_object(line)
    if "event" in message:
        return _parse_event(message)
    if "ok" in message:
        return _parse_response(message)
    if "heartbeat" in message:
        if not _number(message["heartbeat"]):
            raise CodecError(ErrorCode.BAD_REQUEST, "heartbeat must be a number")
        return Heartbeat(float(message["heartbeat"]))
    return None


def _parse_event(message: dict[str, Any]) -> Event:
    name, seq, at, data = message["event"], message.get("seq"), message.get("at"), message.get("data", {})
    if not is_name(name) or type(seq) is not int or seq < 1 or not _number(at) or not isinstance(data, dict):
        raise CodecError(ErrorCode.BAD_REQUEST, "malformed event")
    return Event(name, seq, float(at), data)


def _parse_response(message: dict[str, Any]) -> Response:
    request_id, ok = message.get("id"), message["ok"]
    if not (request_id is None or is_valid_id(request_id)) or not isinstance(ok, bool):
        raise CodecError(ErrorCode.BAD_REQUEST, "malformed response")
    if ok:
        result = message.get("result", {})
        if not isinstance(result, dict):
            raise CodecError(ErrorCode.BAD_REQUEST, "result must be an object", request_id)
        return Response(request_id, True, result)
    error = message.get("error")
    if not isinstance(error, dict):
        raise CodecError(ErrorCode.BAD_REQUEST, "error must be an object", request_id)
    code, text, data = error.get("code"), error.get("message", ""), error.get("data")
    if not isinstance(code, str) or not _CODE.match(code) or not isinstance(text, str):
        raise CodecError(ErrorCode.BAD_REQUEST, "malformed error", request_id)
    return Response(request_id, False, None, CTIError(code, text, data if isinstance(data, dict) else None))


# --- writing ----------------------------------------------------------------------------------


def dump_line(message: Mapping[str, Any]) -> bytes:
    """One compact JSON line ending in LF, UTF-8 (raises TypeError/ValueError for non-JSON values)."""
    try:
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate: escape everything rather than emit invalid UTF-8
        return json.dumps(message, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


def encode_request(request_id: RequestId, command: str, args: Mapping[str, Any] | None = None) -> bytes:
    """A request line (``args`` omitted when empty)."""
    if not is_valid_id(request_id) or not is_name(command):
        raise ValueError(f"bad request id {request_id!r} or command {command!r}")
    message: dict[str, Any] = {"id": request_id, "cmd": command}
    if args:
        message["args"] = dict(args)
    return dump_line(message)


def encode_result(request_id: RequestId, result: Mapping[str, Any]) -> bytes:
    """A success response line."""
    return dump_line({"id": request_id, "ok": True, "result": result})


def encode_error(request_id: RequestId | None, error: CTIError) -> bytes:
    """An error response line; ``request_id`` None for an error not tied to a request."""
    return dump_line({"id": request_id, "ok": False, "error": error.as_dict()})


def encode_event_body(name: str, at: float, data: Mapping[str, Any]) -> bytes:
    """An event line without its opening ``{"seq":<n>``: encoded once, then sent to every recipient.

    Raises ValueError for a name that is not PascalCase, TypeError or
    ValueError for data that is not JSON.  :func:`event_line` completes it.
    """
    if not is_name(name):
        raise ValueError(f"not a CTI event name: {name!r}")
    return b"," + dump_line({"event": name, "at": at, "data": data})[1:]


def event_line(seq: int, body: bytes) -> bytes:
    """The event line numbered ``seq`` of a body from :func:`encode_event_body` (``seq`` is its first member)."""
    return b'{"seq":%d%b' % (seq, body)


def encode_event(name: str, seq: int, at: float, data: Mapping[str, Any]) -> bytes:
    """An event line (raises ValueError for a name that is not PascalCase)."""
    return event_line(seq, encode_event_body(name, at, data))


def encode_heartbeat(at: float) -> bytes:
    """The server's keep-alive line."""
    return dump_line({"heartbeat": at})


def negotiate_version(offered: Iterable[int], supported: Iterable[int] = PROTOCOL_VERSIONS) -> int | None:
    """The highest version in both ``offered`` and ``supported``, or None."""
    common = set(offered) & set(supported)
    return max(common) if common else None
