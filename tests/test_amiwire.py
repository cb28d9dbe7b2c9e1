"""The AMI wire format: framing, header lookup, legacy bodies, limits and serialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctid.protocols.amiwire import (
    Message,
    MessageParser,
    ProtocolViolation,
    encode_message,
    format_message,
    iter_messages,
    split_header,
)

CAPTURES = Path(__file__).parent / "data" / "captures"
SESSION = (CAPTURES / "ami-session.txt").read_bytes()
PARK = (CAPTURES / "park-redirect.txt").read_bytes()


def feed_in_chunks(data: bytes, size: int, banner: bool = True) -> list[Message]:
    parser = MessageParser(banner=banner)
    messages: list[Message] = []
    for start in range(0, len(data), size):
        messages.extend(parser.feed(data[start : start + size]))
    return messages


def count_starts(raw: bytes, prefix: bytes) -> int:
    return sum(1 for line in raw.split(b"\r\n") if line.startswith(prefix))


@pytest.mark.parametrize("raw", [SESSION, PARK], ids=["ami-session", "park-redirect"])
def test_capture_parses_into_every_message(raw):
    """Every Event/Response block of a real Asterisk 22 capture comes out as one message, in order."""
    parser = MessageParser(banner=True)
    messages = parser.feed(raw)
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert sum(m.event is not None for m in messages) == count_starts(raw, b"Event: ")
    assert sum(m.response is not None for m in messages) == count_starts(raw, b"Response: ") - sum(
        m.event == "OriginateResponse" for m in messages
    )
    assert all(m.event is not None or m.response is not None for m in messages)


def test_capture_fields_from_session():
    """Fields of the session capture read back exactly, including empty values and repeated Output."""
    messages = list(iter_messages(SESSION))
    first = messages[0]
    assert (first.response, first.action_id, first["Message"]) == ("Success", "l1", "Authentication accepted")
    settings_ = next(m for m in messages if m.action_id == "cs")
    assert settings_.get("SystemName") == "" and settings_.get("CoreRunUser") == ""
    command = next(m for m in messages if m.action_id == "cmd")
    assert command.getall("Output") == [
        "Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-22 10:16:47 UTC"
    ]
    items = [m for m in messages if m.event == "CoreShowChannel"]
    assert [m["Uniqueid"] for m in items] == ["1795342906.2", "1795342906.3", "1795342906.1", "1795342906.0"]
    originated = [m for m in messages if m.event == "OriginateResponse"]
    assert [(m.action_id, m.get("Response"), m.response) for m in originated] == [
        ("o1", "Success", None),
        ("o2", "Success", None),
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 4096])
def test_rechunked_capture_gives_same_messages(size):
    """Feeding the capture in any chunk size (even byte by byte) yields the same messages."""
    whole = MessageParser(banner=True).feed(SESSION)
    assert feed_in_chunks(SESSION, size) == whole


def test_bare_lf_equals_crlf():
    """Bare LF line endings parse exactly like CRLF."""
    assert MessageParser(banner=True).feed(PARK.replace(b"\r\n", b"\n")) == MessageParser(banner=True).feed(PARK)


def test_banner_waits_for_its_line_end():
    """The banner is only taken once its line ends; the first message follows without a blank line."""
    parser = MessageParser(banner=True)
    assert parser.feed(b"Asterisk Call Man") == [] and parser.banner is None
    assert parser.feed(b"ager/9.0.0\r\nResponse: Success\r\n") == []
    assert parser.banner == "Asterisk Call Manager/9.0.0"
    assert parser.feed(b"\r\n") == [Message.build([("Response", "Success")])]


def test_header_lookup_is_case_insensitive_and_keeps_repeats():
    """get() ignores key case and returns the first value; getall() returns every value in order."""
    message = Message.build([("Event", "Status"), ("UniqueID", "1.1"), ("Variable", "A=1"), ("Variable", "B=2")])
    assert message.get("uniqueid") == message["Uniqueid"] == "1.1"
    assert message.getall("VARIABLE") == ["A=1", "B=2"]
    assert message.get("Missing") is None and message.get("Missing", "x") == "x"
    assert "variable" in message and "Missing" not in message
    with pytest.raises(KeyError):
        message["Missing"]


def test_absent_header_lookup_does_not_parse_every_line():
    """Looking up a header that isn't there answers None without splitting the message into pairs."""
    message = Message("Event: Newexten\nnot a header line\nExten: 100")
    assert message.get("ActionID") is None and message.action_id is None
    assert message.get("Exten") == "100"


