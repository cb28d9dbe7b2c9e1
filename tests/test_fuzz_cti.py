"""Hostile input for the CTI protocol: the codec raises only its documented errors, the framer stays bounded,
and a server connection fed any bytes answers, closes or waits — never raises — while another client is served."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ctid.protocols.cti import CommandRouter, CTIServerFactory
from ctid.protocols.cticodec import (
    CodecError,
    LineFramer,
    LineTooLong,
    parse_request,
    parse_server_message,
    request_id_of,
)

FUZZ = settings(max_examples=150, deadline=None)
MAX_LINE = 1024

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_REQUESTISH = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.integers(), st.text(max_size=130), _JSON),
    "cmd": st.one_of(st.sampled_from(["Hello", "Login", "Echo", "Bye", "Resume", "Heartbeat", "bad name"]), _JSON),
    "args": st.one_of(st.fixed_dictionaries({}, optional={"versions": _JSON, "client": _JSON, "session": _JSON,
                                                          "last_seq": _JSON}), _JSON),
    "extra": _JSON,
})
_LINE = st.one_of(st.binary(max_size=120), _REQUESTISH.map(lambda m: json.dumps(m).encode()),
                  st.sampled_from([b"[" * 5000, b'{"id":1,"cmd":"Hello","args":{"versions":[1]}}', b"NaN",
                                   b'{"id":1,"id":2}', b"\xc3\x28", b'{"id":"\\ud800","cmd":"Echo"}']))


@FUZZ
@given(_LINE)
def test_parse_request_raises_only_codec_errors(line):
    """A line is a request or a CodecError (bad_json / bad_request); request_id_of never raises."""
    try:
        request = parse_request(line)
    except CodecError as error:
        assert error.code in ("bad_json", "bad_request")
    else:
        assert isinstance(request.args, dict)
    request_id_of(line)


@FUZZ
@given(_LINE)
def test_client_side_parsing_raises_only_codec_errors(line):
    """The client library's reader of server lines is as strict and as safe."""
    try:
        parse_server_message(line)
    except CodecError:
        pass


@FUZZ
@given(st.lists(st.binary(max_size=600) | st.sampled_from([b"\n", b"\r\n", b"\r"]), max_size=30))
def test_the_framer_is_bounded(chunks):
    """Lines come out at most max_line long and the buffer never passes max_line + 1, or LineTooLong."""
    framer = LineFramer(MAX_LINE)
    try:
        for chunk in chunks:
            for line in framer.feed(chunk):
                assert len(line) <= MAX_LINE
            assert framer.buffered <= MAX_LINE + 1
    except LineTooLong:
        pass


class _Echo(CommandRouter):
    def __init__(self):
        super().__init__()
        self.add("Echo", lambda session, args: {"echo": args}, login=False)


def _connect(factory, host="10.0.0.1", port=1000):
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
    protocol.makeConnection(transport)
    return protocol, transport


def _answers(transport):
    return [json.loads(line) for line in transport.value().splitlines() if line]


@FUZZ
@given(st.lists(st.one_of(_LINE.map(lambda line: line + b"\n"), st.binary(max_size=200)), max_size=25))
def test_a_hostile_connection_never_raises_and_others_are_served(chunks):
    """Garbage on one connection is answered or closes it; a second client's Hello and Echo still work."""
    clock = Clock()
    factory = CTIServerFactory(_Echo(), clock, server_version="ctid/test", max_line=MAX_LINE, rate=1000, burst=1000,
                               max_pending_bytes=64 * 1024)
    hostile, transport = _connect(factory)
    for chunk in chunks:
        if hostile.closing:
            break
        hostile.dataReceived(chunk)
        clock.advance(0.001)
    assert len(transport.value()) < 64 * 1024 + 4 * MAX_LINE
    for line in transport.value().splitlines():
        assert len(line) <= MAX_LINE + 1
        json.loads(line)
    good, good_transport = _connect(factory, "10.0.0.2")
    good.dataReceived(b'{"id":1,"cmd":"Hello","args":{"versions":[1]}}\n{"id":2,"cmd":"Echo","args":{"x":1}}\n')
    clock.advance(0.01)
    assert [a.get("ok") for a in _answers(good_transport)] == [True, True]
    for protocol, t in ((hostile, transport), (good, good_transport)):
        if not protocol.closing:
            t.loseConnection()
        protocol.connectionLost(None)
    clock.advance(120)
    assert not factory.connections
