"""The pure FastAGI wire layer: environment block, replies, command quoting."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctid.protocols.agiwire import (
    HANGUP,
    MAX_COMMAND_LINE,
    AGICommandError,
    AGIDeadChannelError,
    AGIEnvironment,
    AGIFailure,
    AGIHangupError,
    AGIProtocolError,
    AGIReply,
    AGIUsageError,
    EnvironmentReader,
    ReplyReader,
    format_command,
    is_dead_safe,
    parse_environment,
    parse_reply,
    quote_argument,
    split_command,
    split_env_line,
)

CAPTURE = Path(__file__).parent / "data" / "captures" / "fastagi.txt"


def transcript_env_lines() -> list[str]:
    """The ``<<`` lines of the real capture up to and including the blank line."""
    lines = []
    for raw in CAPTURE.read_text().splitlines():
        assert raw.startswith("<<"), "the capture starts with the environment block"
        lines.append(raw[3:])
        if raw[3:] == "":
            return lines
    raise AssertionError("no blank line in the capture")


# --- environment


def test_transcript_environment_parses_every_key():
    """Every agi_ key of a real Asterisk 22 block is read, the empty accountcode included."""
    env = parse_environment(transcript_env_lines())
    assert len(env) == 22
    assert env["agi_network"] == "yes"
    assert env["agi_request"] == "agi://127.0.0.1:4573/bank"
    assert env["agi_accountcode"] == ""
    assert env["agi_threadid"] == "140128586585792"
    assert env.script == "bank"
    assert env.channel == "Local/ivr@callers-00000002;2"
    assert env.uniqueid == "1795342906.5"
    assert env.callerid == "02112345678"
    assert env.calleridname is None  # "unknown"
    assert env.dnid is None  # "unknown"
    assert (env.context, env.extension, env.language) == ("callers", "ivr", "en")
    assert env.args == [] and env.query == {}


def test_environment_helpers_script_query_and_args_in_order():
    """Script drops the query; query is parsed; agi_arg_N come back in numeric order, empties kept."""
    env = parse_environment(
        [
            "agi_network_script: ivr/bank?lang=fr&x=",
            "agi_arg_2: second",
            "agi_arg_1: first",
            "agi_arg_3: ",
            "agi_arg_10: not reached",
        ]
    )
    assert env.script == "ivr/bank"
    assert env.query == {"lang": "fr", "x": ""}
    assert env.args == ["first", "second", ""]


def test_environment_script_falls_back_to_the_request_url():
    """Without agi_network_script the script name comes from agi_request."""
    env = AGIEnvironment({"agi_request": "agi://10.0.0.1:4573/bank?a=1"})
    assert env.script == "bank" and env.query == {"a": "1"}
    assert AGIEnvironment({"agi_request": "agi://10.0.0.1"}).script == ""


def test_env_line_split_at_first_colon_dropping_one_space():
    """Only the first colon splits and only one space is dropped; other spaces are data."""
    assert split_env_line("agi_callerid: a:b") == ("agi_callerid", "a:b")
    assert split_env_line("agi_calleridname:   two") == ("agi_calleridname", "  two")
    assert split_env_line("agi_accountcode:") == ("agi_accountcode", "")
    assert split_env_line("agi_accountcode: ") == ("agi_accountcode", "")


@pytest.mark.parametrize("line", ["GET / HTTP/1.1", "Host: example", "agi_x", " agi_x: 1"])
def test_env_line_that_is_not_agi_is_rejected(line):
    """A peer that is not Asterisk (HTTP, scanners) is recognised on its first line."""
    with pytest.raises(AGIProtocolError):
        split_env_line(line)


def test_environment_block_size_is_capped():
    """An endless environment block is refused instead of growing memory."""
    reader = EnvironmentReader(max_lines=3)
    for n in range(3):
        assert reader.feed(f"agi_arg_{n + 1}: x") is None
    with pytest.raises(AGIProtocolError):
        reader.feed("agi_arg_4: x")


# --- replies


@pytest.mark.parametrize(
    ("line", "result", "data", "extras"),
    [
        ("200 result=0", "0", None, {}),
        ("200 result=1 (02112345678)", "1", "02112345678", {}),
        ("200 result=-1 (hangup) endpos=12345", "-1", "hangup", {"endpos": "12345"}),
        ("200 result= (timeout)", "", "timeout", {}),
        ('200 result=1 (value with (parens) "q")', "1", 'value with (parens) "q"', {}),
        ("200 result=0 endpos=8000", "0", None, {"endpos": "8000"}),
        ('200 result=1 ("Name" <123>)', "1", '"Name" <123>', {}),
        ("200 result=1 ()", "1", "", {}),
        ("200 result=1 (unclosed", "1", "unclosed", {}),
        (
            '200 result=1 (speech) endpos=0 results=1 score0=900 text0="two words" grammar0=g',
            "1",
            "speech",
            {"endpos": "0", "results": "1", "score0": "900", "text0": "two words", "grammar0": "g"},
        ),
    ],
)
def test_200_reply_fields(line, result, data, extras):
    """result runs to the next space, data from the first '(' to the last ')', then key=value extras."""
    reply = parse_reply(line)
    assert reply == AGIReply(200, result, data, extras)


def test_reply_numeric_helpers():
    """result_int and endpos give numbers when there are numbers, None otherwise."""
    assert parse_reply("200 result=-1 endpos=0").result_int == -1
    assert parse_reply("200 result=-1 endpos=0").endpos == 0
    assert parse_reply("200 result= (timeout)").result_int is None
    assert parse_reply("200 result=1").endpos is None


@pytest.mark.parametrize(
    ("line", "code", "kind"),
    [
        ("510 Invalid or unknown command", 510, AGICommandError),
        ("511 Command Not Permitted on a dead channel or intercept routine", 511, AGIDeadChannelError),
        ("520 Invalid command syntax.  Proper usage not available.", 520, AGIUsageError),
    ],
)
def test_error_replies(line, code, kind):
    """5xx lines are failures that map to the documented exceptions, naming only the command."""
    failure = ReplyReader().feed(line)
    assert isinstance(failure, AGIFailure) and failure.code == code
    error = failure.exception("GET DATA")
    assert type(error) is kind and error.code == code and error.command == "GET DATA"


def test_dead_channel_error_is_also_a_hangup():
    """511 means the caller is gone, so code catching AGIHangupError also catches it."""
    assert isinstance(AGIFailure(511, "x").exception(), AGIHangupError)


def test_multi_line_520_is_one_failure_with_the_usage_text():
    """The 520- block is consumed whole and yields one failure carrying the usage lines."""
    reader = ReplyReader()
    assert reader.feed("520-Invalid command syntax.  Proper usage follows:") is None
    assert reader.in_usage
    assert reader.feed(" Usage: GET DATA <file> [timeout] [maxdigits]") is None
    assert reader.feed("") is None
    failure = reader.feed("520 End of proper usage.")
    assert failure == AGIFailure(
        520, "Invalid command syntax.  Proper usage follows:", " Usage: GET DATA <file> [timeout] [maxdigits]\n"
    )
    assert not reader.in_usage
    assert reader.feed("200 result=0") == AGIReply(200, "0")


def test_pre_13_17_glued_usage_end():
    """Before 13.17 the end marker could be glued to the last usage line; that still ends the block."""
    reader = ReplyReader()
    reader.feed("520-Invalid command syntax.  Proper usage follows:")
    reader.feed("Usage: ANSWER")
    failure = reader.feed(" Answers channel if not already in answer state.520 End of proper usage.")
    assert isinstance(failure, AGIFailure)
    assert failure.usage == "Usage: ANSWER\n Answers channel if not already in answer state."
    assert reader.feed("200 result=0") == AGIReply(200, "0")


def test_hangup_is_a_notice_in_any_state():
    """HANGUP is recognised alone, even inside a usage block, and never looks like a reply."""
    reader = ReplyReader()
    assert reader.feed("HANGUP") is HANGUP
    reader.feed("520-Invalid command syntax.  Proper usage follows:")
    assert reader.feed("HANGUP") is HANGUP
    assert reader.in_usage


@pytest.mark.parametrize("line", ["", "hello", "HTTP/1.1 200 OK", "200", "200-x", "100 continue", "3000 x", "510-x"])
def test_garbage_reply_lines_are_protocol_errors(line):
    """Anything that is not 200/5xx/HANGUP raises AGIProtocolError."""
    with pytest.raises(AGIProtocolError):
        ReplyReader().feed(line)


def test_usage_block_size_is_capped():
    """A 520 block that never ends is refused."""
    reader = ReplyReader(max_usage_lines=2)
    reader.feed("520-Invalid command syntax.  Proper usage follows:")
    reader.feed("a")
    reader.feed("b")
    with pytest.raises(AGIProtocolError):
        reader.feed("c")


_PREFIXES = st.sampled_from(
    ["", "200 result=", "200 ", "510 ", "511 ", "520 ", "520-", "HANGUP", "520 End of proper usage."]
)
_REPLY_LINE = st.builds(lambda prefix, rest: prefix + rest, _PREFIXES, st.text(max_size=200))


@given(st.lists(_REPLY_LINE, max_size=20))
def test_reply_reader_raises_only_protocol_errors(lines):
    """Arbitrary text fed to the reply reader yields events or AGIProtocolError, nothing else."""
    reader = ReplyReader(max_usage_lines=10)
    for line in lines:
        try:
            event = reader.feed(line)
        except AGIProtocolError:
            continue
        assert event is None or event is HANGUP or isinstance(event, (AGIReply, AGIFailure))
        if isinstance(event, AGIFailure):
            assert isinstance(event.exception(), AGICommandError)


@given(st.text(max_size=300))
def test_parse_reply_raises_only_protocol_errors(line):
    """parse_reply on any text returns a reply or raises AGIProtocolError."""
    try:
        reply = parse_reply("200 result=" + line)
    except AGIProtocolError:
        return
    assert reply.code == 200 and " " not in reply.result
    reply.result_int, reply.endpos  # noqa: B018 - must not raise


@given(st.lists(st.text(max_size=100), max_size=20))
def test_environment_reader_raises_only_protocol_errors(lines):
    """Arbitrary environment lines give an environment or AGIProtocolError."""
    reader = EnvironmentReader()
    try:
        for line in lines:
            reader.feed(line)
    except AGIProtocolError:
        pass


# --- commands


def test_arguments_are_double_quoted_with_backslash_escapes():
    """Every argument is wrapped in double quotes; '"' and '\\' are escaped; the line ends in LF only."""
    assert quote_argument('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert quote_argument("") == '""'
    assert quote_argument(7) == '"7"'
    assert format_command("GET DATA", "beep", 3000, 7) == b'GET DATA "beep" "3000" "7"\n'
    assert format_command("ANSWER") == b"ANSWER\n"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b", "trailing\r"])
def test_cr_lf_nul_in_arguments_are_refused(bad):
    """CR/LF would end the command early and NUL would cut it: refuse them."""
    with pytest.raises(ValueError):
        format_command("VERBOSE", bad)


def test_overlong_command_is_refused():
    """Lines longer than res_agi's 2048-byte buffer holds (LF included) are refused before the wire."""
    assert len(format_command("VERBOSE", "x" * (MAX_COMMAND_LINE - len('VERBOSE ""\n')))) == MAX_COMMAND_LINE == 2047
    with pytest.raises(ValueError):
        format_command("VERBOSE", "x" * (MAX_COMMAND_LINE - len('VERBOSE ""\n') + 1))
    with pytest.raises(ValueError):
        format_command("VERBOSE", "x" * 8192)
    with pytest.raises(ValueError):
        format_command("VERBOSE", "é" * 1020)  # the limit counts UTF-8 bytes, not characters


