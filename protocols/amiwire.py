"""AMI wire format: messages, a streaming parser and a serializer.

Pure code, no I/O.  The parser is fed raw bytes as they arrive from the
socket and yields whole messages.  It frames on the blank line that ends each
AMI message (not line by line), which is what makes it fast; it accepts CRLF
and bare LF, the legacy ``Response: Follows`` body, and enforces a line and a
message size limit.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Sequence

MAX_LINE = 64 * 1024
MAX_MESSAGE = 1024 * 1024
END_COMMAND = "--END COMMAND--"


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

    __slots__ = ("_text", "_pairs", "_folded", "body")

    def __init__(self, text: str, body: Sequence[str] = ()):
        self._text = "\n" + text
        self._pairs: list[tuple[str, str]] | None = None
        self._folded: dict[str, str] | None = None
        self.body = list(body)

    @classmethod
    def build(cls, headers: Mapping[str, object] | Iterable[tuple[str, object]], body: Sequence[str] = ()) -> Message:
        """Make a message from a mapping or from ordered pairs."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        return cls("\n".join(f"{_clean(k)}: {_clean(v)}" for k, v in pairs), body)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every header as ``(key, value)``, in wire order."""
        if self._pairs is None:
            self._pairs = [split_header(line) for line in self._text[1:].split("\n")] if len(self._text) > 1 else []
        return self._pairs

    @property
    def text(self) -> str:
        """The headers as received, one ``Key: Value`` per LF-separated line."""
        return self._text[1:]

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (any case), or ``default``."""
        text = self._text
        found = text.find("\n" + key + ": ")
        if found >= 0:
            start = found + len(key) + 3
            end = text.find("\n", start)
            return text[start:] if end < 0 else text[start:end]
        if self._folded is None:
            folded: dict[str, str] = {}
            for k, v in self.pairs:
                folded.setdefault(k.lower(), v)
            self._folded = folded
        return self._folded.get(key.lower(), default)

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
        text = self._text
        if text.startswith("\nEvent: "):
            end = text.find("\n", 8)
            return text[8:] if end < 0 else text[8:end]
        return self.get("Event")

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


def split_header(line: str) -> tuple[str, str]:
    """Split ``Key: Value`` at the first colon, dropping one space after it."""
    key, sep, value = line.partition(": ")
    if sep:
        return key, value
    key, sep, value = line.partition(":")
    if not sep:
        raise ProtocolViolation(f"not a header line: {line[:80]!r}")
    return key, value[1:] if value.startswith(" ") else value


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
    """

    def __init__(self, banner: bool = False, max_line: int = MAX_LINE, max_message: int = MAX_MESSAGE):
        self.banner: str | None = None
        self._want_banner = banner
        self._buffer = b""
        self._carry_cr = False
        self.max_line = max_line
        self.max_message = max_message

    def feed(self, data: bytes) -> list[Message]:
        """Add bytes from the wire; return every message they complete."""
        if self._carry_cr:
            data = b"\r" + data
            self._carry_cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._carry_cr = True
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        buffer = self._buffer + data if self._buffer else data
        if self._want_banner:
            end = buffer.find(b"\n")
            if end < 0:
                self._check_partial(buffer)
                self._buffer = buffer
                return []
            self.banner = buffer[:end].decode("utf-8", "replace")
            self._want_banner = False
            buffer = buffer[end + 1 :]
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._check_partial(buffer)
            self._buffer = buffer
            return []
        messages, leftover = self._parse_text(buffer[:end].decode("utf-8", "replace"))
        self._buffer = leftover.encode("utf-8") + buffer[end:] if leftover else buffer[end + 2 :]
        self._check_partial(self._buffer)
        return messages

    def _check_partial(self, pending: bytes) -> None:
        if len(pending) > self.max_message:
            raise ProtocolViolation(f"message longer than {self.max_message} bytes")
        if len(pending) > self.max_line and max(map(len, pending.split(b"\n"))) > self.max_line:
            raise ProtocolViolation(f"line longer than {self.max_line} bytes")

    def _parse_text(self, text: str) -> tuple[list[Message], str]:
        if len(text) > self.max_line and max(map(len, text.split("\n"))) > self.max_line:
            raise ProtocolViolation(f"line longer than {self.max_line} bytes")
        messages = []
        blocks = text.split("\n\n")
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
                messages.append(Message(block))
        return messages, ""


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
