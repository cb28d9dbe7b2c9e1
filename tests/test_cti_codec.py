"""CTI wire format: line framing, strict request parsing, server messages, encoders, version negotiation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctid.protocols.cticodec import (
    MAX_ID_INT,
    CodecError,
    CTIError,
    ErrorCode,
    Event,
    Heartbeat,
    LineFramer,
    LineTooLong,
    Request,
    Response,
    encode_error,
    encode_event,
    encode_event_body,
    encode_heartbeat,
    encode_request,
    encode_result,
    event_line,
    is_name,
    negotiate_version,
    parse_request,
    parse_server_message,
    request_id_of,
)


def codec_error(line: bytes) -> CodecError:
    """The CodecError parse_request raises for ``line``."""
    with pytest.raises(CodecError) as caught:
        parse_request(line)
    return caught.value


# --- framing


def test_framer_splits_lines_and_drops_cr():
    """LF ends a line, a CR before it is dropped, a partial line waits for the rest."""
    framer = LineFramer(1024)
    assert list(framer.feed(b'{"a":1}\n{"b":2}\r\n{"c"')) == [b'{"a":1}', b'{"b":2}']
    assert framer.buffered == 4
    assert list(framer.feed(b":3}\r")) == []
    assert list(framer.feed(b"\n")) == [b'{"c":3}']
    assert framer.buffered == 0


def test_framer_accepts_exactly_max_line_with_or_without_cr():
    """A line of exactly max_line bytes is fine, also when CRLF-terminated and fed byte by byte."""
    framer = LineFramer(1024)
    line = b"x" * 1024
    assert list(framer.feed(line + b"\n")) == [line]
    out = []
    for byte in line + b"\r\n":
        out.extend(framer.feed(bytes([byte])))
    assert out == [line]


def test_framer_rejects_long_line_before_its_end():
    """A line past max_line raises as soon as the buffer shows it, without waiting for an LF."""
    framer = LineFramer(1024)
    with pytest.raises(LineTooLong):
        list(framer.feed(b"x" * 1026))


def test_framer_rejects_long_terminated_line_after_good_ones():
    """Complete lines before a too-long one are still yielded, in order, then LineTooLong."""
    framer = LineFramer(1024)
    seen = []
    with pytest.raises(LineTooLong):
        for line in framer.feed(b"{}\n" + b"y" * 1025 + b"\n"):
            seen.append(line)
    assert seen == [b"{}"]


# --- requests


@pytest.mark.parametrize("request_id", [1, 0, -5, MAX_ID_INT, "a", "req-42", "x" * 128, "中文"])
def test_valid_request_ids(request_id):
    """Strings of 1-128 characters and integers within ±(2**53-1) are request ids, echoed unchanged."""
    line = json.dumps({"id": request_id, "cmd": "MakeCall", "args": {"to": "1002"}}).encode()
    assert parse_request(line) == Request(request_id, "MakeCall", {"to": "1002"})


@pytest.mark.parametrize("request_id", [None, True, 1.5, "", "x" * 129, MAX_ID_INT + 1, [], {}])
def test_invalid_request_ids(request_id):
    """Null, booleans, floats, empty or over-long strings, huge integers and containers are refused."""
    error = codec_error(json.dumps({"id": request_id, "cmd": "Hello"}).encode())
    assert error.code == "bad_request" and error.request_id is None


def test_request_without_id():
    """A request must carry an id; without one the error has id null."""
    error = codec_error(b'{"cmd":"Hello"}')
    assert (error.code, error.request_id) == (ErrorCode.BAD_REQUEST, None)


def test_args_default_to_empty_object_and_crlf_is_fine():
    """``args`` may be left out; the framer has already stripped the CR."""
    framer = LineFramer()
    [line] = list(framer.feed(b'{"id":"h","cmd":"Heartbeat"}\r\n'))
    assert parse_request(line) == Request("h", "Heartbeat", {})


@pytest.mark.parametrize(
    "line, code",
    [
        (b"\xff\xfe{}", "bad_json"),
        (b'{"id":1,"cmd":"Hello"', "bad_json"),
        (b"", "bad_json"),
        (b"   ", "bad_json"),
        (b'{"id":1,"cmd":"Hello","args":{"x":NaN}}', "bad_json"),
        (b'{"id":1,"id":2,"cmd":"Hello"}', "bad_json"),
        (b"[" * 100_000 + b"]" * 100_000, "bad_json"),
        (b'{"id":' + b"1" * 5000 + b',"cmd":"Hello"}', "bad_json"),
        ('\ufeff{"id":1,"cmd":"Hello"}'.encode(), "bad_json"),
        ('{"id":1,"cmd":"Hello"}'.encode("utf-16"), "bad_json"),
        (b"[1,2]", "bad_request"),
        (b'"Hello"', "bad_request"),
        (b"42", "bad_request"),
        (b"null", "bad_request"),
    ],
)
def test_unreadable_lines(line, code):
    """Bad UTF-8 or JSON (NaN, duplicate keys, deep nesting, BOM, UTF-16 …) is bad_json; non-objects bad_request."""
    error = codec_error(line)
    assert error.code == code and error.request_id is None


@pytest.mark.parametrize(
    "message, why",
    [
        ({"id": 7, "cmd": "hello"}, "lower-case command"),
        ({"id": 7, "cmd": "Make Call"}, "space in command"),
        ({"id": 7, "cmd": 5}, "command not a string"),
        ({"id": 7}, "no command"),
        ({"id": 7, "cmd": "X" * 65}, "command too long"),
        ({"id": 7, "cmd": "Hello", "args": [1]}, "args not an object"),
        ({"id": 7, "cmd": "Hello", "args": None}, "args null"),
        ({"id": 7, "cmd": "Hello", "extra": 1}, "unknown member"),
    ],
)
def test_bad_requests_keep_their_id(message, why):
    """Once the id is read, envelope errors are bad_request answered with that id."""
    error = codec_error(json.dumps(message).encode())
    assert (error.code, error.request_id) == ("bad_request", 7), why
    assert request_id_of(json.dumps(message).encode()) == 7


def test_request_id_of_unreadable_line_is_none():
    """Lines without a readable id give None (the answer then carries id null)."""
    assert request_id_of(b"garbage") is None
    assert request_id_of(b'{"id":"a","cmd":"Ok"}') == "a"


def test_names():
    """Command and event names are PascalCase ASCII letters/digits, 1-64 characters."""
    assert is_name("MakeCall") and is_name("A") and is_name("SetAgentState2")
    assert not is_name("makeCall") and not is_name("Make_Call") and not is_name("") and not is_name(None)
    assert not is_name("É") and not is_name("MakeCall\n")


# --- encoders and server messages


def test_encoders_write_one_compact_utf8_line():
    """Every encoder writes one compact JSON object ending in LF, non-ASCII text as raw UTF-8."""
    line = encode_result("r1", {"name": "王小明", "text": "a\nb"})
    assert line == '{"id":"r1","ok":true,"result":{"name":"王小明","text":"a\\nb"}}\n'.encode()
    assert line.count(b"\n") == 1
    assert encode_heartbeat(12.5) == b'{"heartbeat":12.5}\n'
    assert encode_request(3, "Heartbeat") == b'{"id":3,"cmd":"Heartbeat"}\n'
    assert encode_request("a", "Echo", {"x": 1}) == b'{"id":"a","cmd":"Echo","args":{"x":1}}\n'


def test_lone_surrogate_falls_back_to_ascii_escapes():
    """A lone surrogate (legal in a JSON escape) cannot be UTF-8: the line is written ASCII-escaped instead."""
    line = encode_event("Note", 1, 0.0, {"text": "\ud800é"})
    assert line == b'{"seq":1,"event":"Note","at":0.0,"data":{"text":"\\ud800\\u00e9"}}\n'
    line.decode("utf-8")


def test_encoders_refuse_bad_values():
    """Bad names, NaN and non-JSON values raise at once, before anything is written."""
    with pytest.raises(ValueError):
        encode_event("bad name", 1, 0.0, {})
    with pytest.raises(ValueError):
        encode_result(1, {"x": float("nan")})
    with pytest.raises(TypeError):
        encode_result(1, {"x": object()})
    with pytest.raises(ValueError):
        encode_request(True, "Hello")


def test_server_messages_round_trip():
    """Responses, errors (with data), events and heartbeats read back as written; unknown kinds are None."""
    assert parse_server_message(encode_result(5, {"a": 1})) == Response(5, True, {"a": 1})
    error = parse_server_message(encode_error(None, CTIError("slow_consumer", "go faster", {"n": 1})))
    assert isinstance(error, Response) and error.id is None and not error.ok
    assert (error.error.code, error.error.message, error.error.data) == ("slow_consumer", "go faster", {"n": 1})
    assert parse_server_message(encode_event("CallAnswered", 3, 1.5, {"call": "c1"})) == Event(
        "CallAnswered", 3, 1.5, {"call": "c1"}
    )
    assert parse_server_message(encode_heartbeat(9.0)) == Heartbeat(9.0)
    assert parse_server_message(b'{"future":"thing"}') is None
    assert parse_server_message(b'{"id":1,"ok":true,"result":{},"extra":1}') == Response(1, True, {})


@pytest.mark.parametrize(
    "line",
    [
        b'{"event":"X","seq":0,"at":1,"data":{}}',
        b'{"event":"X","seq":true,"at":1,"data":{}}',
        b'{"event":"X","seq":1,"at":"now","data":{}}',
        b'{"event":"x","seq":1,"at":1,"data":{}}',
        b'{"id":1,"ok":"yes"}',
        b'{"id":1,"ok":false,"error":"nope"}',
        b'{"id":1,"ok":false,"error":{"code":"Bad Code","message":""}}',
        b'{"id":1,"ok":true,"result":[]}',
        b'{"heartbeat":"soon"}',
    ],
)
def test_malformed_server_messages(line):
    """Malformed events, responses and heartbeats raise CodecError on the client side."""
    with pytest.raises(CodecError):
        parse_server_message(line)


def test_error_codes_are_snake_case():
    """CTIError refuses codes that are not stable snake_case identifiers."""
    assert CTIError("agent_busy", "busy").as_dict() == {"code": "agent_busy", "message": "busy"}
    for bad in ("AgentBusy", "agent busy", "", "9lives"):
        with pytest.raises(ValueError):
            CTIError(bad, "x")


def test_version_negotiation_picks_highest_common():
    """The highest version both sides know wins; none in common gives None."""
    assert negotiate_version([1]) == 1
    assert negotiate_version([3, 1, 2], supported=(1, 2)) == 2
    assert negotiate_version([7, 8]) is None
    assert negotiate_version([]) is None


# --- property tests


@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_codec_errors(data):
    """Whatever bytes arrive, framing and parsing either succeed or raise LineTooLong/CodecError."""
    framer = LineFramer(1024)
    try:
        for line in framer.feed(data + b"\n"):
            try:
                parse_request(line)
            except CodecError as error:
                assert error.code in ("bad_json", "bad_request")
            try:
                parse_server_message(line)
            except CodecError:
                pass
    except LineTooLong:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)
_ids = st.integers(-MAX_ID_INT, MAX_ID_INT) | st.text(min_size=1, max_size=128).filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
)


@given(_ids, st.from_regex(r"[A-Z][A-Za-z0-9]{0,20}", fullmatch=True), st.dictionaries(st.text(), _json, max_size=4))
def test_requests_round_trip(request_id, command, args):
    """Any valid request encodes to one line that frames and parses back to the same request."""
    line = encode_request(request_id, command, args)
    [framed] = list(LineFramer(1 << 20).feed(line))
    assert parse_request(framed) == Request(request_id, command, args)


def test_event_body_is_encoded_once_and_numbered_per_line():
    """The body is the line without ``{"seq":n``; event_line puts any seq first, the rest unchanged."""
    body = encode_event_body("AgentStateChanged", 2.5, {"agent": "1001"})
    assert body == b',"event":"AgentStateChanged","at":2.5,"data":{"agent":"1001"}}\n'
    assert event_line(7, body) == b'{"seq":7,"event":"AgentStateChanged","at":2.5,"data":{"agent":"1001"}}\n'
    assert event_line(7, body) == encode_event("AgentStateChanged", 7, 2.5, {"agent": "1001"})
    with pytest.raises(ValueError):
        encode_event_body("not a name", 0.0, {})


@given(st.integers(1, 2**63), st.from_regex(r"[A-Z][A-Za-z0-9]{0,20}", fullmatch=True),
       st.floats(0, 4e9), st.dictionaries(st.text(), _json, max_size=4))
def test_numbered_event_bodies_round_trip(seq, name, at, data):
    """Any body numbered with any seq is one line that reads back as the event."""
    line = event_line(seq, encode_event_body(name, at, data))
    [framed] = list(LineFramer(1 << 20).feed(line))
    assert parse_server_message(framed) == Event(name, seq, at, data)
