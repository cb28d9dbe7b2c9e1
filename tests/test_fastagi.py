"""FastAGI server: protocol framing and pairing, the session API, the factory and script routing."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ctid.protocols.agiwire import split_command
from ctid.protocols.fastagi import (
    AGICommandError,
    AGIDeadChannelError,
    AGIHangupError,
    AGIProtocolError,
    AGIReply,
    AGISession,
    AGITimeoutError,
    AGIUsageError,
    FastAGIFactory,
    FastAGIProtocol,
    State,
    write_now,
)

CAPTURE = Path(__file__).parent / "data" / "captures" / "fastagi.txt"

ENV = [
    "agi_network: yes",
    "agi_network_script: bank",
    "agi_request: agi://127.0.0.1:4573/bank",
    "agi_channel: PJSIP/trunk-00000001",
    "agi_uniqueid: 1795342906.7",
    "agi_callerid: 0612345678",
    "agi_accountcode: ",
    "agi_arg_1: fr",
    "",
]


def transcript() -> list[tuple[str, str]]:
    """The real capture as (direction, text) pairs: '<<' from Asterisk, '>>' to Asterisk."""
    return [(raw[:2], raw[3:]) for raw in CAPTURE.read_text().splitlines()]


@pytest.fixture
def events():
    """Every log event emitted during the test."""
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


class Harness:
    """A FastAGIProtocol on a StringTransport and a Clock, with a handler the test controls."""

    def __init__(self, handler=None, env=ENV, command_timeout=30.0, trace=None, log_commands=False):
        self.clock = Clock()
        self.sessions: list[AGISession] = []
        self.finish: Deferred = Deferred()
        self.protocol = FastAGIProtocol(handler or self._hold, self.clock, command_timeout=command_timeout, trace=trace,
                                        log_commands=log_commands)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        if env:
            self.feed(*env)

    def _hold(self, session):
        self.sessions.append(session)
        return self.finish

    @property
    def session(self) -> AGISession:
        return self.sessions[0]

    def feed(self, *lines: str, end: str = "\n") -> None:
        self.protocol.dataReceived("".join(line + end for line in lines).encode())

    def written(self) -> list[bytes]:
        """The lines written since the last call, each with its LF."""
        data = self.transport.value()
        self.transport.clear()
        return [line + b"\n" for line in data.split(b"\n")[:-1]]

    def close(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionError("closed")))


def run(coroutine) -> Deferred:
    """Start a session coroutine the way a script's caller would."""
    return Deferred.fromCoroutine(coroutine)


def result_of(d: Deferred):
    """The result of a Deferred that must already have succeeded."""
    out: list = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def failure_of(d: Deferred, *kinds) -> Failure:
    """The failure of a Deferred that must already have failed with one of ``kinds``."""
    out: list = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    assert isinstance(out[0], Failure), f"expected a failure, got {out[0]!r}"
    assert out[0].check(*kinds), out[0]
    return out[0]


# --- the real transcript


def play_transcript(h: Harness, feed) -> list:
    """Drive the capture's script through ``h``; ``feed`` delivers Asterisk's lines."""
    results: list = []

    async def script(session):
        results.append(await session.answer())
        results.append(await session.get_data("beep", 3000, 7))
        results.append(await session.say_digits(42))
        results.append(await session.get_variable("CALLERID(num)"))
        results.append(await session.noop("x"))
        results.append(await session.hangup())

    h.protocol._handler = script
    steps = transcript()
    replies: list[str] = []
    for direction, text in steps:
        if direction == "<<":
            replies.append(text)
            continue
        feed(replies)
        replies = []
        (line,) = h.written()
        assert line.endswith(b"\n") and b"\r" not in line
        assert split_command(line[:-1].decode()) == split_command(text), (line, text)
    feed(replies)
    return results


