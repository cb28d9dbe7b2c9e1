"""FastAGI server: Asterisk's ``AGI(agi://host/script)`` connects here.

Three parts, thin to thick:

* :class:`FastAGIProtocol` frames LF lines, reads the environment block,
  puts **one command at a time** on the wire (Asterisk abandons a running
  media command when more input arrives), pairs each reply with its command,
  treats the unsolicited ``HANGUP`` line as a flag (never as a reply), times
  every command out and fails everything pending when the socket closes.
  Parsing and quoting live in :mod:`ctid.protocols.agiwire`.  Each command
  and reply is logged (at debug level) only when ``log_commands`` is set:
  building a log event costs as much as the rest of a command's handling.
* :class:`~ctid.protocols.agisession.AGISession` (in its own module,
  re-exported here) is the API a script (the IVR) uses: ``answer``,
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
from typing import Any, Union, cast

from twisted.internet import tcp
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger, LogLevel
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ctid.protocols.agisession import AGISession
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
Handler = Callable[[AGISession], Union[Awaitable[Any], "Deferred[Any]", None]]

REDACTED = "<redacted>"


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

    __slots__ = ("name", "line", "sensitive", "timeout", "deferred", "timer", "_cancel")

    def __init__(self, name: str, line: bytes, sensitive: bool, timeout: float, cancel: Callable[[_Command], None]):
        self.name, self.line, self.sensitive, self.timeout = name, line, sensitive, timeout
        self.deferred: Deferred[AGIReply] = Deferred(canceller=self._cancelled)
        self.timer: IDelayedCall | None = None
        self._cancel = cancel

    def _cancelled(self, _: Deferred[AGIReply]) -> None:
        self._cancel(self)

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


def write_now(sock: Any, transport: Any, data: bytes) -> None:
    """Put ``data`` on the wire: straight into ``sock`` (a TCP socket, or None), the rest through ``transport``.

    Twisted holds every write until the reactor's next turn (an epoll
    registration, a wake-up, a send, a deregistration).  FastAGI writes one
    short line and then waits for its reply, so nothing is ever queued before
    it: the line goes out at once, and only what the kernel does not take (or
    an error, which the transport then reports) goes through ``transport``.
    """
    if sock is not None:
        try:
            sent = sock.send(data)
        except OSError:  # EAGAIN, or a dead socket the transport will notice
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


class FastAGIProtocol(LineOnlyReceiver):
    """One FastAGI connection from Asterisk (see the module docstring).

    ``log_commands`` logs every command and reply at debug level (sensitive
    ones redacted); leave it off unless debug logging is on.
    """

    #: Any connected transport; ``disconnecting`` is on every Twisted transport, if not on ITransport.
    transport: Any

    delimiter = b"\n"
    MAX_LENGTH = 16 * 1024

    def __init__(
        self,
        handler: Handler,
        clock: IReactorTime,
        command_timeout: float = 30.0,
        env_timeout: float = 10.0,
        trace: Callable[[State, State], None] | None = None,
        log_commands: bool = False,
    ):
        self.state = State.READING_ENV
        self.env: AGIEnvironment | None = None
        self.session: AGISession | None = None
        self.hung_up = False
        self.command_timeout = command_timeout
        self.log_commands = log_commands
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
        self._socket: Any = None
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
        """Start the timer for the environment block; note the socket of a plain TCP (or UNIX) connection."""
        if isinstance(self.transport, tcp.Connection):
            self._socket = self.transport.getHandle()
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
        self._socket = None
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if self.log_commands:
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
        if self.log_commands:
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
        if self.log_commands:
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
            if self.log_commands:
                log.debug("FastAGI >> {line}", line=command.shown(), command=command.name, **self.log_fields())
            write_now(self._socket, self.transport, command.line)

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
    ``env_timeout`` the seconds to wait for the environment block;
    ``log_commands`` (settable at any time, for new connections) logs each
    command and reply at debug level.
    """

    protocol = FastAGIProtocol
    noisy = False

    def __init__(
        self,
        handler: Handler,
        clock: IReactorTime | None = None,
        command_timeout: float = 30.0,
        env_timeout: float = 10.0,
        log_commands: bool = False,
    ):
        if clock is None:
            from twisted.internet import reactor as default_clock

            clock = cast(IReactorTime, default_clock)
        self.handler = handler
        self.clock: IReactorTime = clock
        self.command_timeout = command_timeout
        self.env_timeout = env_timeout
        self.log_commands = log_commands

    @classmethod
    def for_scripts(
        cls, routes: Mapping[str, Handler], default: Handler | None = None, **kwargs: Any
    ) -> FastAGIFactory:
        """A factory routing by script name through a :class:`ScriptRouter`."""
        return cls(ScriptRouter(routes, default), **kwargs)

    def buildProtocol(self, addr: object) -> FastAGIProtocol:
        """A new protocol for one Asterisk connection."""
        protocol = self.protocol(self.handler, self.clock, self.command_timeout, self.env_timeout,
                                 log_commands=self.log_commands)
        protocol.factory = self
        return protocol
