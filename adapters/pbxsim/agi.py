"""The AGI application: a FastAGI session as Asterisk runs it for one channel.

:class:`AgiSession` is transport-free: the FastAGI client protocol
(:mod:`.agiclient`) feeds it lines and gives it a ``write``; tests may wire
it to anything.  One command runs at a time; a line arriving while a media
command plays abandons that command without a reply (res_agi.c).  When the
channel hangs up, ``HANGUP`` is written unsolicited and the session goes on
in dead mode (511 for media commands) until the server closes the socket.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .agicommands import SHOWUSAGE, find_command, parse_args
from .apps import application, split_args
from .events import ASTERISK_VERSION
from .features import dtmf

if TYPE_CHECKING:  # pragma: no cover
    from .world import Channel, World

log = Logger(namespace="ctid.pbxsim")

RESULT_TEXT = {200: "Success", 510: "Invalid or unknown command", 511: "Command blocked_by_dead_channel",
               520: "Usage"}
DEAD_REPLY = "511 Command Not Permitted on a dead channel or intercept routine"


class DtmfSource(Protocol):
    """Where a simulated caller's key presses come from (see population.Caller)."""

    def peek(self, now: float) -> tuple[float, str] | None:
        """(time the next key is pressed, digit), or None when the caller has nothing more to press."""

    def take(self) -> None:
        """The peeked key was pressed."""


class AgiRunner(Protocol):
    """Connects a session to the FastAGI server; fires when connected (errbacks on failure)."""

    def connect(self, session: AgiSession) -> Deferred[Any]: ...


