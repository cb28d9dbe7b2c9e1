"""FastAGI wire format: environment block, reply lines, command quoting.

Pure code, no I/O, no Twisted.  :class:`EnvironmentReader` turns the
``agi_*`` lines Asterisk sends first into an :class:`AGIEnvironment`;
:class:`ReplyReader` turns every later line into an :class:`AGIReply`
(``200``), an :class:`AGIFailure` (``510``/``511``/``520``, including the
multi-line 520 usage block) or :data:`HANGUP` (the unsolicited hang-up
notice); :func:`format_command` quotes a command the way res_agi's
``parse_args`` reads it, and :func:`split_command` is that reader, for fakes
and tests.  Every malformed input raises :class:`AGIProtocolError`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

#: Longest command line we send, LF included.  res_agi reads commands into a
#: ``char buf[AGI_BUF_LEN]`` (2048): a longer line is cut after 2047 bytes and
#: its tail is run as a *second* command (a desync, or an injection if the tail
#: is caller-controlled), so this is well under the 8 KiB PROTOCOLS §5.3 quotes.
MAX_COMMAND_LINE = 2047
#: res_agi's MAX_ARGS: command words plus arguments must stay below it.
MAX_ARGS = 128
#: Caps that stop a peer that is not Asterisk from growing our buffers.
MAX_ENV_LINES = 512
MAX_USAGE_LINES = 256

#: Commands res_agi runs on a dead (hung-up) channel; the others answer 511.
DEAD_SAFE_COMMANDS = frozenset(
    {
        "GET VARIABLE",
        "GET FULL VARIABLE",
        "SET VARIABLE",
        "VERBOSE",
        "NOOP",
        "EXEC",
        "DATABASE GET",
        "DATABASE PUT",
        "DATABASE DEL",
        "DATABASE DELTREE",
        "ASYNCAGI BREAK",
        "SPEECH DESTROY",
        "SPEECH UNLOAD GRAMMAR",
    }
)

_COMMAND_NAME = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*\Z")
_STATUS = re.compile(r"(\d{3})([ -]|\Z)")
_EXTRA = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')
_USAGE_END = "520 End of proper usage."


class AGIError(Exception):
    """Base of every FastAGI error."""


class AGIProtocolError(AGIError):
    """The peer sent something that is not FastAGI (garbage, too long, out of turn)."""


class AGIHangupError(AGIError):
    """The caller hung up, or the FastAGI connection closed, before the command could finish."""


class AGITimeoutError(AGIError):
    """Asterisk did not answer a command in time; the connection is dropped."""


class AGICommandError(AGIError):
    """Asterisk refused or failed a command.

    ``code`` is the status (510, 511, 520) or, for a ``200`` reply whose
    result means failure, the result (-1, -2); ``command`` is the command
    name only (never its arguments, which may be sensitive).
    """

    def __init__(self, code: int, message: str, command: str | None = None):
        super().__init__(code, message, command)
        self.code = code
        self.message = message
        self.command = command

    def __str__(self) -> str:
        where = f"{self.command}: " if self.command else ""
        return f"{where}{self.code} {self.message}"


class AGIDeadChannelError(AGICommandError, AGIHangupError):
    """``511``: the command is not permitted on a dead channel (so it is also a hang-up)."""


class AGIUsageError(AGICommandError):
    """``520``: Asterisk rejected the command's syntax; ``usage`` holds its usage text (may be empty)."""

    def __init__(self, usage: str, message: str = "Invalid command syntax.", command: str | None = None):
        super().__init__(520, message, command)
        self.usage = usage


# --- the environment block ------------------------------------------------------------------


