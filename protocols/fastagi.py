"""FastAGI server: Asterisk's ``AGI(agi://host/script)`` connects here.

Three parts, thin to thick:

* :class:`FastAGIProtocol` frames LF lines, reads the environment block,
  puts **one command at a time** on the wire (Asterisk abandons a running
  media command when more input arrives), pairs each reply with its command,
  treats the unsolicited ``HANGUP`` line as a flag (never as a reply), times
  every command out and fails everything pending when the socket closes.
  Parsing and quoting live in :mod:`ctid.protocols.agiwire`.
* :class:`AGISession` is the API a script (the IVR) uses: ``answer``,
  ``stream_file``, ``get_data``, … each returning a Deferred/coroutine.
* :class:`FastAGIFactory` runs one handler per connection (or picks one by
  script name with :class:`ScriptRouter`) and closes the socket when the
  handler ends, which returns the call to the dialplan.
"""

from __future__ import annotations

import enum
import inspect
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Union

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger, LogLevel
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ctid.protocols.agiwire import (
    HANGUP,
    AGICommandError,
    AGIDeadChannelError,
    AGIEnvironment,
    AGIError,
    AGIFailure,
    AGIHangupError,
    AGIProtocolError,
    AGIReply,
    AGITimeoutError,
    AGIUsageError,
    EnvironmentReader,
    ReplyReader,
    format_command,
    is_dead_safe,
)

__all__ = [
    "AGICommandError",
    "AGIDeadChannelError",
    "AGIEnvironment",
    "AGIError",
    "AGIHangupError",
    "AGIProtocolError",
    "AGIReply",
    "AGISession",
    "AGITimeoutError",
    "AGIUsageError",
    "FastAGIFactory",
    "FastAGIProtocol",
    "ScriptRouter",
    "State",
    "run_handler",
]

log = Logger()

#: A script: called with the session once the environment is read.
Handler = Callable[["AGISession"], Union[Awaitable[Any], "Deferred[Any]", None]]

REDACTED = "<redacted>"
#: Asterisk's digit timeout when GET DATA is given 0 (used only to size our own timer).
_DEFAULT_DIGIT_TIMEOUT_MS = 10_000


class State(enum.Enum):
    """Where a FastAGI connection is; the allowed moves are in :data:`TRANSITIONS`."""

    READING_ENV = "reading-env"
    READY = "ready"
    WAITING_REPLY = "waiting-reply"
    READING_520_USAGE = "reading-520-usage"
    CLOSED = "closed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.READING_ENV: frozenset({State.READY, State.CLOSED}),
    State.READY: frozenset({State.WAITING_REPLY, State.CLOSED}),
    State.WAITING_REPLY: frozenset({State.READY, State.READING_520_USAGE, State.CLOSED}),
    State.READING_520_USAGE: frozenset({State.READY, State.CLOSED}),
    State.CLOSED: frozenset(),
}