@pytest.mark.parametrize("name", ["", "GET\nDATA", 'NOOP "x"', "get  data", "NOOP1", "failure", "FAILURES X"])
def test_malformed_command_names_are_refused(name):
    """The command name is words of letters only (and never 'failure…', which aborts the AGI)."""
    with pytest.raises(ValueError):
        format_command(name)


def test_too_many_arguments_are_refused():
    """res_agi truncates beyond MAX_ARGS words; refuse instead of sending a truncated command."""
    format_command("NOOP", *["x"] * 126)
    with pytest.raises(ValueError):
        format_command("NOOP", *["x"] * 127)


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ("GET DATA beep 3000 7", ["GET", "DATA", "beep", "3000", "7"]),
        ('SAY DIGITS 42 ""', ["SAY", "DIGITS", "42", ""]),
        ("GET VARIABLE CALLERID(num)", ["GET", "VARIABLE", "CALLERID(num)"]),
        ('NOOP "x"', ["NOOP", "x"]),
        ('VERBOSE "a \\"b\\" \\\\c" 1', ["VERBOSE", 'a "b" \\c', "1"]),
        ("EXEC Dial a\\ b", ["EXEC", "Dial", "a b"]),
        ('X ab"c d"e', ["X", "abc de"]),
        ("  A\tB  ", ["A", "B"]),
    ],
)
def test_split_command_matches_res_agi_parse_args(line, argv):
    """split_command reads lines the way res_agi's parse_args does (quotes, escapes, tabs)."""
    assert split_command(line) == argv


_WORD = st.text(alphabet=st.characters(min_codepoint=65, max_codepoint=90), min_size=1, max_size=8)
_ARG = st.text(alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=["Cs"]), max_size=40)


@given(st.lists(_WORD, min_size=1, max_size=3), st.lists(_ARG | st.integers(), max_size=10))
def test_quoting_round_trips_through_asterisks_parser(words, args):
    """Whatever the arguments, Asterisk's parser gets back exactly the words and arguments we meant."""
    line = format_command(" ".join(words), *args)
    assert line.endswith(b"\n") and b"\r" not in line
    assert split_command(line[:-1].decode()) == words + [str(arg) for arg in args]


def test_dead_safe_commands():
    """The commands res_agi allows on a dead channel, and a few it does not."""
    for name in ("GET VARIABLE", "get full variable", "SET VARIABLE", "VERBOSE", "NOOP", "EXEC", "DATABASE PUT"):
        assert is_dead_safe(name)
    for name in ("ANSWER", "HANGUP", "STREAM FILE", "GET DATA", "CHANNEL STATUS", "WAIT FOR DIGIT"):
        assert not is_dead_safe(name)