class AGIEnvironment(Mapping[str, str]):
    """The ``agi_*`` variables Asterisk sends when a FastAGI session starts.

    A read-only mapping of the raw keys (``env["agi_channel"]``) plus helpers.
    ``callerid`` and ``dnid`` are ``None`` when Asterisk reports ``unknown``.
    """

    __slots__ = ("_vars",)

    def __init__(self, pairs: Mapping[str, str] | Iterable[tuple[str, str]] = ()):
        self._vars = dict(pairs)

    def __getitem__(self, key: str) -> str:
        return self._vars[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._vars)

    def __len__(self) -> int:
        return len(self._vars)

    def __repr__(self) -> str:
        return f"AGIEnvironment({self._vars!r})"

    def _path(self) -> str:
        raw = self._vars.get("agi_network_script")
        if raw is None:
            parts = urlsplit(self._vars.get("agi_request", ""))
            raw = parts.path + ("?" + parts.query if parts.query else "")
        return raw

    @property
    def script(self) -> str:
        """The script name from ``agi://host/<script>?query`` (no query, no surrounding slashes)."""
        return self._path().partition("?")[0].strip("/")

    @property
    def query(self) -> dict[str, str]:
        """The ``?a=b&c=d`` part of the AGI URL as a dict (last value wins)."""
        return dict(parse_qsl(self._path().partition("?")[2], keep_blank_values=True))

    @property
    def args(self) -> list[str]:
        """The dialplan arguments after the URL (``agi_arg_1`` … ``agi_arg_N``), in order."""
        found: list[str] = []
        while (value := self._vars.get(f"agi_arg_{len(found) + 1}")) is not None:
            found.append(value)
        return found

    def _known(self, key: str) -> str | None:
        value = self._vars.get(key)
        return None if value in (None, "", "unknown") else value

    @property
    def channel(self) -> str:
        """The channel name (``agi_channel``)."""
        return self._vars.get("agi_channel", "")

    @property
    def uniqueid(self) -> str:
        """The channel's unique id (``agi_uniqueid``)."""
        return self._vars.get("agi_uniqueid", "")

    @property
    def callerid(self) -> str | None:
        """The caller's number (``agi_callerid``), ``None`` if unknown."""
        return self._known("agi_callerid")

    @property
    def calleridname(self) -> str | None:
        """The caller's name (``agi_calleridname``), ``None`` if unknown."""
        return self._known("agi_calleridname")

    @property
    def dnid(self) -> str | None:
        """The dialed number (``agi_dnid``), ``None`` if unknown."""
        return self._known("agi_dnid")

    @property
    def extension(self) -> str:
        """The dialplan extension (``agi_extension``)."""
        return self._vars.get("agi_extension", "")

    @property
    def context(self) -> str:
        """The dialplan context (``agi_context``)."""
        return self._vars.get("agi_context", "")

    @property
    def language(self) -> str:
        """The channel language (``agi_language``)."""
        return self._vars.get("agi_language", "")


def split_env_line(line: str) -> tuple[str, str]:
    """Split one ``agi_key: value`` line at the first colon, dropping one following space."""
    key, colon, value = line.partition(":")
    if not colon or not key.startswith("agi_") or key != key.strip():
        raise AGIProtocolError(f"not an AGI environment line: {line[:80]!r}")
    return key, value[1:] if value.startswith(" ") else value


class EnvironmentReader:
    """Collects environment lines until the blank line that ends the block."""

    def __init__(self, max_lines: int = MAX_ENV_LINES):
        self._pairs: list[tuple[str, str]] = []
        self._max_lines = max_lines

    def feed(self, line: str) -> AGIEnvironment | None:
        """Take one line (without its LF); return the environment once the blank line arrives."""
        if line == "":
            return AGIEnvironment(self._pairs)
        if len(self._pairs) >= self._max_lines:
            raise AGIProtocolError("AGI environment block too long")
        self._pairs.append(split_env_line(line))
        return None


def parse_environment(lines: list[str]) -> AGIEnvironment:
    """Parse a whole environment block (the blank line may be omitted)."""
    reader = EnvironmentReader()
    for line in lines:
        env = reader.feed(line)
        if env is not None:
            return env
    return reader.feed("")  # type: ignore[return-value]


# --- replies --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AGIReply:
    """A ``200`` reply: ``200 result=<result>[ (<data>)][ key=value…]``.

    ``result`` is the raw text after ``result=`` (may be empty), ``data`` the
    text between the first ``(`` and the last ``)`` (``None`` if absent),
    ``extras`` the ``key=value`` tokens such as ``endpos``.
    """

    code: int
    result: str
    data: str | None = None
    extras: dict[str, str] = field(default_factory=dict)

    @property
    def result_int(self) -> int | None:
        """``result`` as an int, or ``None`` when it is empty or not a number."""
        try:
            return int(self.result)
        except ValueError:
            return None

    @property
    def endpos(self) -> int | None:
        """The ``endpos=`` sample offset of media commands, if present and numeric."""
        try:
            return int(self.extras["endpos"])
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True)
class AGIFailure:
    """A ``5xx`` reply; ``usage`` is the usage text of a 520 block (``None`` for other codes)."""

    code: int
    message: str
    usage: str | None = None

    def exception(self, command: str | None = None) -> AGICommandError:
        """The exception a command answered with this failure should raise."""
        if self.code == 511:
            return AGIDeadChannelError(511, self.message, command)
        if self.code == 520:
            return AGIUsageError(self.usage or "", self.message, command)
        return AGICommandError(self.code, self.message, command)


class _Hangup:
    def __repr__(self) -> str:
        return "HANGUP"


#: The unsolicited ``HANGUP`` notice: a flag, never the reply to a command.
HANGUP = _Hangup()