class _Command:
    """One command: queued, then in flight until its reply, a timeout or the socket closing."""

    __slots__ = ("name", "line", "sensitive", "timeout", "deferred", "timer")

    def __init__(self, name: str, line: bytes, sensitive: bool, timeout: float, cancel: Callable[[_Command], None]):
        self.name, self.line, self.sensitive, self.timeout = name, line, sensitive, timeout
        self.deferred: Deferred[AGIReply] = Deferred(canceller=lambda _: cancel(self))
        self.timer: IDelayedCall | None = None

    def shown(self) -> str:
        """The line as debug logs may show it."""
        return f"{self.name} {REDACTED}" if self.sensitive else self.line.decode("utf-8", "replace").rstrip("\n")

    def settle(self, outcome: AGIReply | Exception) -> None:
        """Stop the timer and fire the Deferred, unless it already fired (cancelled, timed out)."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.deferred.called:
            return
        if isinstance(outcome, AGIReply):
            self.deferred.callback(outcome)
        else:
            self.deferred.errback(outcome)


class FastAGIProtocol(LineOnlyReceiver):
    """One FastAGI connection from Asterisk (see the module docstring)."""

    delimiter = b"\n"
    MAX_LENGTH = 16 * 1024

    def __init__(
        self,
        handler: Handler,
        clock: IReactorTime,
        command_timeout: float = 30.0,
        env_timeout: float = 10.0,
        trace: Callable[[State, State], None] | None = None,
    ):
        self.state = State.READING_ENV
        self.env: AGIEnvironment | None = None
        self.session: AGISession | None = None
        self.hung_up = False
        self.command_timeout = command_timeout
        #: Fires when the handler has finished (after its outcome is logged).
        self.handler_done: Deferred[None] | None = None
        self._handler, self._clock, self._env_timeout, self._trace = handler, clock, env_timeout, trace
        self._env_reader = EnvironmentReader()
        self._replies = ReplyReader()
        self._queue: deque[_Command] = deque()
        self._in_flight: _Command | None = None
        self._env_timer: IDelayedCall | None = None
        self._hangup_waiters: list[Deferred[None]] = []
        self._close_waiters: list[Deferred[None]] = []
        self._dropping = False
        self._log_fields = {"agi_script": "", "agi_channel": "", "agi_uniqueid": ""}

    # --- state and logging helpers

    def _set_state(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise AssertionError(f"FastAGI: no transition {self.state} -> {new}")
        if self._trace is not None:
            self._trace(self.state, new)
        self.state = new

    def log_fields(self) -> dict[str, str]:
        """Structured fields naming this session in log events."""
        return dict(self._log_fields)

    # --- Twisted hooks

    def connectionMade(self) -> None:
        """Start the timer for the environment block."""
        self._env_timer = self._clock.callLater(self._env_timeout, self._env_timed_out)

    def lineReceived(self, line: bytes) -> None:
        """Route one line (trailing CR dropped) to the environment or the reply reader."""
        if self._dropping or self.state is State.CLOSED:
            return
        text = line[:-1].decode("utf-8", "replace") if line.endswith(b"\r") else line.decode("utf-8", "replace")
        try:
            if self.state is State.READING_ENV:
                self._env_line(text)
            else:
                self._reply_line(text)
        except AGIProtocolError as error:
            log.warn("FastAGI: {error}; dropping the connection", error=str(error), **self.log_fields())
            self._drop(error)

    def lineLengthExceeded(self, line: bytes) -> None:
        """Log once and drop the connection: we cannot resynchronise after a cut line."""
        self._buffer = b""
        if not self._dropping:
            log.warn(
                "FastAGI: line longer than {limit} bytes; dropping the connection",
                limit=self.MAX_LENGTH,
                **self.log_fields(),
            )
            self._drop(AGIProtocolError(f"line longer than {self.MAX_LENGTH} bytes"))

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Fail everything pending with AGIHangupError and fire the hang-up and close notifications."""
        if self.state is not State.CLOSED:
            self._set_state(State.CLOSED)
        if self._env_timer is not None and self._env_timer.active():
            self._env_timer.cancel()
        pending = ([self._in_flight] if self._in_flight else []) + list(self._queue)
        self._in_flight = None
        self._queue.clear()
        for command in pending:
            command.settle(AGIHangupError("caller hung up / connection closed"))
        self._mark_hung_up()
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        log.debug("FastAGI: connection closed", **self.log_fields())

    # --- incoming lines

    def _env_line(self, text: str) -> None:
        if text == "HANGUP":
            self._mark_hung_up()
            return
        env = self._env_reader.feed(text)
        if env is None:
            return
        if self._env_timer is not None and self._env_timer.active():
            self._env_timer.cancel()
        self.env = env
        self._log_fields = {"agi_script": env.script, "agi_channel": env.channel, "agi_uniqueid": env.uniqueid}
        self._set_state(State.READY)
        self.session = AGISession(self)
        log.debug("FastAGI: session started", env=dict(env), **self.log_fields())
        self.handler_done = run_handler(self._handler, self.session)

    def _reply_line(self, text: str) -> None:
        event = self._replies.feed(text)
        if event is HANGUP:
            self._hangup_received()
            return
        command = self._in_flight
        if command is None:
            raise AGIProtocolError(f"reply with no command in flight: {text[:80]!r}")
        if event is None:  # inside a 520 usage block
            if self.state is State.WAITING_REPLY:
                self._set_state(State.READING_520_USAGE)
            return
        assert isinstance(event, (AGIReply, AGIFailure))
        self._in_flight = None
        self._set_state(State.READY)
        log.debug(
            "FastAGI << {command}: {reply}",
            command=command.name,
            reply=REDACTED if command.sensitive else repr(event),
            **self.log_fields(),
        )
        command.settle(event if isinstance(event, AGIReply) else event.exception(command.name))
        self._send_next()

    # --- hang-up

    def _hangup_received(self) -> None:
        if self.hung_up:
            log.debug("FastAGI: repeated HANGUP ignored", **self.log_fields())
            return
        log.info("FastAGI: caller hung up", **self.log_fields())
        refused = [command for command in self._queue if not is_dead_safe(command.name)]
        for command in refused:
            self._queue.remove(command)
        self._mark_hung_up()
        for command in refused:
            command.settle(AGIHangupError(f"caller hung up; {command.name} not sent"))

    def _mark_hung_up(self) -> None:
        self.hung_up = True
        waiters, self._hangup_waiters = self._hangup_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def when_hung_up(self) -> Deferred[None]:
        """A Deferred that fires (with None) on ``HANGUP`` or when the connection closes."""
        if self.hung_up:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._hangup_waiters.append(waiter)
        return waiter

    # --- commands

    def send_command(
        self, command: str, *args: str | int, sensitive: bool = False, timeout: float | None = None
    ) -> Deferred[AGIReply]:
        """Queue ``command`` with its arguments (each quoted); fire with its :class:`AGIReply`.

        Errbacks with :class:`AGICommandError` (510), :class:`AGIDeadChannelError`
        (511), :class:`AGIUsageError` (520), :class:`AGITimeoutError` (no reply in
        ``timeout`` seconds, default :attr:`command_timeout`, ``math.inf`` for
        none; the connection is then dropped), :class:`AGIHangupError` (caller
        hung up and the command is not dead-safe, or the socket closed), or
        ValueError (the command cannot be written).  ``sensitive`` keeps the
        arguments and the reply out of the logs.  Cancelling a command still
        in flight leaves its reply to be read and discarded.
        """
        try:
            line = format_command(command, *args)
        except ValueError:
            return fail()
        name = " ".join(command.upper().split())
        if self.state is State.CLOSED or not self._writable():
            return fail(AGIHangupError(f"connection closed; {name} not sent"))
        if self.state is State.READING_ENV:
            return fail(AGIProtocolError("the AGI environment has not been read yet"))
        if self.hung_up and not is_dead_safe(name):
            return fail(AGIHangupError(f"caller hung up; {name} not sent"))
        queued = _Command(name, line, sensitive, self.command_timeout if timeout is None else timeout, self._cancel)
        self._queue.append(queued)
        self._send_next()
        return queued.deferred

    def _send_next(self) -> None:
        while self._in_flight is None and self._queue and self.state is State.READY and self._writable():
            command = self._queue.popleft()
            if self.hung_up and not is_dead_safe(command.name):
                command.settle(AGIHangupError(f"caller hung up; {command.name} not sent"))
                continue
            self._in_flight = command
            self._set_state(State.WAITING_REPLY)
            if math.isfinite(command.timeout):
                command.timer = self._clock.callLater(command.timeout, self._timed_out, command)
            log.debug("FastAGI >> {line}", line=command.shown(), command=command.name, **self.log_fields())
            self.transport.write(command.line)

    def _writable(self) -> bool:
        return not self._dropping and self.transport is not None and not self.transport.disconnecting

    def _cancel(self, command: _Command) -> None:
        if command in self._queue:
            self._queue.remove(command)
        # A command already in flight stays there: its reply must still be read.

    def _timed_out(self, command: _Command) -> None:
        command.timer = None
        log.warn(
            "FastAGI: no reply to {command} in {timeout}s; dropping the connection",
            command=command.name,
            timeout=command.timeout,
            **self.log_fields(),
        )
        self._drop(AGITimeoutError(f"{command.name}: no reply from Asterisk in {command.timeout:g}s"))

    def _env_timed_out(self) -> None:
        log.warn("FastAGI: no environment block in {timeout}s; dropping the connection", timeout=self._env_timeout)
        self._drop(AGITimeoutError("no AGI environment block"))

    def _drop(self, error: Exception) -> None:
        """Fail the command in flight with ``error`` and abort the connection (pairing is lost)."""
        self._dropping = True
        if self._in_flight is not None:
            self._in_flight.settle(error)
        if self.transport is not None:
            self.transport.abortConnection()

    def close(self) -> Deferred[None]:
        """Close the socket (returns the call to the dialplan); fires once it is closed."""
        if self.state is State.CLOSED:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._close_waiters.append(waiter)
        if self.transport is not None and not self.transport.disconnecting:
            self.transport.loseConnection()
        return waiter