def test_transcript_replay():
    """The captured Asterisk 22 session replays: env parsed, commands as Asterisk reads them, replies parsed."""
    h = Harness(env=None)
    results = play_transcript(h, lambda lines: h.feed(*lines))
    env = h.protocol.session.env
    assert env["agi_accountcode"] == "" and env["agi_version"] == "22.10.1" and env.script == "bank"
    assert results == [None, ("123456", False), None, "02112345678", None, None]
    assert h.transport.disconnecting, "the socket closes when the script ends (back to the dialplan)"
    assert result_of(h.protocol.handler_done) is None
    h.close()


def test_commands_are_quoted_on_the_wire():
    """Each argument is double-quoted and the line ends with LF only."""
    h = Harness()
    run(h.session.say_digits(42))
    run(h.session.get_variable("CALLERID(num)"))
    h.feed("200 result=0")
    h.feed('200 result=1 (a "b" (c))')
    assert h.transport.value() == b'SAY DIGITS "42" ""\nGET VARIABLE "CALLERID(num)"\n'


def test_transcript_byte_by_byte():
    """Lines split across reads in any place (here one byte at a time) are reassembled."""
    h = Harness(env=None)

    def trickle(lines):
        for byte in "".join(line + "\n" for line in lines).encode():
            h.protocol.dataReceived(bytes([byte]))

    assert play_transcript(h, trickle)[1] == ("123456", False)


def test_crlf_is_tolerated():
    """A trailing CR on Asterisk's lines is stripped from values and replies."""
    h = Harness(env=None)
    h.feed(*ENV, end="\r\n")
    assert h.session.env["agi_accountcode"] == "" and h.session.env.uniqueid == "1795342906.7"
    d = run(h.session.get_variable("X"))
    h.feed("200 result=1 (v)", end="\r\n")
    assert result_of(d) == "v"


# --- hang-up


def test_hangup_mid_command_keeps_pairing_and_blocks_new_media_commands():
    """HANGUP during STREAM FILE is a flag: the command gets its own -1 reply, later media commands are not sent."""
    h = Harness()
    notified = h.session.when_hung_up()
    playing = run(h.session.stream_file("welcome"))
    h.written()
    h.feed("HANGUP")
    assert h.session.hung_up and notified.called and not playing.called
    h.feed("200 result=-1 endpos=1234")
    failure_of(playing, AGIHangupError)
    assert h.session.last_reply.endpos == 1234
    failure_of(run(h.session.answer()), AGIHangupError)
    failure_of(run(h.session.get_data("menu")), AGIHangupError)
    assert h.written() == [], "commands refused after HANGUP are never written"
    d = run(h.session.get_variable("CTID_MENU"))
    assert h.written() == [b'GET VARIABLE "CTID_MENU"\n'], "dead-safe commands still go out"
    h.feed("200 result=0")
    assert result_of(d) is None


def test_reply_before_hangup_is_still_reported_as_hangup():
    """When -1 arrives before HANGUP, a dead-safe NOOP tells a hang-up from a failed command."""
    h = Harness()
    playing = run(h.session.stream_file("welcome"))
    h.written()
    h.feed("200 result=-1 endpos=800")
    assert h.written() == [b"NOOP\n"] and not playing.called
    h.feed("HANGUP", "200 result=0")
    failure_of(playing, AGIHangupError)


def test_minus_one_without_hangup_is_a_command_error():
    """A missing sound file (-1, no HANGUP) is an AGICommandError, not a hang-up."""
    h = Harness()
    playing = run(h.session.stream_file("no-such-file"))
    h.feed("200 result=-1 endpos=0")
    h.feed("200 result=0")
    error = failure_of(playing, AGICommandError).value
    assert error.code == -1 and error.command == "STREAM FILE"
    assert not h.session.hung_up


def test_hangup_while_idle():
    """A bare HANGUP with nothing in flight sets the flag and fires the notification, nothing else."""
    h = Harness()
    h.feed("HANGUP")
    assert h.session.hung_up and h.session.when_hung_up().called
    assert not h.transport.disconnecting
    h.feed("HANGUP")  # the final one Asterisk sends at the end: ignored
    assert not h.transport.disconnecting
    assert result_of(run(h.session.hangup())) is None
    assert h.written() == [], "hanging up an already hung-up channel sends nothing"


