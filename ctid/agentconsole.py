"""ctid-agent's console: an agent's CTI session driven by typed lines (docs/cti-protocol.md § 10 and § 11.1).

:class:`AgentConsole` connects with a :class:`ctid.client.CTIClient`, signs
the agent in (in the client library's ``setup`` hook, so a resumed session
is not signed in twice), runs typed lines one at a time in the order typed
(:mod:`ctid.consolecommands`) and writes what happens through an injected
``write`` (:mod:`ctid.consoleformat`; tests collect the lines in a list).
Errors show as ``error <code>: <message>`` and never end the console; a
dropped connection is resumed by the client library; the server ending the
session (``session_ended``, ``session_replaced``) or shutting down ends it
with status 1.  :mod:`ctid.agentcli` is the program around it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ctid.client import CTIClient, CTIClientError, CTIEvent, ServerInfo
from ctid.consolecommands import Parsed, UsageError, help_lines, parse_command
from ctid.consoleformat import format_error, format_event, format_login, format_result
from ctid.protocols.cticodec import CTIError, ErrorCode

CLIENT_NAME = "ctid-agent/0.1"

log = Logger()


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
        return connecting.addCallback(_wrapped_protocol)


def _wrapped_protocol(watch: IProtocol) -> IProtocol:
    return cast(_LossWatch, watch).wrappedProtocol  # what _LossWatchFactory builds


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
