"""AMI wire format: messages, a streaming parser and a serializer.

Pure code, no I/O.  The parser is fed raw bytes as they arrive from the
socket and yields whole messages.  It frames on the blank line that ends each
AMI message (not line by line), which is what makes it fast; it accepts CRLF
and bare LF, the legacy ``Response: Follows`` body, and enforces a line and a
message size limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

MAX_LINE = 64 * 1024
MAX_MESSAGE = 1024 * 1024
END_COMMAND = "--END COMMAND--"


_UNSET: Any = object()


class ProtocolViolation(Exception):
    """The peer sent something that is not AMI (too long, not text, …)."""


class Message:
    """One AMI message: ordered ``Key: Value`` headers, repeated keys kept.

    The message keeps its text and answers lookups by scanning it, so a
    message nobody reads costs almost nothing; :attr:`pairs` is split out on
    first use.  ``msg["Key"]`` / ``msg.get("Key")`` are case-insensitive and
    return the first occurrence; :meth:`getall` returns every value in order.
    ``body`` holds the raw lines of a legacy ``Response: Follows`` answer.
    """

    # The parser makes thousands of messages per read, so construction is
    # minimal: ``_pairs`` and ``_body`` stay unset until first asked for.
    __slots__ = ("_text", "_event", "_folded", "_pairs", "_body")

    def __init__(self, text: str, body: Sequence[str] = ()):
        self._text = "\n" + text
        self._event = _UNSET
        self._folded: Any = None
        if body:
            self._body: list[str] = list(body)

    @classmethod
    def build(cls, headers: Mapping[str, object] | Iterable[tuple[str, object]], body: Sequence[str] = ()) -> Message:
        """Make a message from a mapping or from ordered pairs."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        return cls("\n".join(f"{_clean(k)}: {_clean(v)}" for k, v in pairs), body)

    @property
    def body(self) -> list[str]:
        """The raw body lines of a legacy ``Response: Follows`` answer (else empty)."""
        try:
            return self._body
        except AttributeError:
            self._body = []
            return self._body

    @body.setter
    def body(self, lines: Sequence[str]) -> None:
        self._body = list(lines)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every header as ``(key, value)``, in wire order."""
        try:
            return self._pairs
        except AttributeError:
            text = self._text
            self._pairs: list[tuple[str, str]] = [split_header(line) for line in text[1:].split("\n")] if len(
                text) > 1 else []
            return self._pairs

    @property
    def text(self) -> str:
        """The headers as received, one ``Key: Value`` per LF-separated line."""
        return self._text[1:]

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (any case), or ``default``."""
        _, found, rest = self._text.partition(f"\n{key}: ")  # partition beats find() here (no slice args)
        if found:
            return rest.partition("\n")[0]
        return self._fallback(key, default)

    def _fallback(self, key: str, default: str | None) -> str | None:
        """Lookup in another case (or of an absent key): fold the headers once, if needed."""
        folded = self._folded  # None, then the lower-cased text, then a dict once a key needs it
        if folded is None:
            folded = self._folded = self._text.lower()
        if folded.__class__ is str:
            if f"\n{key.lower()}:" not in folded:
                return default  # absent in any case: no need to split every header
            folded = self._folded = {}
            for k, v in self.pairs:
                folded.setdefault(k.lower(), v)
        return folded.get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def getall(self, key: str) -> list[str]:
        """Every value of ``key`` (any case), in order."""
        folded = key.lower()
        return [v for k, v in self.pairs if k.lower() == folded]

    @property
    def event(self) -> str | None:
        """The event name, or None when this is a response."""
        event = self._event
        if event is _UNSET:
            event = self._event = self.get("Event")
        return event

    @property
    def response(self) -> str | None:
        """The ``Response`` value; None for events (even OriginateResponse)."""
        return None if self.event is not None else self.get("Response")

    @property
    def action_id(self) -> str | None:
        """The ``ActionID`` header, if any."""
        return self.get("ActionID")

    def as_dict(self) -> dict[str, str]:
        """Plain dict (first occurrence of each key)."""
        result: dict[str, str] = {}
        for key, value in self.pairs:
            result.setdefault(key, value)
        return result

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and other.pairs == self.pairs and other.body == self.body

    def __repr__(self) -> str:
        return f"Message({self.pairs!r})"


