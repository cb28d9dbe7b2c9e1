"""The seam between the CTI server and the command handlers: what a handler implements and uses.

Command handlers implement :class:`ICTIHandler` (or subclass
:class:`CommandRouter`); :func:`require_login` is the check for commands
that need a logged-in agent.  Handlers receive :class:`CTISession` objects
(:mod:`ctid.protocols.ctisession`, described by :class:`ICTISession`),
refuse with :class:`CTIError`, and send one event to many sessions with
:func:`broadcast`, which encodes it once.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from zope.interface import Interface, implementer

from .cticodec import CTIError, ErrorCode, is_name
from .ctisession import CTISession, ICTISession, broadcast

__all__ = ["Command", "CommandRouter", "CTIError", "CTISession", "ICTIHandler", "ICTISession", "broadcast",
           "require_login"]


class ICTIHandler(Interface):
    """Runs CTI commands for sessions; the domain side of the CTI server.

    All methods are called on the reactor thread.  The notifications must
    not raise (an exception is logged and ignored); they may return a
    coroutine or Deferred, whose failure is logged too.
    """

    def handle(session, command, args):
        """Run ``command`` (a PascalCase name) with ``args`` (a dict) for ``session``.

        Returns a dict, the result, or a coroutine/Deferred firing with one.
        Raise :class:`~ctid.protocols.cticodec.CTIError` to refuse:
        ``unknown_command`` for a command it does not know, ``bad_request``
        for missing or invalid args, ``login_required`` (see
        :func:`require_login`), or a command-specific code.  Any other
        exception is logged and answered ``internal_error``.  The server
        answers ``timeout`` (and cancels the Deferred) after its
        ``request_timeout``.  A command keeps running if the connection
        drops; its answer is then discarded.  Never sees Hello, Resume,
        Heartbeat or Bye.
        """

    def session_closed(session):
        """The session's connection closed (dropped, timed out, or closed by either side).

        ``session.connected`` is now False.  Unless it has also ended, the
        session can be resumed for ``resume_grace`` seconds; events sent
        meanwhile are kept for the replay.
        """

    def session_resumed(session):
        """A client resumed ``session`` on a new connection (``session.peer`` is its address)."""

    def session_expired(session):
        """The session has ended for good; ``session.end_reason`` says why.

        ``"bye"`` (the client said Bye), ``"expired"`` (not resumed within the
        grace period), ``"resume_gap"`` (a resume found events missing),
        ``"shutdown"``, or the reason given to :meth:`CTISession.end`
        (``"ended"`` by default).  Called once, after :meth:`session_closed`
        if the session was connected.
        """


def require_login(session: CTISession) -> dict[str, Any]:
    """The session's identity; raises CTIError ``login_required`` when nobody logged in."""
    if session.identity is None:
        raise CTIError(ErrorCode.LOGIN_REQUIRED, "log in first")
    return session.identity


#: A command implementation for :class:`CommandRouter`: ``fn(session, args) -> dict`` (may be async).
Command = Callable[[CTISession, dict[str, Any]], "Awaitable[dict[str, Any]] | dict[str, Any]"]


@implementer(ICTIHandler)
class CommandRouter:
    """An :class:`ICTIHandler` that runs the function registered for each command name.

    ``add(name, fn, login=True)`` registers ``fn(session, args)``; with
    ``login`` the command answers ``login_required`` until the session has
    logged in.  Unregistered names answer ``unknown_command``.  Subclass and
    override the ``session_*`` notifications as needed (they do nothing here).
    ``authorize(session, command)``, when set (``ctid.roles.RoleCheck``), runs
    before every login-only command's function and refuses by raising CTIError.
    """

    def __init__(self) -> None:
        self._commands: dict[str, tuple[Command, bool]] = {}
        self.authorize: Callable[[CTISession, str], None] | None = None

    def add(self, name: str, fn: Command, *, login: bool = True) -> None:
        """Run ``fn`` for command ``name``; ``login``: only for a logged-in session."""
        if not is_name(name):
            raise ValueError(f"not a CTI command name: {name!r}")
        self._commands[name] = (fn, login)

    @property
    def commands(self) -> frozenset[str]:
        """The registered command names."""
        return frozenset(self._commands)

    async def handle(self, session: CTISession, command: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run the registered function (see :meth:`ICTIHandler.handle`)."""
        entry = self._commands.get(command)
        if entry is None:
            raise CTIError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {command}")
        fn, login = entry
        if login:
            require_login(session)
            if self.authorize is not None:
                self.authorize(session, command)
        result = fn(session, args)
        if inspect.isawaitable(result):
            result = await result
        return result

    def session_closed(self, session: CTISession) -> None:
        """Nothing by default."""

    def session_resumed(self, session: CTISession) -> None:
        """Nothing by default."""

    def session_expired(self, session: CTISession) -> None:
        """Nothing by default."""