def _digit(reply: AGIReply) -> str | None:
    """The DTMF digit a media command reports (ASCII code in ``result``), or None."""
    code = reply.result_int
    return chr(code) if code is not None and 0 < code < 0x110000 else None


class AGISession:
    """What a FastAGI script works with: the environment and the AGI commands.

    Every command method returns a coroutine (wrap with
    ``Deferred.fromCoroutine`` if you need a Deferred) and may raise the
    errors of :meth:`FastAGIProtocol.send_command`.  Media commands whose
    result is -1 raise :class:`AGIHangupError` when the caller hung up and
    :class:`AGICommandError` otherwise (a missing sound file, for example); to
    tell the two apart when ``HANGUP`` has not arrived yet, the session sends
    one dead-safe ``NOOP``, which Asterisk answers only after reporting the
    hang-up.  ``sensitive=True`` keeps a command's arguments and reply out of
    the logs.  :attr:`last_reply` holds the reply of the last command (for
    ``endpos``).
    """

    def __init__(self, protocol: FastAGIProtocol):
        assert protocol.env is not None
        self._protocol = protocol
        #: The ``agi_*`` variables.
        self.env: AGIEnvironment = protocol.env
        #: The last :class:`AGIReply` received through this session.
        self.last_reply: AGIReply | None = None
        #: The name of the last command sent (for logs).
        self.last_command: str | None = None

    @property
    def hung_up(self) -> bool:
        """True once Asterisk reported ``HANGUP`` or the connection closed."""
        return self._protocol.hung_up

    def when_hung_up(self) -> Deferred[None]:
        """A Deferred firing (with None) when the caller hangs up or the connection closes."""
        return self._protocol.when_hung_up()

    def log_fields(self) -> dict[str, str]:
        """Structured fields naming this session, for the script's own log events."""
        return self._protocol.log_fields()

    def close(self) -> Deferred[None]:
        """End the AGI: close the socket so the dialplan continues; fires once closed."""
        return self._protocol.close()

    async def send_command(
        self, command: str, *args: str | int, sensitive: bool = False, timeout: float | None = None
    ) -> AGIReply:
        """Send any AGI command (arguments are quoted for you) and return its reply."""
        self.last_command = " ".join(command.upper().split())
        reply = await self._protocol.send_command(command, *args, sensitive=sensitive, timeout=timeout)
        self.last_reply = reply
        return reply

    async def _media(
        self, command: str, *args: str | int, extra: float = 0.0, timeout: float | None = None, sensitive: bool = False
    ) -> AGIReply:
        if timeout is None:
            timeout = self._protocol.command_timeout + extra
        reply = await self.send_command(command, *args, sensitive=sensitive, timeout=timeout)
        if reply.result_int == -1:
            await self._failed(command, reply, sensitive)
        return reply

    async def _failed(self, command: str, reply: AGIReply, sensitive: bool) -> None:
        """Raise the right error for ``result=-1``: hang-up, or a failure of the command."""
        if reply.data != "hangup" and not self.hung_up:
            try:
                await self._protocol.send_command("NOOP")
            except AGIHangupError:
                pass
        if reply.data == "hangup" or self.hung_up:
            raise AGIHangupError(f"caller hung up during {command}")
        detail = f" ({reply.data})" if reply.data and not sensitive else ""
        raise AGICommandError(-1, "failed" + detail, command)

    async def answer(self) -> None:
        """Answer the channel."""
        await self._media("ANSWER")

    async def stream_file(
        self, filename: str, escape_digits: str = "", offset: int | None = None, *, timeout: float | None = None
    ) -> str | None:
        """Play ``filename``; return the escape digit pressed, or None if it played to the end.

        ``last_reply.endpos`` is the sample where playback stopped.  Long
        prompts may need a ``timeout`` above the default command timeout.
        """
        extra = () if offset is None else (offset,)
        return _digit(await self._media("STREAM FILE", filename, escape_digits, *extra, timeout=timeout))

    async def get_data(
        self, filename: str, timeout_ms: int = 5000, max_digits: int | None = None, *, sensitive: bool = False
    ) -> tuple[str, bool]:
        """Play ``filename`` and collect DTMF; return ``(digits, timed_out)``.

        Asterisk allows ``timeout_ms`` per digit, so our own timer is the
        command timeout plus that for every digit expected.
        """
        extra = () if max_digits is None else (max_digits,)
        per_digit = (timeout_ms if timeout_ms > 0 else _DEFAULT_DIGIT_TIMEOUT_MS) / 1000
        reply = await self._media(
            "GET DATA", filename, timeout_ms, *extra, extra=per_digit * (max_digits or 1), sensitive=sensitive
        )
        return reply.result, reply.data == "timeout"

    async def wait_for_digit(self, timeout_ms: int, *, sensitive: bool = False) -> str | None:
        """Wait up to ``timeout_ms`` (-1: forever) for one digit; None if none came."""
        timeout = math.inf if timeout_ms < 0 else None
        reply = await self._media(
            "WAIT FOR DIGIT", timeout_ms, extra=max(timeout_ms, 0) / 1000, timeout=timeout, sensitive=sensitive
        )
        return _digit(reply)

    async def say_digits(self, digits: str | int, escape_digits: str = "", *, sensitive: bool = False) -> str | None:
        """Say ``digits`` one by one; return the escape digit pressed, or None."""
        return _digit(await self._media("SAY DIGITS", digits, escape_digits, sensitive=sensitive))

    async def say_number(
        self, number: int | str, escape_digits: str = "", gender: str | None = None, *, sensitive: bool = False
    ) -> str | None:
        """Say ``number``; return the escape digit pressed, or None."""
        extra = () if gender is None else (gender,)
        return _digit(await self._media("SAY NUMBER", number, escape_digits, *extra, sensitive=sensitive))

    async def say_alpha(self, text: str, escape_digits: str = "", *, sensitive: bool = False) -> str | None:
        """Spell ``text``; return the escape digit pressed, or None."""
        return _digit(await self._media("SAY ALPHA", text, escape_digits, sensitive=sensitive))

    async def record_file(
        self,
        filename: str,
        fmt: str = "wav",
        escape_digits: str = "#",
        timeout_ms: int = -1,
        *,
        offset: int | None = None,
        beep: bool = True,
        silence_s: int | None = None,
    ) -> AGIReply:
        """Record to ``filename.fmt`` until a digit, ``timeout_ms`` or ``silence_s`` of silence.

        Returns the reply: ``data`` is ``dtmf``/``timeout``, ``result`` the
        digit's ASCII code for ``dtmf``, ``endpos`` the length in samples.
        """
        args: list[str | int] = [filename, fmt, escape_digits, timeout_ms]
        args += [] if offset is None else [offset]
        args += ["BEEP"] if beep else []
        args += [] if silence_s is None else [f"s={silence_s}"]
        timeout = None if timeout_ms >= 0 else math.inf
        return await self._media("RECORD FILE", *args, extra=max(timeout_ms, 0) / 1000, timeout=timeout)

    async def execute(self, application: str, *args: str | int, timeout: float | None = None) -> str:
        """Run a dialplan application (``EXEC``) with ``args`` joined by commas; return its result.

        Raises :class:`AGICommandError` (code -2) if the application does not
        exist.  Applications that run long (Dial, Queue, MusicOnHold) need a
        ``timeout`` above the default command timeout.
        """
        options = (",".join(str(arg) for arg in args),) if args else ()
        reply = await self._media("EXEC", application, *options, timeout=timeout)
        if reply.result_int == -2:
            raise AGICommandError(-2, f"application not found: {application}", "EXEC")
        return reply.result

    async def set_variable(self, name: str, value: str | int, *, sensitive: bool = False) -> None:
        """Set a channel variable."""
        await self.send_command("SET VARIABLE", name, value, sensitive=sensitive)

    async def get_variable(self, name: str, *, sensitive: bool = False) -> str | None:
        """A channel variable or function (``CALLERID(num)``); None if unset."""
        reply = await self.send_command("GET VARIABLE", name, sensitive=sensitive)
        return None if reply.result == "0" else (reply.data or "")

    async def get_full_variable(self, expression: str, channel: str | None = None) -> str | None:
        """Expand ``expression`` (``${VAR}``…) on this or another channel; None if unset/no channel."""
        extra = () if channel is None else (channel,)
        reply = await self.send_command("GET FULL VARIABLE", expression, *extra)
        return None if reply.result == "0" else (reply.data or "")

    async def verbose(self, message: str, level: int = 1) -> None:
        """Write ``message`` to the Asterisk console at verbosity ``level`` (1–4)."""
        await self.send_command("VERBOSE", message, level)

    async def noop(self, text: str | None = None) -> None:
        """Do nothing (a round trip; ``text`` shows up in Asterisk's AGI debug)."""
        await self.send_command("NOOP", *(() if text is None else (text,)))

    async def hangup(self, channel: str | None = None) -> None:
        """Hang up this channel (a no-op if the caller already hung up) or the named one."""
        if channel is None and self.hung_up:
            return
        reply = await self.send_command("HANGUP", *(() if channel is None else (channel,)))
        if reply.result_int == -1:
            raise AGICommandError(-1, f"no such channel: {channel}", "HANGUP")

    async def set_music(self, on: bool, moh_class: str | None = None) -> None:
        """Start (``on=True``) or stop music on hold, optionally of class ``moh_class``."""
        extra = () if moh_class is None else (moh_class,)
        await self.send_command("SET MUSIC", "on" if on else "off", *extra)