def test_queued_media_commands_fail_when_hangup_arrives():
    """Commands queued behind the one in flight are refused at HANGUP unless dead-safe."""
    h = Harness()
    first = run(h.session.get_variable("A"))
    media = run(h.session.say_number(5))
    safe = run(h.session.set_variable("B", "1"))
    h.feed("HANGUP")
    failure_of(media, AGIHangupError)
    h.feed("200 result=1 (a)")
    assert result_of(first) == "a"
    assert h.written() == [b'GET VARIABLE "A"\n', b'SET VARIABLE "B" "1"\n']
    h.feed("200 result=1")
    assert result_of(safe) is None


def test_socket_closed_mid_command():
    """Losing the connection fails the command in flight and the queued ones with AGIHangupError."""
    h = Harness()
    notified = h.session.when_hung_up()
    in_flight = run(h.session.get_data("menu", 5000, 4))
    queued = run(h.session.answer())
    h.close()
    failure_of(in_flight, AGIHangupError)
    failure_of(queued, AGIHangupError)
    assert notified.called and h.protocol.state is State.CLOSED
    failure_of(run(h.session.noop()), AGIHangupError)


# --- errors


def test_510_unknown_command():
    """510 errbacks the command with AGICommandError(510)."""
    h = Harness()
    d = run(h.session.send_command("TOTALLY BOGUS"))
    h.feed("510 Invalid or unknown command")
    assert failure_of(d, AGICommandError).value.code == 510


def test_511_dead_channel():
    """511 errbacks with AGIDeadChannelError, which is also an AGIHangupError."""
    h = Harness()
    d = run(h.session.answer())
    h.feed("511 Command Not Permitted on a dead channel or intercept routine")
    failure_of(d, AGIDeadChannelError, AGIHangupError)


def test_520_single_line():
    """A one-line 520 is an AGIUsageError with empty usage."""
    h = Harness()
    d = run(h.session.send_command("GET DATA"))
    h.feed("520 Invalid command syntax.  Proper usage not available.")
    assert failure_of(d, AGIUsageError).value.usage == ""


def test_520_block_is_one_error_and_the_next_command_pairs_with_its_own_reply():
    """The whole usage block fails one command; the following command gets the following reply."""
    moves = []
    h = Harness(trace=lambda old, new: moves.append(new))
    bad = run(h.session.send_command("GET DATA"))
    good = run(h.session.get_variable("X"))
    assert h.written() == [b"GET DATA\n"]
    h.feed(
        "520-Invalid command syntax.  Proper usage follows:",
        " Usage: GET DATA <file> [timeout] [maxdigits]",
        " Stream the given file, and receive DTMF data.",
        "520 End of proper usage.",
    )
    usage = failure_of(bad, AGIUsageError).value.usage
    assert usage == " Usage: GET DATA <file> [timeout] [maxdigits]\n Stream the given file, and receive DTMF data."
    assert h.written() == [b'GET VARIABLE "X"\n']
    h.feed("200 result=1 (x)")
    assert result_of(good) == "x"
    assert moves == [
        State.READY,
        State.WAITING_REPLY,
        State.READING_520_USAGE,
        State.READY,
        State.WAITING_REPLY,
        State.READY,
    ]


def test_520_glued_pre_13_17():
    """The old form with '520 End of proper usage.' glued to the last usage line also ends the block."""
    h = Harness()
    bad = run(h.session.send_command("ANSWER", "extra"))
    good = run(h.session.noop())
    h.feed("520-Invalid command syntax.  Proper usage follows:", " Usage: ANSWER520 End of proper usage.")
    assert failure_of(bad, AGIUsageError).value.usage == " Usage: ANSWER"
    h.feed("200 result=0")
    assert result_of(good) is None


