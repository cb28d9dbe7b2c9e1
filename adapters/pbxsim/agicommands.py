"""AGI commands as res_agi.c answers them, played by a simulated caller.

:func:`parse_args` is a port of res_agi's ``parse_args`` (double quotes group,
backslash escapes the next character, ``""`` is an empty argument, a
trailing ``\\r`` stays part of the last argument).  Each handler is
``async def handler(session, argv) -> str | None``: the reply line, or None
when the command was abandoned because another command arrived.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctid.protocols.agiwire import split_command

from .apps import APPLICATIONS, _load_modules, answer, prompt_seconds
from .dialplan import substitute

if TYPE_CHECKING:  # pragma: no cover
    from .agi import AgiSession

MAX_ARGS = 128
SHOWUSAGE = "__usage__"
Handler = Callable[["AgiSession", list[str]], Awaitable["str | None"]]


def parse_args(line: str) -> list[str]:
    """Split an AGI command line exactly like res_agi.c ``parse_args`` (shared with ctid's own codec)."""
    return split_command(line)


@dataclass(frozen=True)
class Command:
    """One AGI command: its words, handler, usage text and whether it runs on a dead channel."""

    words: tuple[str, ...]
    handler: Handler
    usage: str
    dead_ok: bool = False
    media: bool = False


COMMANDS: list[Command] = []


def command(words: str, usage: str, dead_ok: bool = False, media: bool = False) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS.append(Command(tuple(words.split()), fn, usage, dead_ok, media))
        return fn

    return register


def find_command(argv: list[str]) -> Command | None:
    """The longest command whose words start ``argv`` (case-insensitive)."""
    best = None
    for cmd in COMMANDS:
        n = len(cmd.words)
        if len(argv) >= n and all(a.upper() == w for a, w in zip(argv[:n], cmd.words, strict=True)):
            if best is None or n > len(best.words):
                best = cmd
    return best


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


# -- media (a simulated caller listens and presses keys) ----------------------------------


@command("ANSWER", "Usage: ANSWER\n Answers channel if not already in answer state.")
async def cmd_answer(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 1:
        return SHOWUSAGE
    answer(s.world, s.chan)
    return "200 result=0"


@command("STREAM FILE", "Usage: STREAM FILE <filename> <escape digits> [sample offset]\n"
         " Send the given file, allowing playback to be interrupted by the given digits, if any.", media=True)
async def cmd_stream_file(s: AgiSession, argv: list[str]) -> str | None:
    if not 4 <= len(argv) <= 5:
        return SHOWUSAGE
    offset = _int(argv[4], 0) if len(argv) > 4 else 0
    if not argv[2]:
        return f"200 result=-1 endpos={offset}"
    return await s.play(prompt_seconds(argv[2], s.world.media_speed), argv[3], offset)


@command("CONTROL STREAM FILE", "Usage: CONTROL STREAM FILE <filename> <escape digits> [skipms] [ffchar] "
         "[rewchr] [pausechr] [offsetms]\n Send the given file, allowing playback to be controlled by the given "
         "digits, if any.", media=True)
async def cmd_control_stream_file(s: AgiSession, argv: list[str]) -> str | None:
    if not 5 <= len(argv) <= 10:
        return SHOWUSAGE
    return await s.play(prompt_seconds(argv[3], s.world.media_speed), argv[4], 0)


@command("GET OPTION", "Usage: GET OPTION <filename> <escape_digits> [timeout]\n"
         " Behaves similar to STREAM FILE but used with a timeout option.", media=True)
async def cmd_get_option(s: AgiSession, argv: list[str]) -> str | None:
    if not 4 <= len(argv) <= 5:
        return SHOWUSAGE
    timeout = _int(argv[4], 5000) if len(argv) > 4 else 5000
    return await s.play(prompt_seconds(argv[2], s.world.media_speed), argv[3], 0, wait=max(timeout, 0) / 1000.0)


@command("SAY DIGITS", "Usage: SAY DIGITS <number> <escape digits>\n Say a given digit string.", media=True)
async def cmd_say_digits(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 4:
        return SHOWUSAGE
    return _strip_endpos(await s.play(0.6 * max(len(argv[2]), 1) / s.world.media_speed, argv[3], 0))


@command("SAY NUMBER", "Usage: SAY NUMBER <number> <escape digits> [gender]\n Say a given number.", media=True)
async def cmd_say_number(s: AgiSession, argv: list[str]) -> str | None:
    if not 4 <= len(argv) <= 5 or not argv[2].lstrip("-").isdigit():
        return SHOWUSAGE
    return _strip_endpos(await s.play((0.5 + 0.4 * len(argv[2])) / s.world.media_speed, argv[3], 0))


@command("SAY ALPHA", "Usage: SAY ALPHA <number> <escape digits>\n Say a given character string.", media=True)
async def cmd_say_alpha(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 4:
        return SHOWUSAGE
    return _strip_endpos(await s.play(0.6 * max(len(argv[2]), 1) / s.world.media_speed, argv[3], 0))


def _strip_endpos(reply: str | None) -> str | None:
    return reply.split(" endpos=")[0] if reply else reply


@command("WAIT FOR DIGIT", "Usage: WAIT FOR DIGIT <timeout>\n Waits up to <timeout> milliseconds for channel "
         "to receive a DTMF digit.", media=True)
async def cmd_wait_for_digit(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 4:
        return SHOWUSAGE
    timeout = _int(argv[3], 0)
    return await s.wait_digit(None if timeout < 0 else timeout / 1000.0)


@command("GET DATA", "Usage: GET DATA <file to be streamed> [timeout] [maxdigits]\n"
         " Stream the given file, and receive DTMF data.", media=True)
async def cmd_get_data(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) < 3:
        return SHOWUSAGE
    timeout = _int(argv[3], 0) if len(argv) > 3 else 0
    maxdigits = _int(argv[4], 1024) if len(argv) > 4 else 1024
    return await s.collect(prompt_seconds(argv[2], s.world.media_speed), (timeout or 5000) / 1000.0, max(maxdigits, 1))


@command("RECORD FILE", "Usage: RECORD FILE <filename> <format> <escape digits> <timeout> [offset samples] "
         "[BEEP] [s=silence]\n Record to a file until a given dtmf digit in the sequence is received.", media=True)
async def cmd_record_file(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) < 6:
        return SHOWUSAGE
    timeout = _int(argv[5], -1)
    seconds = min(timeout / 1000.0, 5.0) if timeout > 0 else 5.0
    reason = await s.world.sleep(s.chan, seconds / s.world.media_speed)
    samples = int(seconds * 8000)
    if reason == "timeout":
        return f"200 result=0 (timeout) endpos={samples}"
    return None if reason == "agi" else f"200 result=-1 (hangup) endpos={samples}"


# -- channel control ------------------------------------------------------------------------


@command("HANGUP", "Usage: HANGUP [<channelname>]\n Hangs up the current channel.")
async def cmd_hangup(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) > 2:
        return SHOWUSAGE
    target = s.chan if len(argv) == 1 else s.world.find(argv[1])
    if target is None or target.dead:
        return "200 result=-1"
    s.world.soft_hangup(target, 32)
    return "200 result=1"


@command("CHANNEL STATUS", "Usage: CHANNEL STATUS [<channelname>]\n Returns the status of the specified channel.")
async def cmd_channel_status(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) > 3:
        return SHOWUSAGE
    target = s.chan if len(argv) == 2 else s.world.find(argv[2])
    return "200 result=-1" if target is None else f"200 result={target.state}"


@command("SET MUSIC", "Usage: SET MUSIC <on|off> <class>\n Enable/Disable Music on hold generator.")
async def cmd_set_music(s: AgiSession, argv: list[str]) -> str | None:
    from .apps import start_moh, stop_moh

    if len(argv) < 3:
        return SHOWUSAGE
    if argv[2].lower() == "on":
        start_moh(s.world, s.chan, argv[3] if len(argv) > 3 else "default")
    elif argv[2].lower() == "off":
        stop_moh(s.world, s.chan)
    return "200 result=0"


@command("SET CONTEXT", "Usage: SET CONTEXT <desired context>\n Sets the context for continuation upon exiting "
         "the application.")
async def cmd_set_context(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 3:
        return SHOWUSAGE
    s.chan.context = argv[2]
    return "200 result=0"


@command("SET EXTENSION", "Usage: SET EXTENSION <new extension>\n Changes the extension for continuation upon "
         "exiting the application.")
async def cmd_set_extension(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 3:
        return SHOWUSAGE
    s.chan.exten = argv[2]
    return "200 result=0"


@command("SET PRIORITY", "Usage: SET PRIORITY <priority>\n Changes the priority for continuation upon exiting "
         "the application.")
async def cmd_set_priority(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 3 or not argv[2].isdigit():
        return SHOWUSAGE
    s.chan.priority = int(argv[2]) - 1
    return "200 result=0"


@command("SET CALLERID", "Usage: SET CALLERID <number>\n Changes the callerid of the current channel.")
async def cmd_set_callerid(s: AgiSession, argv: list[str]) -> str | None:
    from .originate import parse_callerid

    if len(argv) != 3:
        return SHOWUSAGE
    num, name = parse_callerid(argv[2])
    s.world.set_caller(s.chan, num, name)
    return "200 result=1"


@command("SET AUTOHANGUP", "Usage: SET AUTOHANGUP <time>\n Cause the channel to automatically hangup at <time> "
         "seconds in the future.")
async def cmd_set_autohangup(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 3:
        return SHOWUSAGE
    return "200 result=0"


# -- dead-safe commands ---------------------------------------------------------------------


@command("EXEC", "Usage: EXEC <application> <options>\n Executes application with given options.", dead_ok=True)
async def cmd_exec(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) < 2:
        return SHOWUSAGE
    _load_modules()
    app = APPLICATIONS.get(argv[1].lower())
    if app is None:
        return "200 result=-2"
    result = await app(s.world, s.chan, argv[2] if len(argv) > 2 else "")
    return f"200 result={result}"


@command("SET VARIABLE", "Usage: SET VARIABLE <variablename> <value>", dead_ok=True)
async def cmd_set_variable(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 4:
        return SHOWUSAGE
    s.world.set_var(s.chan, argv[2], argv[3])
    return "200 result=1"


@command("GET VARIABLE", "Usage: GET VARIABLE <variablename>\n Returns 0 if <variablename> is not set.", dead_ok=True)
async def cmd_get_variable(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 3:
        return SHOWUSAGE
    value = s.world.get_var(s.chan, argv[2])
    return "200 result=0" if value is None else f"200 result=1 ({value})"


@command("GET FULL VARIABLE", "Usage: GET FULL VARIABLE <variablename> [<channel name>]\n Returns 0 if "
         "<variablename> is not set or channel does not exist.", dead_ok=True)
async def cmd_get_full_variable(s: AgiSession, argv: list[str]) -> str | None:
    if not 4 <= len(argv) <= 5:
        return SHOWUSAGE
    chan = s.chan if len(argv) == 4 else s.world.find(argv[4])
    if chan is None:
        return "200 result=0"
    return f"200 result=1 ({substitute(s.world, chan, argv[3])})"


@command("VERBOSE", "Usage: VERBOSE <message> <level>\n Sends <message> to the console via verbose message "
         "system.", dead_ok=True)
async def cmd_verbose(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) < 2:
        return SHOWUSAGE
    return "200 result=1"


@command("NOOP", "Usage: NOOP\n Does nothing.", dead_ok=True)
async def cmd_noop(s: AgiSession, argv: list[str]) -> str | None:
    return "200 result=0"


@command("DATABASE GET", "Usage: DATABASE GET <family> <key>\n Retrieves an entry in the Asterisk database.",
         dead_ok=True)
async def cmd_db_get(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 4:
        return SHOWUSAGE
    value = s.world.astdb.get(f"{argv[2]}/{argv[3]}")
    return "200 result=0" if value is None else f"200 result=1 ({value})"


@command("DATABASE PUT", "Usage: DATABASE PUT <family> <key> <value>\n Adds or updates an entry in the Asterisk "
         "database.", dead_ok=True)
async def cmd_db_put(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 5:
        return SHOWUSAGE
    s.world.astdb[f"{argv[2]}/{argv[3]}"] = argv[4]
    return "200 result=1"


@command("DATABASE DEL", "Usage: DATABASE DEL <family> <key>\n Deletes an entry in the Asterisk database.",
         dead_ok=True)
async def cmd_db_del(s: AgiSession, argv: list[str]) -> str | None:
    if len(argv) != 4:
        return SHOWUSAGE
    return "200 result=1" if s.world.astdb.pop(f"{argv[2]}/{argv[3]}", None) is not None else "200 result=0"


@command("DATABASE DELTREE", "Usage: DATABASE DELTREE <family> [keytree]\n Deletes a family or specific keytree "
         "within a family in the Asterisk database.", dead_ok=True)
async def cmd_db_deltree(s: AgiSession, argv: list[str]) -> str | None:
    if not 3 <= len(argv) <= 4:
        return SHOWUSAGE
    prefix = "/".join(argv[2:]) + "/"
    keys = [k for k in s.world.astdb if k.startswith(prefix)]
    for key in keys:
        del s.world.astdb[key]
    return "200 result=1" if keys else "200 result=0"


@command("ASYNCAGI BREAK", "Usage: ASYNCAGI BREAK\n Interrupts expected flow of Async AGI commands and returns "
         "control to previous source (typically, the PBX dialplan).", dead_ok=True)
async def cmd_asyncagi_break(s: AgiSession, argv: list[str]) -> str | None:
    return "200 result=0"
