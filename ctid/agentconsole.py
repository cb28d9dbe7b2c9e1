"""ctid-agent: a terminal agent desktop on the CTI protocol (docs/cti-protocol.md § 10 and § 11.1).

    scripts/ctid-agent --server tcp:127.0.0.1:7070 --agent 1001 --station 1001 [--password-file FILE]

The password comes from ``--password-file`` (its first line), else the
environment variable ``CTID_AGENT_PASSWORD``, else a ``getpass`` prompt
before the reactor starts; it is never printed or logged.  The program
connects, says Hello and signs the agent in (in the client library's
``setup`` hook, so a resumed session is not signed in twice), prints the
login snapshot, then one line per event, and reads commands from stdin —
``help`` lists them.  Errors print as ``error <code>: <message>`` and never
end the program; a dropped connection is resumed by the client library; the
server ending the session (``session_ended``, ``session_replaced``) or
shutting down ends the program with exit status 1.

Three layers: pure functions (:func:`parse_command` turns a typed line into a
CTI command and its arguments through the :data:`COMMANDS` table — a new
command is one line there; :func:`format_event` and friends turn events and
results into lines, with :data:`EVENT_FORMATS` for the events known by
name); :class:`AgentConsole`, which drives a :class:`ctid.client.CTIClient`
and writes lines through an injected ``write`` (tests collect them in a
list); and :func:`main`, the edge with argv, stdin/stdout, getpass and the
reactor.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, NamedTuple

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IHalfCloseableProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ctid.client import CTIClient, CTIClientError, CTIEvent, ServerInfo
from ctid.protocols.cticodec import CTIError, ErrorCode

__all__ = ["COMMANDS", "EVENT_FORMATS", "AgentConsole", "Credentials", "UsageError", "main", "parse_command"]

CLIENT_NAME = "ctid-agent/0.1"
PASSWORD_ENV = "CTID_AGENT_PASSWORD"
_CTI_NAME = re.compile(r"[A-Z][A-Za-z0-9]{0,63}\Z")
#: Spoken by the client library itself; ``raw`` refuses them.
_TRANSPORT_COMMANDS = frozenset({"Hello", "Resume", "Bye"})

log = Logger()

# --- typed lines -> CTI commands (pure)


class UsageError(ValueError):
    """A typed line that is not a valid command; the message says how to type it."""


class Parsed(NamedTuple):
    """A parsed line: the console command, the CTI command (None: the console's own), its arguments."""

    name: str
    cmd: str | None
    args: dict[str, Any]


#: Builds ``(cti command, args)`` from the table's CTI command and the rest of the line; UsageError if bad.
Builder = Callable[[str | None, str], tuple[str | None, dict[str, Any]]]


class Command(NamedTuple):
    """A console command: the CTI command it sends (None: handled by the console), its arguments, its help."""

    cti: str | None
    build: Builder
    syntax: str
    help: str


def _fixed(**args: Any) -> Builder:
    """A command taking nothing after its name, sending ``args``."""

    def build(cti: str | None, rest: str) -> tuple[str | None, dict[str, Any]]:
        if rest:
            raise UsageError("it takes no arguments")
        return cti, dict(args)

    return build


def _pause(after_call: bool) -> Builder:
    """SetAgentState not_ready, with the rest of the line as the reason code."""

    def build(cti: str | None, rest: str) -> tuple[str | None, dict[str, Any]]:
        args: dict[str, Any] = {"state": "not_ready"}
        if rest:
            args["reason"] = rest
        if after_call:
            args["after_call"] = True
        return cti, args

    return build


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _raw(cti: str | None, rest: str) -> tuple[str | None, dict[str, Any]]:
    """``<Command> [json-object]``: any CTI command with any arguments."""
    name, _, text = rest.partition(" ")
    if not _CTI_NAME.match(name):
        raise UsageError("give a CTI command name such as SnapshotAgent")
    if name in _TRANSPORT_COMMANDS:
        raise UsageError(f"{name} belongs to the client library; use quit to leave")
    try:
        args = json.loads(text, parse_constant=_no_constants) if text.strip() else {}
    except ValueError as error:
        raise UsageError(f"the arguments are not JSON: {error}") from None
    if not isinstance(args, dict):
        raise UsageError("the arguments must be a JSON object")
    return name, args


#: Console command -> (CTI command, argument builder, syntax, help).  Call control goes here, one line each.
COMMANDS: dict[str, Command] = {
    "ready": Command("SetAgentState", _fixed(state="ready"), "", "become ready for calls"),
    "pause": Command("SetAgentState", _pause(after_call=False), "[reason]", "pause now (not ready), with a reason"),
    "pause-after": Command("SetAgentState", _pause(after_call=True), "[reason]", "pause once this call is over"),
    "logout": Command("Logout", _fixed(), "", "sign out"),
    "logout-after": Command("Logout", _fixed(after_call=True), "", "sign out once this call is over"),
    "state": Command("SnapshotAgent", _fixed(), "", "show the agent's state"),
    "queues": Command("SnapshotQueues", _fixed(), "", "show your queues: waiting calls, estimated wait"),
    "raw": Command(None, _raw, "<Command> [json-object]", "send any CTI command, e.g. raw SnapshotAgent {}"),
    "login": Command(None, _fixed(), "", "sign in again (after logout)"),
    "help": Command(None, _fixed(), "", "list the commands"),
    "quit": Command(None, _fixed(), "", "say Bye (the agent is signed out) and exit"),
}


def parse_command(line: str) -> Parsed | None:
    """The command typed on ``line`` (None for a blank line); UsageError with a usage message if it is wrong."""
    word, _, rest = line.strip().partition(" ")
    if not word:
        return None
    name = word.lower()
    command = COMMANDS.get(name)
    if command is None:
        raise UsageError(f"unknown command {word!r}; type help for the list")
    try:
        cmd, args = command.build(command.cti, rest.strip())
    except UsageError as error:
        raise UsageError(f"usage: {name} {command.syntax}".rstrip() + f" — {error}") from None
    return Parsed(name, cmd, args)


def help_lines() -> list[str]:
    """The ``help`` text, one line per command."""
    return ["commands:"] + [f"  {f'{name} {c.syntax}'.rstrip():34} {c.help}" for name, c in COMMANDS.items()]


# --- events and results -> lines (pure)


def compact(value: Any) -> str:
    """Compact JSON with raw Unicode text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def clock_time(at: Any, tz: tzinfo | None = None) -> str:
    """``HH:MM:SS`` of epoch seconds ``at`` in ``tz`` (None: local time)."""
    try:
        return datetime.fromtimestamp(float(at), tz).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "--:--:--"


def _state(data: Mapping[str, Any]) -> str:
    reason = data.get("reason")
    return f"{data.get('state', '?')} {reason}" if reason else str(data.get("state", "?"))


def _pending(data: Mapping[str, Any]) -> str:
    pending = data.get("pending")
    if not isinstance(pending, Mapping) or not pending.get("state"):
        return ""
    reason = pending.get("reason")
    return f"; then {pending['state']}" + (f" {reason}" if reason else "")


def _agent_state_changed(data: Mapping[str, Any]) -> str:
    how = [f"was {data.get('previous', '?')}", f"trigger {data.get('trigger', '?')}"]
    if data.get("forced_by"):
        how.append(f"by {data['forced_by']}")
    return f"{_state(data)} ({', '.join(how)}){_pending(data)}"


def _agent_phone_warning(data: Mapping[str, Any]) -> str:
    if data.get("not_hung_up"):
        return "phone off hook with no call: no calls are offered until it is hung up"
    return "phone hung up: calls can be offered again"


#: Event name -> its readable text; other events print as compact JSON.
def _delivered(data: Mapping[str, Any]) -> str:
    """The screen pop: who is calling, what they dialled, from which queue after how long."""
    extra = " ".join(f"{k}={v}" for k, v in sorted(dict(data.get("data") or {}).items()))
    return (f"call {data.get('call')} from {data.get('ani') or 'unknown'} to {data.get('dnis') or '?'} "
            f"via {data.get('queue')} after {data.get('waited')}s {extra}").rstrip()


EVENT_FORMATS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "Delivered": _delivered,
    "AgentStateChanged": _agent_state_changed,
    "AgentPhoneWarning": _agent_phone_warning,
}


def format_event(event: CTIEvent, tz: tzinfo | None = None) -> str:
    """One line: ``12:03:04 #5 AgentStateChanged ready (was not_ready, trigger ready)``."""
    body = None
    formatter = EVENT_FORMATS.get(event.name)
    if formatter is not None:
        try:
            body = formatter(event.data)
        except (AttributeError, KeyError, TypeError, ValueError):
            body = None  # malformed for its kind: show the JSON
    return f"{clock_time(event.at, tz)} #{event.seq} {event.name} {compact(event.data) if body is None else body}"


def format_agent(agent: Mapping[str, Any], tz: tzinfo | None = None) -> str:
    """An agent object in one line: id, name, station, state and reason, since, call, pending change."""
    name = f" ({agent['name']})" if agent.get("name") else ""
    text = f"agent {agent.get('agent', '?')}{name} on {agent.get('station', '?')}: {_state(agent)}"
    if agent.get("since") is not None:
        text += f" since {clock_time(agent['since'], tz)}"
    if agent.get("call"):
        text += f", call {agent['call']}"
    return text + _pending(agent)


def format_login(result: Mapping[str, Any], tz: tzinfo | None = None) -> str:
    """The Login snapshot: the agent, roles, skills and calls."""
    agent = result.get("agent") if isinstance(result.get("agent"), Mapping) else {}
    parts = [format_agent(agent, tz)]
    if result.get("roles"):
        parts.append("roles " + ", ".join(map(str, result["roles"])))
    if isinstance(agent.get("skills"), Mapping) and agent["skills"]:
        parts.append("skills " + ", ".join(f"{group}={level}" for group, level in agent["skills"].items()))
    if result.get("calls"):
        parts.append(f"calls {compact(result['calls'])}")
    return "; ".join(parts)


def format_result(parsed: Parsed, result: Mapping[str, Any], tz: tzinfo | None = None) -> str:
    """A command's answer: the agent line when it holds one, else (and always for raw) compact JSON."""
    agent = result.get("agent")
    if parsed.name != "raw" and isinstance(agent, Mapping):
        return "ok: " + format_agent(agent, tz)
    return "ok: " + compact(result)


def format_error(error: CTIClientError | CTIError) -> str:
    """``error <code>: <message>``."""
    return f"error {error.code}: {error.message}"


# --- the console


@dataclass(frozen=True)
class Credentials:
    """Who signs in where; the password stays out of repr."""

    agent: str
    station: str
    password: str = field(repr=False)

    def login_args(self) -> dict[str, str]:
        """The arguments of Login."""
        return {"agent": self.agent, "password": self.password, "station": self.station}


class _LossWatch(ProtocolWrapper):
    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        try:
            self.factory.on_lost()
        finally:
            super().connectionLost(reason)


class _LossWatchFactory(WrappingFactory):
    protocol = _LossWatch

    def __init__(self, wrapped: IProtocolFactory, on_lost: Callable[[], None]):
        super().__init__(wrapped)
        self.on_lost = on_lost


@implementer(IStreamClientEndpoint)
class _WatchedEndpoint:
    """Calls ``on_lost()`` whenever a connection made through ``endpoint`` closes."""

    def __init__(self, endpoint: IStreamClientEndpoint, on_lost: Callable[[], None]):
        self._endpoint, self._on_lost = endpoint, on_lost

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        connecting = self._endpoint.connect(_LossWatchFactory(factory, self._on_lost))
        return connecting.addCallback(lambda watch: watch.wrappedProtocol)


class AgentConsole:
    """An agent's session driven by typed lines; everything it shows goes through ``write(line)``.

    ``server`` is a client endpoint string; ``tz`` the zone of the times shown
    (None: local); ``retry_policy`` and ``request_timeout`` go to the
    :class:`CTIClient`.  Call :meth:`start`, feed lines to
    :meth:`line_received`; :meth:`finished` fires with the exit status.
    """

    def __init__(self, reactor: Any, server: str, credentials: Credentials, write: Callable[[str], object], *,
                 tz: tzinfo | None = None, retry_policy: Callable[[int], float] | None = None,
                 request_timeout: float = 10.0):
        self.reactor, self.server, self.credentials, self.write, self.tz = reactor, server, credentials, write, tz
        self.exit_code: int | None = None
        self.client = CTIClient(reactor, name=CLIENT_NAME, setup=self._setup, retry_policy=retry_policy,
                                request_timeout=request_timeout)
        self.client.on_event(None, self._event)
        self.client.on_session(self._session)
        self.client.on_notice(self._notice)
        self._sign_in = True  # sign in on a new session: until the user (or the server) signs out
        self._greeted = self._online = self._closing = False
        self._started: Deferred[None] = Deferred()
        self._tail = self._started  # typed lines wait for the sign-in
        self._waiters: list[Deferred[int]] = []
        self._local = {"login": self._login, "help": self._help, "quit": self._quit}

    async def start(self) -> bool:
        """Connect, greet and sign in, then run the lines typed so far; on failure say why, finish with status 1."""
        try:
            return await self._start()
        finally:
            self._started.callback(None)

    async def _start(self) -> bool:
        who = self.credentials
        self.write(f"connecting to {self.server} as agent {who.agent} on station {who.station}…")
        try:
            endpoint = clientFromString(self.reactor, self.server)
        except (ValueError, KeyError, TypeError) as error:
            await self._finish(1, f"bad server endpoint {self.server!r}: {error}")
            return False
        try:
            await self.client.connect(_WatchedEndpoint(endpoint, self._lost))
        except CTIClientError as error:
            await self._finish(1, format_error(error))
            return False
        except Exception as error:
            await self._finish(1, f"cannot connect to {self.server}: {error}")
            return False
        return True

    def finished(self) -> Deferred[int]:
        """Fires with the exit status once the console has stopped (0 after quit)."""
        waiter: Deferred[int] = Deferred()
        if self.exit_code is not None:
            waiter.callback(self.exit_code)
        else:
            self._waiters.append(waiter)
        return waiter

    def close(self) -> Deferred[int]:
        """Say Bye and stop (stdin closed, Ctrl-C); fires with the exit status."""
        if not self._closing:
            Deferred.fromCoroutine(self._finish(0, "bye"))
        return self.finished()

    async def _finish(self, code: int, message: str | None) -> None:
        if self._closing:
            return
        self._closing = True
        if message:
            self.write(message)
        try:
            await self.client.close()
        except Exception:
            log.failure("closing the CTI client failed")
        self.exit_code = code
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(code)

    # --- typed lines, one at a time in the order typed

    def line_received(self, line: str) -> Deferred[None]:
        """Run the command on ``line`` after :meth:`start` and the lines typed before; fires when it is done."""
        self._tail = Deferred.fromCoroutine(self._after(self._tail, line))
        return self._tail

    def end_of_input(self) -> Deferred[None]:
        """stdin closed: quit once the lines typed before have run."""
        return self.line_received("quit")

    async def _after(self, previous: Deferred[None], line: str) -> None:
        await previous
        if self._closing:
            return
        try:
            parsed = parse_command(line)
        except UsageError as error:
            self.write(str(error))
            return
        if parsed is None:
            return
        try:
            await (self._send if parsed.cmd is not None else self._local[parsed.name])(parsed)
        except Exception as error:  # a bug here must not end the console
            log.failure("console command {command} failed", command=parsed.name)
            self.write(f"error: {error!r}")

    async def _send(self, parsed: Parsed) -> None:
        assert parsed.cmd is not None
        try:
            result = await self.client.request(parsed.cmd, parsed.args)
        except CTIClientError as error:
            self.write(format_error(error))
        except Exception as error:  # a local failure (say, unencodable arguments): tell, carry on
            self.write(f"error: {error}")
        else:
            if parsed.cmd == "Login":
                self._sign_in = True
            self.write(format_result(parsed, result, self.tz))

    async def _login(self, parsed: Parsed) -> None:
        try:
            result = await self.client.call("Login", **self.credentials.login_args())
        except CTIClientError as error:
            self.write(format_error(error))
        else:
            self._sign_in = True
            self.write("signed in: " + format_login(result, self.tz))

    async def _help(self, parsed: Parsed) -> None:
        for line in help_lines():
            self.write(line)

    async def _quit(self, parsed: Parsed) -> None:
        await self._finish(0, "bye")

    # --- what the client library reports

    async def _setup(self, connection: Any) -> None:
        if not self._sign_in:
            return
        try:
            result = await connection.call("Login", **self.credentials.login_args())
        except CTIClientError as error:
            if self._greeted:  # the first attempt's failure is told by start()
                self.write(f"sign-in refused: {format_error(error)}; retrying")
            raise
        self.write("signed in: " + format_login(result, self.tz))

    def _session(self, info: ServerInfo) -> None:
        if not self._greeted:
            self.write(f"connected to {info.server} (protocol {info.version}); type help for the commands")
        elif info.resumed:
            self.write(f"reconnected: session resumed, {info.replay} missed event(s) follow")
        else:
            self.write("reconnected: new session (the old one had ended)")
        self._greeted = self._online = True

    def _lost(self) -> None:
        if self._online and not self._closing and self.client.ended is None:
            self.write("connection lost; reconnecting…")
        self._online = False

    def _event(self, event: CTIEvent) -> None:
        if event.name == "AgentStateChanged" and event.data.get("state") == "logged_out":
            self._sign_in = False
        self.write(format_event(event, self.tz))

    def _notice(self, error: CTIError) -> Deferred[None] | None:
        if error.code == ErrorCode.SESSION_ENDED:
            reason = (error.data or {}).get("reason", "ended")
            why = f"session ended by the server ({reason}): {error.message}"
            return Deferred.fromCoroutine(self._finish(1, f"{why}; exiting (start ctid-agent again to sign in)"))
        if error.code == ErrorCode.SESSION_REPLACED:
            why = f"session taken over by another client: {error.message}"
            return Deferred.fromCoroutine(self._finish(1, f"{why}; exiting"))
        if error.code == ErrorCode.SHUTTING_DOWN:
            why = f"the server is shutting down: {error.message}"
            return Deferred.fromCoroutine(self._finish(1, f"{why}; exiting (try again later)"))
        self.write(f"server notice {error.code}: {error.message}")
        return None


# --- the edge: argv, password, stdin/stdout, reactor


class PasswordError(Exception):
    """No usable password (the message never holds the password)."""


def read_password(path: str | None, environ: Mapping[str, str], prompt: Callable[[str], str], agent: str) -> str:
    """The first line of ``path``, else ``$CTID_AGENT_PASSWORD``, else ``prompt(...)`` (getpass)."""
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                password = file.readline().rstrip("\r\n")
        except OSError as error:
            raise PasswordError(f"cannot read the password file {path}: {error.strerror}") from None
    elif environ.get(PASSWORD_ENV):
        password = environ[PASSWORD_ENV]
    else:
        try:
            password = prompt(f"password for agent {agent}: ")
        except (EOFError, KeyboardInterrupt):
            raise PasswordError("no password given") from None
    if not password:
        raise PasswordError("the password is empty")
    return password


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="ctid-agent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="tcp:127.0.0.1:7070", help="client endpoint string (tls:… for TLS)")
    parser.add_argument("--agent", required=True, help="agent id")
    parser.add_argument("--station", required=True, help="extension (1001) or device (PJSIP/1001)")
    parser.add_argument("--password-file", help=f"file whose first line is the password (else ${PASSWORD_ENV}, "
                                                "else a prompt)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer (default 10)")
    parser.add_argument("--verbose", action="store_true", help="log the client library's messages on stderr")
    return parser.parse_args(argv)


@implementer(IHalfCloseableProtocol)
class ConsoleIO(LineReceiver):
    """stdin lines to the console, the console's lines to stdout; end of input means quit."""

    delimiter = b"\n"
    MAX_LENGTH = 16 * 1024

    def __init__(self, encoding: str):
        self.encoding = encoding
        self.console: AgentConsole | None = None
        self._closed: list[Deferred[None]] = []
        self._gone = False

    def write_line(self, text: str) -> None:
        """Write ``text`` and a newline to stdout."""
        if self.transport is not None and not self._gone:
            self.transport.write((text + "\n").encode(self.encoding, "replace"))

    def lineReceived(self, line: bytes) -> None:
        """Hand a typed line to the console."""
        if self.console is not None:
            self.console.line_received(line.rstrip(b"\r").decode(self.encoding, "replace"))

    def lineLengthExceeded(self, line: bytes) -> None:
        """Refuse an overlong line without closing stdin."""
        self.write_line(f"error: a line over {self.MAX_LENGTH} bytes was ignored")

    def readConnectionLost(self) -> None:
        """End of input (Ctrl-D): quit."""
        if self.console is not None:
            self.console.end_of_input()

    def writeConnectionLost(self) -> None:
        """stdout is gone: nothing more can be shown."""
        self._gone = True

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Both directions closed."""
        self._gone = True
        waiters, self._closed = self._closed, []
        for waiter in waiters:
            waiter.callback(None)

    def flush_and_close(self) -> Deferred[None]:
        """Close stdout once what was written has gone out."""
        waiter: Deferred[None] = Deferred()
        if self._gone or self.transport is None:
            waiter.callback(None)
        else:
            self._closed.append(waiter)
            self.transport.loseConnection()
        return waiter


async def _run(reactor: Any, options: argparse.Namespace, credentials: Credentials) -> None:
    from twisted.internet.stdio import StandardIO

    io = ConsoleIO(sys.stdout.encoding or "utf-8")
    StandardIO(io, reactor=reactor)
    console = AgentConsole(reactor, options.server, credentials, io.write_line, request_timeout=options.timeout)
    io.console = console
    reactor.addSystemEventTrigger("before", "shutdown", console.close)  # Ctrl-C: still say Bye
    if await console.start():
        await console.finished()
    code = console.exit_code
    await io.flush_and_close().addTimeout(2, reactor).addErrback(lambda _: None)
    if code:
        raise SystemExit(code)


def _start_logging(verbose: bool) -> None:
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    level = LogLevel.info if verbose else LogLevel.error
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(level)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def main(argv: list[str] | None = None) -> int:
    """Parse argv, get the password (before the reactor runs: getpass blocks), run until quit or the end."""
    from twisted.internet.task import react

    options = parse_args(argv)
    try:
        password = read_password(options.password_file, os.environ, getpass.getpass, options.agent)
    except PasswordError as error:
        print(f"ctid-agent: {error}", file=sys.stderr)
        return 2
    _start_logging(options.verbose)
    react(_run, [options, Credentials(options.agent, options.station, password)])
    return 0  # react exits the process