def test_execute_joins_arguments_and_reports_missing_application():
    """EXEC gets one comma-joined argument; result -2 means the application does not exist."""
    h = Harness()
    d = run(h.session.execute("Dial", "PJSIP/1001", 30, "tT"))
    assert h.written() == [b'EXEC "Dial" "PJSIP/1001,30,tT"\n']
    h.feed("200 result=0")
    assert result_of(d) == "0"
    d = run(h.session.execute("NoSuchApp"))
    assert h.written() == [b'EXEC "NoSuchApp"\n']
    h.feed("200 result=-2")
    error = failure_of(d, AGICommandError).value
    assert error.code == -2 and "not found" in str(error)


def test_unwritable_arguments_fail_without_writing():
    """An argument with a newline is refused locally (ValueError) and nothing reaches Asterisk."""
    h = Harness()
    failure_of(run(h.session.verbose("two\nlines")), ValueError)
    assert h.written() == []
    d = run(h.session.noop())
    assert h.written() == [b"NOOP\n"], "the connection is still usable"
    h.feed("200 result=0")
    result_of(d)


def test_session_helpers_on_the_wire():
    """Each helper writes the documented command and reads the documented result."""
    h = Harness()
    cases = [
        (
            h.session.stream_file("ctid/welcome", "12"),
            b'STREAM FILE "ctid/welcome" "12"\n',
            "200 result=50 endpos=9",
            "2",
        ),
        (h.session.wait_for_digit(3000), b'WAIT FOR DIGIT "3000"\n', "200 result=0", None),
        (h.session.say_alpha("ab"), b'SAY ALPHA "ab" ""\n', "200 result=0", None),
        (h.session.say_number(12, "#"), b'SAY NUMBER "12" "#"\n', "200 result=35", "#"),
        (h.session.set_music(True, "bank"), b'SET MUSIC "on" "bank"\n', "200 result=0", None),
        (h.session.verbose("hello", 3), b'VERBOSE "hello" "3"\n', "200 result=1", None),
        (h.session.get_data("menu", 2000), b'GET DATA "menu" "2000"\n', "200 result= (timeout)", ("", True)),
        (h.session.get_full_variable("${X}"), b'GET FULL VARIABLE "${X}"\n', "200 result=1 (y z)", "y z"),
        (h.session.answer(), b"ANSWER\n", "200 result=0", None),
    ]
    for coroutine, line, reply, expected in cases:
        d = run(coroutine)
        assert h.written() == [line]
        h.feed(reply)
        assert result_of(d) == expected
    d = run(h.session.record_file("msg", silence_s=3))
    assert h.written() == [b'RECORD FILE "msg" "wav" "#" "-1" "BEEP" "s=3"\n']
    h.feed("200 result=0 (timeout) endpos=16000")
    assert result_of(d).endpos == 16000


# --- one command at a time, timeouts, cancellation


def test_only_one_command_on_the_wire():
    """Two concurrent commands: the second is written only after the first one's reply."""
    h = Harness()
    both = gatherResults([run(h.session.stream_file("a")), run(h.session.get_variable("B"))])
    assert h.written() == [b'STREAM FILE "a" ""\n']
    h.feed("200 result=0 endpos=100")
    assert h.written() == [b'GET VARIABLE "B"\n']
    h.feed("200 result=1 (b)")
    assert result_of(both) == [None, "b"]


def test_command_timeout_drops_the_connection(events):
    """No reply in time: AGITimeoutError, connection aborted, a warning logged, queued commands fail."""
    h = Harness(command_timeout=30.0)
    stuck = run(h.session.answer())
    queued = run(h.session.noop())
    h.clock.advance(29.9)
    assert not stuck.called
    h.clock.advance(0.2)
    failure_of(stuck, AGITimeoutError)
    assert h.transport.disconnecting
    assert any(e.get("log_level") is LogLevel.warn and e.get("command") == "ANSWER" for e in events)
    h.feed("200 result=0")  # too late: ignored
    h.close()
    failure_of(queued, AGIHangupError)