class _CRLFMessage(Message):
    """A message kept with the CRLF line ends it arrived with (converting them would cost a copy)."""

    __slots__ = ()

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every header as ``(key, value)``, in wire order."""
        try:
            return self._pairs
        except AttributeError:
            text = self._text
            self._pairs = [split_header(line) for line in text[1:].split("\r\n")] if len(text) > 1 else []
            return self._pairs

    @property
    def text(self) -> str:
        """The headers as received, one ``Key: Value`` per LF-separated line."""
        return self._text[1:].replace("\r\n", "\n")

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (any case), or ``default``."""
        _, found, rest = self._text.partition(f"\n{key}: ")
        if found:
            return rest.partition("\r")[0]
        return self._fallback(key, default)


def _from_block(block: str, _new: Any = object.__new__, _cls: type[Message] = Message, _unset: Any = _UNSET) -> Message:
    """A message from one header block (the parser's cheap constructor)."""
    message = _new(_cls)
    message._text = "\n" + block
    message._event = _unset
    message._folded = None
    return message


def _event_message(block: str, _new: Any = object.__new__, _cls: type[Message] = Message) -> Message:
    """Like :func:`_from_block` for a block known to start with ``Event: ``."""
    message = _new(_cls)
    message._text = "\n" + block
    end = block.find("\n")
    message._event = block[7:] if end < 0 else block[7:end]
    message._folded = None
    return message


def _crlf_event(block: str, _new: Any = object.__new__, _cls: type[Message] = _CRLFMessage) -> Message:
    """A CRLF message from a block known to start with ``Event: ``."""
    message = _new(_cls)
    message._text = "\n" + block
    end = block.find("\r")
    message._event = block[7:] if end < 0 else block[7:end]
    message._folded = None
    return message


def split_header(line: str) -> tuple[str, str]:
    """Split ``Key: Value`` at the first colon, dropping one space after it."""
    key, sep, value = line.partition(":")
    if not sep:
        raise ProtocolViolation(f"not a header line: {line[:80]!r}")
    return key, value[1:] if value[:1] == " " else value


def _follows_complete(block: str) -> bool:
    """A Follows body ends at ``--END COMMAND--``, or is empty (seen in the wild)."""
    if block.rstrip("\n").endswith(END_COMMAND):
        return True
    return all(line.split(":", 1)[0].lower() in _FOLLOWS_HEADERS for line in block.split("\n")[1:])


_FOLLOWS_HEADERS = ("privilege", "actionid")


def _parse_follows(block: str) -> Message:
    """A legacy ``Response: Follows`` message: headers, then raw body lines."""
    lines = block.split("\n")
    index = 1
    while index < len(lines) and lines[index].split(":", 1)[0].lower() in _FOLLOWS_HEADERS:
        index += 1
    body = lines[index:]
    if body and body[-1].endswith(END_COMMAND):
        last = body.pop()[: -len(END_COMMAND)]
        if last:
            body.append(last)
    return Message("\n".join(lines[:index]), body)