def test_split_header_at_first_colon():
    """A header splits at its first colon and drops exactly one following space."""
    assert split_header("Output: a: b") == ("Output", "a: b")
    assert split_header("Key:value") == ("Key", "value")
    assert split_header("AccountCode: ") == ("AccountCode", "")
    assert split_header("Data:  two spaces ") == ("Data", " two spaces ")
    assert split_header("Weird:key: x") == ("Weird", "key: x")
    with pytest.raises(ProtocolViolation):
        split_header("no colon at all")


LEGACY_COMMAND = (
    b"Response: Follows\r\nPrivilege: Command\r\nActionID: c1\r\n"
    b"System uptime: 46 minutes, 2 seconds\nLast reload: 46 minutes\n\n--END COMMAND--\r\n\r\n"
    b"Event: Ping\r\n\r\n"
)


@pytest.mark.parametrize("size", [1, 5, 1000])
@pytest.mark.parametrize("first", [b"", b"Response: Success\r\nActionID: l1\r\n\r\n"], ids=["alone", "after-crlf"])
def test_legacy_follows_body(size, first):
    """A legacy Response: Follows keeps its raw body lines (even key: value looking ones and blank ones).

    Alone, its bare-LF blank body line makes the parser pick LF mode; after a
    CRLF message (a real session) it is read in CRLF mode.  Same result.
    """
    *_, command, after = feed_in_chunks(first + LEGACY_COMMAND, size, banner=False)
    assert (command.response, command.action_id, command.get("Privilege")) == ("Follows", "c1", "Command")
    assert command.body == ["System uptime: 46 minutes, 2 seconds", "Last reload: 46 minutes", ""]
    assert command.get("System uptime") is None
    assert after.event == "Ping"


def test_legacy_follows_glued_end_and_empty_body():
    """--END COMMAND-- glued to the last line is split off; an empty Follows closes on its blank line."""
    glued = b"Response: Follows\r\nActionID: c2\r\nNo such command 'x'--END COMMAND--\r\n\r\n"
    empty = b"Response: Follows\r\nPrivilege: Command\r\nActionID: c3\r\n\r\n"
    first, second = MessageParser().feed(glued + empty)
    assert first.body == ["No such command 'x'"]
    assert (second.action_id, second.body) == ("c3", [])


def test_encode_message_roundtrip():
    """encode_message() bytes parse back to an equal message (with and without a Follows body)."""
    plain = Message.build([("Event", "Newstate"), ("Channel", "PJSIP/1-1"), ("AccountCode", "")])
    follows = Message("Response: Follows\nActionID: x", ["line one", "key: value"])
    assert MessageParser().feed(encode_message(plain) + encode_message(follows)) == [plain, follows]


def test_format_message_keeps_pairs_and_rejects_crlf():
    """format_message writes CRLF lines in pair order (repeats kept) and refuses CR/LF inside a value."""
    data = format_message([("Action", "Originate"), ("Variable", "A=1"), ("Variable", "B=2")])
    assert data == b"Action: Originate\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
    with pytest.raises(ValueError):
        format_message({"Action": "Login", "Secret": "x\r\nAction: Logoff"})
    with pytest.raises(ValueError):
        format_message({"Action": "Command", "Command": "a\nb"})


@pytest.mark.parametrize("chunked", [False, True])
def test_line_too_long_is_rejected(chunked):
    """A line over the limit raises ProtocolViolation, whether it arrives complete or piecemeal."""
    parser = MessageParser(banner=False, max_line=100)
    data = b"Event: X\r\nBig: " + b"x" * 200 + b"\r\n\r\n"
    with pytest.raises(ProtocolViolation):
        if chunked:
            for start in range(0, len(data), 10):
                parser.feed(data[start : start + 10])
        else:
            parser.feed(data)