def test_get_data_timer_includes_its_own_digit_timeouts():
    """GET DATA may legitimately take its per-digit timeout for every digit on top of the base timeout."""
    h = Harness(command_timeout=30.0)
    d = run(h.session.get_data("pin", timeout_ms=5000, max_digits=4))
    h.clock.advance(49.9)
    assert not d.called
    h.clock.advance(0.2)
    failure_of(d, AGITimeoutError)


def test_wait_forever_has_no_timer():
    """WAIT FOR DIGIT -1 waits as long as the caller does; only the connection ending stops it."""
    h = Harness()
    d = run(h.session.wait_for_digit(-1))
    h.clock.advance(3600)
    assert not d.called and not h.clock.getDelayedCalls()
    h.close()
    failure_of(d, AGIHangupError)


def test_cancel_queued_and_in_flight_commands():
    """A cancelled queued command is never sent; a cancelled in-flight one has its reply discarded."""
    h = Harness()
    first = h.protocol.send_command("STREAM FILE", "a", "")
    second = h.protocol.send_command("SAY DIGITS", "1", "")
    third = h.protocol.send_command("NOOP")
    second.cancel()
    first.cancel()
    failure_of(first, CancelledError)
    failure_of(second, CancelledError)
    assert h.written() == [b'STREAM FILE "a" ""\n']
    h.feed("200 result=0 endpos=5")
    assert h.written() == [b"NOOP\n"]
    h.feed("200 result=0")
    assert result_of(third) == AGIReply(200, "0")


# --- protocol violations


def test_huge_line_drops_the_connection(events):
    """A line over MAX_LENGTH is not buffered forever: warning, connection dropped, command failed."""
    h = Harness()
    d = run(h.session.get_variable("BIG"))
    h.protocol.dataReceived(b"200 result=1 (" + b"x" * (FastAGIProtocol.MAX_LENGTH + 10))
    failure_of(d, AGIProtocolError)
    assert h.transport.disconnecting
    assert [e for e in events if e.get("log_level") is LogLevel.warn and e.get("limit")]
    h.protocol.dataReceived(b"x" * 100)  # more of it: no second warning, no crash
    assert len([e for e in events if e.get("limit")]) == 1


def test_garbage_reply_drops_the_connection(events):
    """A line that is not 200/5xx/HANGUP is logged and the connection dropped."""
    h = Harness()
    d = run(h.session.answer())
    h.feed("HTTP/1.1 200 OK", "200 result=0")
    failure_of(d, AGIProtocolError)
    assert h.transport.disconnecting
    assert any(e.get("log_level") is LogLevel.warn and "HTTP" in e.get("error", "") for e in events)


def test_reply_without_a_command_drops_the_connection():
    """A reply nobody asked for means pairing is lost: drop the connection."""
    h = Harness()
    h.feed("200 result=0")
    assert h.transport.disconnecting


def test_non_agi_peer_is_dropped_before_any_handler_runs():
    """An HTTP client on the FastAGI port is dropped at its first line; no script runs."""
    h = Harness(env=["GET / HTTP/1.1"])
    assert h.transport.disconnecting and h.sessions == []


def test_missing_environment_times_out():
    """A connection that never sends the environment block is dropped after env_timeout."""
    h = Harness(env=None)
    h.clock.advance(10.1)
    assert h.transport.disconnecting and h.sessions == []


def test_commands_are_not_logged_unless_asked(events):
    """Without log_commands a whole session's commands and replies emit no log event at all."""
    h = Harness()
    d = run(h.session.get_data("menu", 5000, 1))
    h.feed("200 result=1")
    assert result_of(d) == ("1", False)
    h.close()
    assert events == []