def parse_reply(line: str) -> AGIReply:
    """Parse a ``200 result=…`` line; anything else raises :class:`AGIProtocolError`."""
    if not line.startswith("200 result="):
        raise AGIProtocolError(f"not a 200 reply: {line[:80]!r}")
    result, _, rest = line[len("200 result=") :].partition(" ")
    data = None
    if rest.startswith("("):
        close = rest.rfind(")")
        data, rest = (rest[1:close], rest[close + 1 :]) if close > 0 else (rest[1:], "")
    extras = {key: _unquote(value) for key, value in _EXTRA.findall(rest)} if rest else {}
    return AGIReply(200, result, data, extras)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


class ReplyReader:
    """Classifies the lines Asterisk sends after the environment block.

    :meth:`feed` returns an :class:`AGIReply`, an :class:`AGIFailure`,
    :data:`HANGUP`, or ``None`` while a multi-line 520 usage block is still
    being collected (:attr:`in_usage`).  Garbage raises :class:`AGIProtocolError`.
    """

    def __init__(self, max_usage_lines: int = MAX_USAGE_LINES):
        self._usage: list[str] | None = None
        self._message = ""
        self._max_usage_lines = max_usage_lines

    @property
    def in_usage(self) -> bool:
        """True between ``520-…`` and ``520 End of proper usage.``."""
        return self._usage is not None

    def feed(self, line: str) -> AGIReply | AGIFailure | _Hangup | None:
        """Take one line (without its LF) and return what it completes, if anything."""
        if self._usage is None and line.startswith("200 result="):  # nearly every line
            return parse_reply(line)
        if line.rstrip() == "HANGUP":
            return HANGUP
        if self._usage is not None:
            return self._usage_line(line)
        match = _STATUS.match(line)
        if match is None:
            raise AGIProtocolError(f"not an AGI reply: {line[:80]!r}")
        code, sep, text = int(match.group(1)), match.group(2), line[match.end() :]
        if code == 200 and sep != "-":
            return parse_reply(line)
        if code == 520 and sep == "-":
            self._usage, self._message = [], text
            return None
        if 500 <= code < 600 and sep != "-":
            return AGIFailure(code, text, "" if code == 520 else None)
        raise AGIProtocolError(f"unexpected AGI status line: {line[:80]!r}")

    def _usage_line(self, line: str) -> AGIFailure | None:
        assert self._usage is not None
        glued = line.find(_USAGE_END)
        if line.startswith("520 ") or glued >= 0:
            if glued > 0:  # before 13.17 the usage text had no final newline
                self._usage.append(line[:glued])
            usage, self._usage = "\n".join(self._usage), None
            return AGIFailure(520, self._message, usage)
        if len(self._usage) >= self._max_usage_lines:
            raise AGIProtocolError("520 usage block too long")
        self._usage.append(line)
        return None


# --- commands -------------------------------------------------------------------------------


def quote_argument(value: str | int) -> str:
    """Wrap one argument in double quotes, backslash-escaping ``"`` and ``\\``.

    Raises ValueError for CR, LF or NUL, which would end or cut the command line.
    """
    text = value if type(value) is str else str(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise ValueError("AGI arguments may not contain CR, LF or NUL")
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


@functools.lru_cache(maxsize=256)
def _command_words(command: str) -> int:
    """How many words the command name ``command`` has; ValueError if it is not one (valid names are cached)."""
    if not _COMMAND_NAME.match(command) or command[:7].lower() == "failure":
        raise ValueError(f"not an AGI command name: {command!r}")
    return len(command.split())


def format_command(command: str, *args: str | int) -> bytes:
    """Build the wire line for ``command`` (e.g. ``"GET DATA"``) with every argument quoted.

    The line ends with LF only.  Raises ValueError for a malformed command
    name, a forbidden character, too many arguments, or a line over
    :data:`MAX_COMMAND_LINE` bytes.
    """
    if _command_words(command) + len(args) >= MAX_ARGS:
        raise ValueError("too many AGI arguments")
    text = command + " " + " ".join([quote_argument(arg) for arg in args]) if args else command
    line = (text + "\n").encode("utf-8")
    if len(line) > MAX_COMMAND_LINE:
        raise ValueError(f"AGI command line longer than {MAX_COMMAND_LINE} bytes")
    return line


def is_dead_safe(command: str) -> bool:
    """Whether res_agi runs ``command`` (a command name) on a hung-up channel."""
    return " ".join(command.upper().split()) in DEAD_SAFE_COMMANDS


def split_command(line: str) -> list[str]:
    """Split a command line into words exactly like res_agi's ``parse_args``.

    Whitespace separates words; ``"`` toggles quoting (and starts a word
    after whitespace, so ``""`` is an empty argument); ``\\`` makes the next
    character literal.
    """
    argv: list[str] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                argv.append("")
                whitespace = False
        elif ch in " \t" and not quoted and not escaped:
            whitespace = True
        elif ch == "\\" and not escaped:
            escaped = True
        else:
            if whitespace:
                argv.append("")
                whitespace = False
            argv[-1] += ch
            escaped = False
    return argv
