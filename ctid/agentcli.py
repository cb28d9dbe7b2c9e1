"""ctid-agent: a terminal agent desktop on the CTI protocol (docs/cti-protocol.md § 10 and § 11.1).

    scripts/ctid-agent --server tcp:127.0.0.1:7070 --agent 1001 --station 1001 [--password-file FILE]

The password comes from ``--password-file`` (its first line), else the
environment variable ``CTID_AGENT_PASSWORD``, else a ``getpass`` prompt
before the reactor starts; it is never printed or logged.  The program
connects, signs the agent in, prints the login snapshot, then one line per
event, and reads commands from stdin — ``help`` lists them.  The server
ending the session or shutting down ends it with exit status 1.

This module is the edge only: argv, the password, stdin/stdout
(:class:`ConsoleIO`), logging and the reactor; :class:`AgentConsole`
(:mod:`ctid.agentconsole`) does the rest.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from ctid.agentconsole import AgentConsole, Credentials

PASSWORD_ENV = "CTID_AGENT_PASSWORD"


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