def test_commands_and_replies_are_logged_at_debug_when_asked(events):
    """With log_commands each command and its reply is one debug event naming the command."""
    h = Harness(log_commands=True)
    d = run(h.session.stream_file("hello"))
    h.feed("200 result=0 endpos=8000")
    assert result_of(d) is None
    commands = [e for e in events if e.get("command") == "STREAM FILE"]
    assert [e["log_level"] for e in commands] == [LogLevel.debug, LogLevel.debug]
    assert 'STREAM FILE "hello" ""' in formatEvent(commands[0]) and "endpos" in formatEvent(commands[1])


def test_sensitive_commands_are_redacted_from_logs(events):
    """With sensitive=True neither the arguments nor the reply appear in any log event."""
    h = Harness(log_commands=True)
    d = run(h.session.get_data("enter-pin-7731", 5000, 6, sensitive=True))
    h.feed("200 result=987654")
    assert result_of(d) == ("987654", False)
    text = repr([(formatEvent(e), e) for e in events])
    assert "987654" not in text and "7731" not in text
    assert any(e.get("command") == "GET DATA" for e in events), "the command name itself is still logged"


# --- handlers, factory, routing


@pytest.mark.allow_logged_errors
def test_handler_exception_is_logged_and_the_socket_closed(fail_on_logged_errors):
    """A script that raises is logged as an error and its call returns to the dialplan."""

    async def broken(session):
        await session.answer()
        raise RuntimeError("bug in script")

    h = Harness(handler=broken)
    h.feed("200 result=0")
    assert h.transport.disconnecting
    assert result_of(h.protocol.handler_done) is None
    (event,) = fail_on_logged_errors
    assert event["log_failure"].check(RuntimeError) and event["last_command"] == "ANSWER"


@pytest.mark.allow_logged_errors
def test_synchronous_handler_exception_is_logged(fail_on_logged_errors):
    """A plain function that raises does not crash the server either."""

    def broken(session):
        raise ValueError("sync bug")

    h = Harness(handler=broken)
    assert h.transport.disconnecting and len(fail_on_logged_errors) == 1


def test_hangup_escaping_the_handler_is_info_not_error(events):
    """A caller hanging up mid-script is normal: logged at info with the script and last command."""

    async def script(session):
        await session.answer()
        await session.stream_file("welcome")

    h = Harness(handler=script)
    h.feed("200 result=0", "HANGUP", "200 result=-1 endpos=10")
    assert h.transport.disconnecting
    (event,) = [e for e in events if e.get("last_command")]
    assert event["log_level"] is LogLevel.info and event["last_command"] == "STREAM FILE"
    assert event["agi_script"] == "bank"


def test_plain_and_deferred_handlers():
    """Handlers may be plain functions or return Deferreds; the socket closes when they finish."""
    h = Harness(handler=lambda session: None)
    assert h.transport.disconnecting
    pending: Deferred = Deferred()
    h = Harness(handler=lambda session: pending)
    assert not h.transport.disconnecting
    pending.callback(None)
    assert h.transport.disconnecting


def _factory_protocol(factory: FastAGIFactory, script: str) -> tuple[FastAGIProtocol, StringTransport]:
    """A protocol built by ``factory`` that has received an environment naming ``script``."""
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(f"agi_network: yes\nagi_network_script: {script}\n\n".encode())
    return protocol, transport


def test_router_runs_the_script_named_in_the_url():
    """for_scripts picks the handler by agi_network_script (query ignored); default catches the rest."""
    ran: list[str] = []
    factory = FastAGIFactory.for_scripts(
        {"bank": lambda s: ran.append("bank")}, default=lambda s: ran.append("default"), clock=Clock()
    )
    _factory_protocol(factory, "bank?lang=fr")
    _factory_protocol(factory, "other")
    assert ran == ["bank", "default"]