class AgiSession:
    """One AGI() invocation on one channel."""

    def __init__(self, world: World, chan: Channel, url: str, args: list[str]):
        self.world = world
        self.chan = chan
        self.url = url
        self.args = args
        self.write: Callable[[str], None] = lambda line: None
        self.close: Callable[[], None] = lambda: None
        self.lines: deque[str] = deque()
        self.closed = False
        self.dead = False
        self.media = False
        self._idle_on_channel = False
        self._idle: Deferred[str] | None = None

    # -- the transport side ---------------------------------------------------------------

    def env_block(self) -> list[str]:
        """The ``agi_*`` lines Asterisk sends first (order of res_agi.c setup_env)."""
        chan, world = self.chan, self.world
        script = self.url.split("://", 1)[-1].partition("/")[2]
        lines = ["agi_network: yes"]
        if script:
            lines.append(f"agi_network_script: {script}")
        lines += [
            f"agi_request: {self.url}", f"agi_channel: {chan.name}", f"agi_language: {chan.language}",
            f"agi_type: {chan.tech}", f"agi_uniqueid: {chan.uniqueid}", f"agi_version: {ASTERISK_VERSION}",
            f"agi_callerid: {chan.caller_num or 'unknown'}", f"agi_calleridname: {chan.caller_name or 'unknown'}",
            "agi_callingpres: 0", "agi_callingani2: 0", "agi_callington: 0", "agi_callingtns: 0",
            f"agi_dnid: {chan.dnid or 'unknown'}", "agi_rdnis: unknown", f"agi_context: {chan.context}",
            f"agi_extension: {chan.exten}", f"agi_priority: {chan.priority}", "agi_enhanced: 0.0",
            f"agi_accountcode: {chan.accountcode}", f"agi_threadid: {140128586000000 + world.serial() * 4096}",
        ]
        lines += [f"agi_arg_{n}: {arg}" for n, arg in enumerate(self.args, 1)]
        return lines + [""]

    def line_received(self, line: str) -> None:
        """A command line from the server (LF stripped, any CR kept)."""
        if self.closed:
            return
        self.lines.append(line)
        self._poke("agi")

    def connection_lost(self) -> None:
        """The server closed the socket: the AGI application returns."""
        if not self.closed:
            self.closed = True
            self._poke("agi")

    def _poke(self, reason: str) -> None:
        """Input arrived: wake the session if it waits for input or plays a prompt."""
        if self._idle is not None:
            idle, self._idle = self._idle, None
            idle.callback(reason)
        elif self.media or self._idle_on_channel:
            self.world.wake_now(self.chan, reason)

    # -- the application side -------------------------------------------------------------

    async def run(self) -> int:
        """Connect, send the environment, serve commands; the dialplan result."""
        world, chan = self.world, self.chan
        try:
            await world.agi.connect(self)
        except Exception as error:
            log.warn("pbxsim: FastAGI {url} failed for {channel} ({error}); dialplan continues",
                     url=self.url, channel=chan.name, error=str(error) or type(error).__name__)
            world.set_var(chan, "AGISTATUS", "FAILURE")
            return -1 if chan.hangup_pending else 0
        for line in self.env_block():
            self.write(line)
        while not self.closed:
            if self.lines:
                await self.execute(self.lines.popleft())
                continue
            reason = await self._wait_input()
            if reason in ("hangup", "goto", "move") and not self.dead:
                self._hangup_notice()
                if reason != "hangup":
                    self.closed = True
                    self.close()
        world.set_var(chan, "AGISTATUS", "HANGUP" if self.dead and chan.hangup_pending else "SUCCESS")
        return -1 if chan.hangup_pending else 0

    async def _wait_input(self) -> str:
        if self.dead:
            self._idle = Deferred()
            return await self._idle
        self._idle_on_channel = True
        try:
            return await self.world.sleep(self.chan, None)
        finally:
            self._idle_on_channel = False

    def _hangup_notice(self) -> None:
        self.dead = True
        self.write("HANGUP")

    async def execute(self, line: str) -> None:
        """Run one command line and write its reply (none if it was abandoned)."""
        world, chan = self.world, self.chan
        argv = parse_args(line)
        command_id = (world.serial() * 2654435761) % 2147483647
        if not self.dead:
            world.chan_event("AGIExecStart", chan, [("CommandId", command_id), ("Command", line)], "agi")
        cmd = find_command(argv)
        if cmd is None:
            reply: str | None = "510 Invalid or unknown command"
        elif self.dead and not cmd.dead_ok:
            reply = DEAD_REPLY
        else:
            self.media = cmd.media
            try:
                reply = await cmd.handler(self, argv)
            finally:
                self.media = False
            if reply == SHOWUSAGE:
                self.write("520-Invalid command syntax.  Proper usage follows:")
                for usage_line in cmd.usage.split("\n"):
                    self.write(usage_line)
                reply = "520 End of proper usage."
        if reply is None:
            return
        self.write(reply)
        if not self.dead and not chan.dead:
            code = int(reply[:3])
            world.chan_event("AGIExecEnd", chan, [("CommandId", command_id), ("Command", line),
                                                  ("ResultCode", code), ("Result", RESULT_TEXT.get(code, ""))],
                             "agi")
        if reply.startswith("200 result=-1") and chan.hangup_pending and not self.dead:
            self._hangup_notice()

    # -- what a simulated caller does while a prompt plays --------------------------------

    def _source(self) -> DtmfSource | None:
        return getattr(self.chan.device, "dtmf", None)

    def _next_key(self, limit: float | None, keys: str | None = None) -> tuple[float, str] | None:
        """The next key press due before ``limit`` (absolute time), if it is one of ``keys``."""
        source = self._source()
        key = source.peek(self.world.now()) if source is not None else None
        if key is None or (limit is not None and key[0] > limit):
            return None
        if keys is not None and key[1] not in keys:
            return None
        return key

    def _press(self, digit: str) -> None:
        source = self._source()
        if source is not None:
            source.take()
        dtmf(self.world, self.chan, digit, 100, "Received")

    async def _until(self, when: float | None) -> str:
        delay = None if when is None else max(0.0, when - self.world.now())
        return await self.world.sleep(self.chan, delay)

    async def play(self, seconds: float, escapes: str, offset: int, wait: float = 0.0) -> str | None:
        """A prompt of ``seconds`` interruptible by ``escapes``, then ``wait`` seconds for a key."""
        start = self.world.now()
        end = start + seconds
        key = self._next_key(end + wait, escapes) if escapes else None
        reason = await self._until(key[0] if key else end + wait)
        played = min(self.world.now(), end) - start
        endpos = offset + int(played * 8000)
        if reason != "timeout":
            return None if reason == "agi" else f"200 result=-1 endpos={endpos}"
        if key is None:
            return f"200 result=0 endpos={endpos}"
        self._press(key[1])
        return f"200 result={ord(key[1])} endpos={endpos}"

    async def wait_digit(self, timeout: float | None) -> str | None:
        """WAIT FOR DIGIT: the next key within ``timeout`` seconds (None: forever)."""
        limit = None if timeout is None else self.world.now() + timeout
        key = self._next_key(limit)
        reason = await self._until(key[0] if key else limit)
        if reason != "timeout":
            return None if reason == "agi" else "200 result=-1"
        if key is None:
            return "200 result=0"
        self._press(key[1])
        return f"200 result={ord(key[1])}"

    async def collect(self, prompt: float, timeout: float, maxdigits: int) -> str | None:
        """GET DATA: digits until ``maxdigits``, ``#`` or ``timeout`` without a key."""
        digits = ""
        deadline = self.world.now() + prompt + timeout
        while len(digits) < maxdigits:
            key = self._next_key(deadline)
            reason = await self._until(key[0] if key else deadline)
            if reason != "timeout":
                return None if reason == "agi" else "200 result=-1"
            if key is None:
                return f"200 result={digits} (timeout)"
            self._press(key[1])
            if key[1] == "#":
                break
            digits += key[1]
            deadline = self.world.now() + timeout
        return f"200 result={digits}"


@application("AGI")
async def app_agi(world: World, chan: Channel, data: str) -> int:
    """AGI(agi://host[:port]/script,args…): a FastAGI session (the only kind simulated)."""
    args = split_args(data)
    url = args[0] if args else ""
    if world.agi is None or not url.startswith("agi://"):
        log.warn("pbxsim: no FastAGI for {channel} ({url!r}); dialplan continues", channel=chan.name, url=url)
        world.set_var(chan, "AGISTATUS", "FAILURE")
        return 0
    return await AgiSession(world, chan, url, args[1:]).run()