class MessageParser:
    """Incremental AMI parser: ``feed(bytes)`` returns the complete messages.

    With ``banner=True`` the first line is the ``Asterisk Call Manager/x.y.z``
    banner (not followed by a blank line); it is stored in :attr:`banner`.
    Raises :class:`ProtocolViolation` on a line over ``max_line`` or a message
    over ``max_message``; the caller should then drop the connection.

    The line-end style is taken from the first blank line (the end of the
    first message) and kept for the connection.  CRLF, what Asterisk sends,
    is framed on ``CRLF CRLF`` without copying; a CRLF stream must not switch
    to bare-LF blank lines later (such a message never ends and trips
    ``max_message``).  Bare LF is accepted too; in that mode any CR is
    dropped.  A legacy ``Response: Follows`` body (LF-separated lines) is
    understood in both.
    """

    def __init__(self, banner: bool = False, max_line: int = MAX_LINE, max_message: int = MAX_MESSAGE):
        self.banner: str | None = None
        self._want_banner = banner
        self._buffer = b""
        self._crlf: bool | None = None
        self.max_line = max_line
        self.max_message = max_message

    def feed(self, data: bytes) -> list[Message]:
        """Add bytes from the wire; return every message they complete."""
        if self._crlf is None:
            return self._feed_undecided(data)
        if self._crlf:
            return self._feed(data, b"\r\n\r\n", self._parse_crlf)
        if b"\r" in data:
            data = data.translate(None, b"\r")
        return self._feed(data, b"\n\n", self._parse_lf)

    def _feed_undecided(self, data: bytes) -> list[Message]:
        """Take the banner, then decide the line-end style from the first blank line."""
        buffer, self._buffer = self._buffer + data, b""
        if self._want_banner:
            end = buffer.find(b"\n")
            if end < 0:
                self._check_partial(buffer)
                self._buffer = buffer
                return []
            self.banner = buffer[: end - 1 if buffer[end - 1 : end] == b"\r" else end].decode("utf-8", "replace")
            self._want_banner = False
            buffer = buffer[end + 1 :]
        lf, crlf = buffer.find(b"\n\n"), buffer.find(b"\n\r\n")
        if lf < 0 and crlf < 0:
            self._check_partial(buffer)
            self._buffer = buffer
            return []
        self._crlf = crlf >= 0 and (lf < 0 or crlf < lf)
        return self.feed(buffer)

    def _feed(self, data: bytes, blank: bytes, parse: Any) -> list[Message]:
        buffer = self._buffer + data if self._buffer else data
        end = buffer.rfind(blank)
        if end < 0:
            self._check_partial(buffer)
            self._buffer = buffer
            return []
        messages, leftover = parse(buffer[:end].decode("utf-8", "replace"))
        self._buffer = leftover.encode("utf-8") + buffer[end:] if leftover else buffer[end + len(blank) :]
        self._check_partial(self._buffer)
        return messages

    def _check_partial(self, pending: bytes) -> None:
        if len(pending) > self.max_message:
            raise ProtocolViolation(f"message longer than {self.max_message} bytes")
        if len(pending) > self.max_line and max(map(len, pending.split(b"\n"))) > self.max_line:
            raise ProtocolViolation(f"line longer than {self.max_line} bytes")

    def _parse_crlf(self, text: str) -> tuple[list[Message], str]:
        blocks = text.split("\r\n\r\n")
        if len(text) > self.max_line:
            self._check_sizes(blocks)
        events = [_crlf_event(block) for block in blocks if block[:7] == "Event: "]
        if len(events) == len(blocks):
            return events, ""  # the common case: a run of events
        messages = []
        for block in blocks:
            block = block.lstrip("\r\n")
            if block.startswith("Event: "):
                messages.append(_crlf_event(block))
            elif block.startswith("Response: Follows"):
                messages.append(_parse_follows(block.replace("\r", "")))
            elif block:
                messages.append(_from_block(block, _cls=_CRLFMessage))
        return messages, ""

    def _parse_lf(self, text: str) -> tuple[list[Message], str]:
        blocks = text.split("\n\n")
        if len(text) > self.max_line:
            self._check_sizes(blocks)
        events = [_event_message(block) for block in blocks if block[:7] == "Event: "]
        if len(events) == len(blocks):
            return events, ""  # the common case: a run of events
        messages: list[Message] = []
        index = 0
        while index < len(blocks):
            block = blocks[index].lstrip("\n")
            index += 1
            if not block:
                continue
            if block.startswith("Response: Follows"):
                while not _follows_complete(block) and index < len(blocks):
                    block += "\n\n" + blocks[index]
                    index += 1
                if not _follows_complete(block):
                    return messages, block
                messages.append(_parse_follows(block))
            else:
                messages.append(_from_block(block))
        return messages, ""

    def _check_sizes(self, blocks: list[str]) -> None:
        longest = max(map(len, blocks))
        if longest > self.max_message:
            raise ProtocolViolation(f"message longer than {self.max_message} bytes")
        if longest > self.max_line and max(len(line) for block in blocks if len(block) > self.max_line
                                           for line in block.split("\n")) > self.max_line:
            raise ProtocolViolation(f"line longer than {self.max_line} bytes")


def _clean(value: object) -> str:
    text = str(value)
    if "\r" in text or "\n" in text:
        raise ValueError(f"CR/LF not allowed in an AMI header value: {text[:40]!r}")
    return text


def format_message(headers: Mapping[str, object] | Iterable[tuple[str, object]]) -> bytes:
    """Serialize headers (mapping or ordered pairs) as one CRLF-framed message."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    lines = [f"{_clean(k)}: {_clean(v)}\r\n" for k, v in pairs]
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")


def encode_message(message: Message) -> bytes:
    """Serialize a :class:`Message` (headers, then any Follows body) for the wire."""
    text = message.text.replace("\n", "\r\n")
    if message.body:
        return (text + "\r\n" + "\n".join(message.body) + "\n" + END_COMMAND + "\r\n\r\n").encode("utf-8")
    return (text + "\r\n\r\n").encode("utf-8")


def iter_messages(raw: bytes, banner: bool = True) -> Iterator[Message]:
    """Parse a whole transcript (e.g. a capture file) into messages."""
    parser = MessageParser(banner=banner, max_line=len(raw) + 1, max_message=len(raw) + 1)
    yield from parser.feed(raw + b"\r\n\r\n")
