"""Hostile input for FastAGI: the line readers raise only AGIProtocolError and stay bounded; a connection fed
any bytes never lets an exception out of the protocol, and its script sees only AGI errors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ctid.protocols.agiwire import (
    MAX_USAGE_LINES,
    AGIError,
    AGIProtocolError,
    EnvironmentReader,
    ReplyReader,
    split_command,
)
from ctid.protocols.fastagi import FastAGIProtocol

FUZZ = settings(max_examples=150, deadline=None)

_LINE = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["", "HANGUP", "200 result=1", "200 result=-1 (timeout) endpos=12", "520-Invalid command",
                     "520 End of proper usage.", "511 Command Not Permitted", "510 Invalid", "agi_channel: SIP/1",
                     "agi_network_script: bank", "agi_request: agi://h/bank?x=1", "200 result=1 (", "5200 x",
                     "200-result=1", "agi_: ", "agi_arg_1: \x00"]),
)


@FUZZ
@given(st.lists(_LINE, max_size=40))
def test_reply_reader_takes_any_lines(lines):
    """Each line gives a reply, a failure, HANGUP, None (inside a usage block) or AGIProtocolError."""
    reader = ReplyReader()
    for line in lines:
        try:
            reader.feed(line)
        except AGIProtocolError:
            reader = ReplyReader()  # the protocol drops the connection; start a fresh one
    assert len(reader._usage or ()) <= MAX_USAGE_LINES


@FUZZ
@given(st.lists(_LINE, max_size=40))
def test_environment_reader_takes_any_lines(lines):
    """Environment lines give an environment, nothing yet, or AGIProtocolError; its accessors never fail."""
    reader = EnvironmentReader()
    for line in lines:
        try:
            env = reader.feed(line)
        except AGIProtocolError:
            return
        if env is not None:
            seen = (env.script, env.query, env.args, env.channel, env.uniqueid, env.callerid, env.dnid, env.language)
            assert len(seen) == 8
            return


@FUZZ
@given(st.text(max_size=200))
def test_split_command_takes_any_text(line):
    """The simulator's command splitter gives words or AGIProtocolError."""
    try:
        split_command(line)
    except AGIProtocolError:
        pass


_CHUNK = st.one_of(st.binary(max_size=64), st.sampled_from([
    b"agi_network_script: bank\n", b"agi_channel: PJSIP/1-1\n", b"agi_uniqueid: 1.1\n", b"\n", b"\r\n",
    b"200 result=0\n", b"HANGUP\n", b"520-Invalid\n", b"520 End of proper usage.\n", b"x" * 20000,
]))


@FUZZ
@given(st.lists(_CHUNK, max_size=25))
def test_a_connection_fed_any_bytes_never_raises(chunks):
    """dataReceived never raises; the script's commands fail only with AGI errors; nothing is logged as an error
    (the autouse fixture checks); the connection is dropped or still usable."""
    outcomes = []

    async def script(session):
        for _ in range(3):
            try:
                await session.answer()
                outcomes.append("ok")
            except AGIError as e:
                outcomes.append(type(e).__name__)
                return

    clock = Clock()
    protocol = FastAGIProtocol(script, clock, command_timeout=1.0, env_timeout=5.0)
    transport = StringTransport()
    protocol.makeConnection(transport)
    for chunk in chunks:
        if transport.disconnecting:
            break
        protocol.dataReceived(chunk)
    clock.advance(10)
    if not transport.disconnecting:
        transport.loseConnection()
    protocol.connectionLost(None)
    assert set(outcomes) <= {"ok", "AGIHangupError", "AGIProtocolError", "AGITimeoutError", "AGICommandError",
                             "AGIDeadChannelError", "AGIUsageError"}