def test_unknown_script_says_so_and_returns_to_the_dialplan(events):
    """No route and no default: a warning, a VERBOSE on the Asterisk console, then the socket closes."""
    factory = FastAGIFactory.for_scripts({"bank": lambda s: None}, clock=Clock())
    protocol, transport = _factory_protocol(factory, "nope")
    line = transport.value()
    assert split_command(line.decode().rstrip("\n")) == ["VERBOSE", "ctid: unknown AGI script nope", "1"]
    assert not transport.disconnecting
    protocol.dataReceived(b"200 result=1\n")
    assert transport.disconnecting
    assert any(e.get("log_level") is LogLevel.warn and e.get("script") == "nope" for e in events)


def test_factory_passes_clock_and_timeout():
    """Protocols built by the factory use its clock and command timeout."""
    clock = Clock()
    factory = FastAGIFactory(lambda s: Deferred(), clock=clock, command_timeout=5.0)
    protocol, transport = _factory_protocol(factory, "bank")
    d = run(protocol.session.answer())
    clock.advance(5.1)
    failure_of(d, AGITimeoutError)


def test_factory_log_commands_applies_to_new_connections():
    """Turning the factory's log_commands on (a reload to debug) affects the connections made afterwards."""
    factory = FastAGIFactory(lambda s: Deferred(), clock=Clock())
    before, _ = _factory_protocol(factory, "bank")
    factory.log_commands = True
    after, _ = _factory_protocol(factory, "bank")
    assert (before.log_commands, after.log_commands) == (False, True)


class _Socket:
    """A socket whose kernel buffer takes at most ``room`` bytes per send, or raises ``error``."""

    def __init__(self, room: int = 1 << 16, error: OSError | None = None):
        self.room, self.error, self.sent = room, error, b""

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        self.sent += data[: self.room]
        return min(len(data), self.room)


def test_write_now_sends_straight_and_hands_the_rest_to_the_transport():
    """A line the socket takes whole bypasses the transport; a partial send or an error leaves the rest to it."""
    transport = StringTransport()
    whole = _Socket()
    write_now(whole, transport, b"ANSWER\n")
    assert (whole.sent, transport.value()) == (b"ANSWER\n", b"")
    write_now(_Socket(room=3), transport, b"ANSWER\n")
    assert transport.value() == b"WER\n"
    transport.clear()
    write_now(_Socket(error=BlockingIOError()), transport, b"NOOP\n")
    write_now(None, transport, b"HANGUP\n")
    assert transport.value() == b"NOOP\nHANGUP\n"


# --- real loopback TCP


class FakeAsterisk(LineOnlyReceiver):
    """Plays Asterisk: sends an environment block, answers each command from a table."""

    delimiter = b"\n"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.received: list[list[str]] = []
        self.closed: Deferred = Deferred()

    def connectionMade(self):
        self.transport.write(b"agi_network: yes\nagi_network_script: bank\nagi_channel: PJSIP/x-1\n\n")

    def lineReceived(self, line: bytes):
        argv = split_command(line.decode())
        self.received.append(argv)
        self.transport.write(self.answers[" ".join(argv[:2])].encode() + b"\n")

    def connectionLost(self, reason):
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_end_to_end_over_loopback_tcp():
    """A real listening factory: Asterisk-like client connects, the handler runs to completion, the socket closes."""
    from twisted.internet import reactor

    done: list[tuple] = []

    async def bank(session):
        await session.answer()
        digits = await session.get_data("ctid/main-menu", 3000, 1)
        await session.set_variable("CTID_MENU", digits[0])
        done.append(digits)

    factory = FastAGIFactory.for_scripts({"bank": bank}, clock=reactor, command_timeout=5.0)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    try:
        asterisk = FakeAsterisk({"ANSWER": "200 result=0", "GET DATA": "200 result=2", "SET VARIABLE": "200 result=1"})
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await connectProtocol(endpoint, asterisk)
        await asterisk.closed.addTimeout(5, reactor)
    finally:
        await port.stopListening()
    assert done == [("2", False)]
    assert asterisk.received == [
        ["ANSWER"],
        ["GET", "DATA", "ctid/main-menu", "3000", "1"],
        ["SET", "VARIABLE", "CTID_MENU", "2"],
    ]