def test_unterminated_line_too_long_is_rejected():
    """A line that never ends is rejected once it passes the limit, before the buffer grows unbounded."""
    parser = MessageParser(banner=True, max_line=1024)
    with pytest.raises(ProtocolViolation):
        for _ in range(100):
            parser.feed(b"y" * 100)


@pytest.mark.parametrize("chunked", [False, True])
def test_message_too_long_is_rejected(chunked):
    """A message over max_message raises ProtocolViolation, complete or piecemeal."""
    parser = MessageParser(banner=False, max_line=100, max_message=2000)
    data = b"Event: X\r\n" + b"Key: value\r\n" * 300 + b"\r\n"
    with pytest.raises(ProtocolViolation):
        if chunked:
            for start in range(0, len(data), 64):
                parser.feed(data[start : start + 64])
        else:
            parser.feed(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20), st.booleans())
def test_arbitrary_bytes_raise_only_protocol_violation(chunks, banner):
    """Whatever bytes arrive, feed() either returns messages or raises ProtocolViolation."""
    parser = MessageParser(banner=banner, max_line=300, max_message=1000)
    try:
        for chunk in chunks:
            for message in parser.feed(chunk):
                assert isinstance((message.event, message.response, message.action_id, message.text), tuple)
    except ProtocolViolation:
        pass


_key = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters=":\r\n"), min_size=1, max_size=12
)
_value = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\r\n"), max_size=30)
_message = st.lists(st.tuples(_key, _value), min_size=1, max_size=8).map(
    lambda pairs: [("Event" if i == 0 else k, v if i else v or "E") for i, (k, v) in enumerate(pairs)]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_message, min_size=1, max_size=6), st.lists(st.integers(1, 50), min_size=1, max_size=30), st.booleans())
def test_rechunking_valid_stream_is_invisible(messages, cuts, bare_lf):
    """A valid stream cut at arbitrary points parses to the same messages as in one piece."""
    stream = b"Asterisk Call Manager/11.0.0\r\n" + b"".join(format_message(m) for m in messages)
    if bare_lf:
        stream = stream.replace(b"\r\n", b"\n")
    expected = [Message.build(m) for m in messages]
    assert MessageParser(banner=True).feed(stream) == expected
    parser, got, position = MessageParser(banner=True), [], 0
    for cut in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        got.extend(parser.feed(stream[position : position + cut]))
        position += cut
    got.extend(parser.feed(stream[position:]))
    assert got == expected


def test_crlf_message_views():
    """A message parsed from CRLF keeps no CR in values, text, pairs or its encoding, and equals its LF twin."""
    raw = b"Event: Status\r\nChannel: PJSIP/1-1\r\nVariable: A=1\r\nVariable: B=2\r\nAccountCode: \r\n\r\n"
    (crlf,) = MessageParser().feed(raw)
    (lf,) = MessageParser().feed(raw.replace(b"\r\n", b"\n"))
    assert crlf == lf and crlf.event == "Status" and crlf.get("accountcode") == ""
    assert crlf.getall("Variable") == ["A=1", "B=2"] and "\r" not in crlf.text
    assert encode_message(crlf) == raw


def test_line_end_style_follows_first_message():
    """The style comes from the first message's blank line: a CRLF banner may be followed by LF messages."""
    parser = MessageParser(banner=True)
    (message,) = parser.feed(b"Asterisk Call Manager/11.0.0\r\nEvent: A\nX: 1\n\n")
    assert parser.banner == "Asterisk Call Manager/11.0.0" and message.get("X") == "1"


def test_crlf_stream_turning_to_bare_lf_is_rejected():
    """A CRLF stream that later ends messages with bare LF blank lines trips max_message (documented limit)."""
    parser = MessageParser(max_line=100, max_message=2000)
    assert len(parser.feed(b"Event: A\r\n\r\n")) == 1
    with pytest.raises(ProtocolViolation):
        for _ in range(200):
            parser.feed(b"Event: B\nX: 1\n\n")