# --- running scripts -------------------------------------------------------------------------


def _as_deferred(result: object) -> Deferred[Any]:
    if isinstance(result, Deferred):
        return result
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    if inspect.isawaitable(result):

        async def wait() -> Any:
            return await result

        return Deferred.fromCoroutine(wait())
    return succeed(result)


def run_handler(handler: Handler, session: AGISession) -> Deferred[None]:
    """Run ``handler(session)``, log how it ended, then close the session.

    A hang-up escaping the handler is logged at info level; any other error
    is logged as an error.  The returned Deferred never fails.
    """
    try:
        done = _as_deferred(handler(session))
    except Exception:
        done = fail()
    fields = session.log_fields

    def failed(failure: Failure) -> None:
        if failure.check(AGIHangupError):
            log.info(
                "FastAGI: caller hung up during {agi_script} at {last_command}",
                last_command=session.last_command,
                **fields(),
            )
        else:
            log.failure(
                "FastAGI: script {agi_script} failed at {last_command}",
                failure,
                level=LogLevel.error,
                last_command=session.last_command,
                **fields(),
            )

    def close(_: object) -> None:
        session.close()

    done.addErrback(failed)
    done.addCallback(close)
    return done


class ScriptRouter:
    """A handler that picks the script's handler by name (``agi://host/<script>``).

    An unknown script (with no ``default``) is logged, reported on the
    Asterisk console with VERBOSE, and the call returns to the dialplan.
    """

    def __init__(self, routes: Mapping[str, Handler], default: Handler | None = None):
        self.routes = dict(routes)
        self.default = default

    def __call__(self, session: AGISession) -> Awaitable[Any] | Deferred[Any] | None:
        handler = self.routes.get(session.env.script, self.default)
        if handler is None:
            return self._unknown(session)
        return handler(session)

    async def _unknown(self, session: AGISession) -> None:
        script = "".join(ch if ch.isprintable() else "?" for ch in session.env.script[:200])
        log.warn(
            "FastAGI: unknown script {script!r}; returning the call to the dialplan",
            script=script,
            **session.log_fields(),
        )
        await session.verbose(f"ctid: unknown AGI script {script}", 1)


class FastAGIFactory(Factory):
    """Builds a :class:`FastAGIProtocol` per connection, all running ``handler``.

    ``clock`` (default: the global reactor) drives the timeouts;
    ``command_timeout`` is the default seconds to wait for a reply,
    ``env_timeout`` the seconds to wait for the environment block.
    """

    protocol = FastAGIProtocol
    noisy = False

    def __init__(
        self,
        handler: Handler,
        clock: IReactorTime | None = None,
        command_timeout: float = 30.0,
        env_timeout: float = 10.0,
    ):
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.handler = handler
        self.clock = clock
        self.command_timeout = command_timeout
        self.env_timeout = env_timeout

    @classmethod
    def for_scripts(
        cls, routes: Mapping[str, Handler], default: Handler | None = None, **kwargs: Any
    ) -> FastAGIFactory:
        """A factory routing by script name through a :class:`ScriptRouter`."""
        return cls(ScriptRouter(routes, default), **kwargs)

    def buildProtocol(self, addr: object) -> FastAGIProtocol:
        """A new protocol for one Asterisk connection."""
        protocol = FastAGIProtocol(self.handler, self.clock, self.command_timeout, self.env_timeout)
        protocol.factory = self
        return protocol
