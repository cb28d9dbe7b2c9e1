"""Hostile input for the AMI parser: any bytes, in any chunks, give messages or ProtocolViolation — nothing else —
and the parser never holds more than its message limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ctid.protocols.amiwire import MessageParser, ProtocolViolation

FUZZ = settings(max_examples=150, deadline=None)
MAX_LINE, MAX_MESSAGE = 256, 2048

# Pieces AMI streams are made of, so random streams reach the parser's interesting paths.
_PIECES = st.sampled_from([
    b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\n\n", b"\n\r\n", b": ", b":", b"Event: ", b"Response: Follows",
    b"Response: Success", b"ActionID: 1", b"--END COMMAND--", b"Asterisk Call Manager/9.0.0", b"\xff\xfe",
    b"Output: x", b"Message: ok", b"\x00", b"a" * 300,
])
_STREAM = st.lists(st.one_of(_PIECES, st.binary(max_size=40)), max_size=40).map(b"".join)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def _touch(message) -> None:
    """Every read accessor of a parsed message works on whatever was parsed."""
    seen = (message.pairs, message.text, message.body, message.event, message.response, message.action_id,
            message.as_dict(), message.get("Event"), message.getall("Variable"), "ActionID" in message, repr(message))
    assert isinstance(seen[0], list)


@FUZZ
@given(_STREAM, st.lists(st.integers(0, 4096), max_size=12), st.booleans())
def test_any_stream_in_any_chunks_parses_or_violates(data, cuts, banner):
    """Only ProtocolViolation escapes, every message can be read, and the buffer stays under the limit."""
    parser = MessageParser(banner=banner, max_line=MAX_LINE, max_message=MAX_MESSAGE)
    try:
        for chunk in _chunks(data, cuts):
            for message in parser.feed(chunk):
                _touch(message)
            assert len(parser._buffer) <= MAX_MESSAGE
    except ProtocolViolation:
        pass


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), min_size=1, max_size=10),
       st.sampled_from([b"\r\n", b"\n"]))
def test_header_like_blocks_keep_their_pairs(headers, end):
    """Blocks of ``Key: value`` lines, whatever the characters, come out as messages or a violation."""
    lines = [f"{k}: {v}".replace("\r", "").replace("\n", "").encode() for k, v in headers]
    data = end.join(lines) + end + end
    parser = MessageParser(max_line=MAX_LINE, max_message=MAX_MESSAGE)
    try:
        messages = parser.feed(data)
    except ProtocolViolation:
        return
    for message in messages:
        _touch(message)


def test_an_endless_line_is_refused_before_it_grows():
    """A peer sending one line forever is stopped once it passes the line limit, not at the message limit."""
    parser = MessageParser(max_line=MAX_LINE, max_message=MAX_MESSAGE)
    parser.feed(b"Event: X\r\nKey: ")
    refused = False
    for _ in range(MAX_MESSAGE // 64 + 2):
        try:
            parser.feed(b"v" * 64)
        except ProtocolViolation:
            refused = True
            break
    assert refused and len(parser._buffer) <= MAX_MESSAGE
