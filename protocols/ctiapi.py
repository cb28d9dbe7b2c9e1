"""The CTI session layer and the seam to the command handlers.

A :class:`CTISession` outlives its TCP connection: it has an unguessable
token, the login identity the handler gave it, and a bounded
:class:`ReplayBuffer` of the events sent on it, so a client that lost its
connection can ``Resume`` within the grace period and get what it missed.
The :class:`SessionRegistry` creates, re-attaches, expires and ends
sessions and tells the handler.  Sessions never see a socket: they talk to
the connection currently carrying them through a small :class:`SessionLink`.

Command handlers implement :class:`ICTIHandler` (or subclass
:class:`CommandRouter`); :func:`require_login` is the check for commands
that need a logged-in agent.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from .cticodec import DEFAULT_MAX_LINE, CTIError, ErrorCode, encode_event, is_name

log = Logger()

#: Why a session ended (``CTISession.end_reason``; ``end()`` may give its own reason).
END_BYE, END_EXPIRED, END_RESUME_GAP, END_ENDED, END_SHUTDOWN = "bye", "expired", "resume_gap", "ended", "shutdown"
_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")


class SessionState(enum.Enum):
    """Where a session is; the allowed moves are in :data:`SESSION_TRANSITIONS`."""

    ATTACHED = "attached"  # a connection carries it
    DETACHED = "detached"  # waiting up to resume_grace for a Resume
    ENDED = "ended"  # gone for good


SESSION_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.ATTACHED: frozenset({SessionState.DETACHED, SessionState.ENDED}),
    SessionState.DETACHED: frozenset({SessionState.ATTACHED, SessionState.ENDED}),
    SessionState.ENDED: frozenset(),
}


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


class ICTISession(Interface):
    """What a command handler sees of a client session."""

    token = Attribute("The session's unguessable token (a secret: never log it; ``tag`` is its loggable hash).")
    tag = Attribute("A short hash of the token, for logs.")
    identity = Attribute("The login identity the handler set with login(), or None.")
    connected = Attribute("True while a connection carries the session.")
    peer = Attribute("The address of the (last) connection, ``host:port``.")
    version = Attribute("The negotiated protocol version.")
    client = Attribute("The client's self-description from Hello (``name/version``), possibly empty.")

    def send_event(name, data=None):
        """Queue event ``name`` with ``data`` (a JSON object) to the client; returns its seq."""

    def login(identity):
        """Mark the session logged in as ``identity`` (a dict; no secrets)."""

    def logout():
        """Forget the login identity."""

    def end(reason="ended", message="the server ended the session"):
        """End the session now: the client is told ``session_ended`` (with ``reason``) and cannot resume."""


def require_login(session: CTISession) -> dict[str, Any]:
    """The session's identity; raises CTIError ``login_required`` when nobody logged in."""
    if session.identity is None:
        raise CTIError(ErrorCode.LOGIN_REQUIRED, "log in first")
    return session.identity


class SessionLink(Protocol):
    """What a session needs from the connection carrying it (the CTI server protocol)."""

    @property
    def peer(self) -> str:
        """The remote address, ``host:port``."""

    def events_available(self) -> None:
        """New events were appended to the session's replay buffer: send what the link can."""

    def session_ended(self, notice: CTIError | None) -> None:
        """The session is over (or moved to another link): send ``notice`` if any, then close."""


class _Entry:
    __slots__ = ("seq", "at", "line")

    def __init__(self, seq: int, at: float, line: bytes):
        self.seq, self.at, self.line = seq, at, line


class ReplayBuffer:
    """The last events of a session, bounded by count, age and bytes.

    Every event gets the next sequence number (from 1) even when older ones
    are dropped; :attr:`first_seq` is the oldest still kept (``last_seq + 1``
    when none is).  :attr:`total_bytes` counts every byte ever appended.
    """

    def __init__(self, limit: int = 10_000, max_age: float = 300.0, max_bytes: int = 4 << 20):
        self.limit, self.max_age, self.max_bytes = limit, max_age, max_bytes
        self.last_seq = 0
        self.total_bytes = 0
        self._kept_bytes = 0
        self._entries: dict[int, _Entry] = {}
        self._first = 1

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def first_seq(self) -> int:
        """The oldest seq still held (``last_seq + 1`` when empty)."""
        return self._first

    @property
    def kept_bytes(self) -> int:
        """Bytes held for replay."""
        return self._kept_bytes

    def append(self, line: bytes, at: float) -> int:
        """Keep ``line`` (an encoded event) as the next seq, drop what the bounds exclude, return the seq."""
        self.last_seq += 1
        self._entries[self.last_seq] = _Entry(self.last_seq, at, line)
        self.total_bytes += len(line)
        self._kept_bytes += len(line)
        self.trim(at)
        return self.last_seq

    def trim(self, now: float) -> None:
        """Drop the oldest events beyond the count, byte or age bound."""
        entries = self._entries
        while entries:
            oldest = entries[self._first]
            if len(entries) <= self.limit and self._kept_bytes <= self.max_bytes and now - oldest.at <= self.max_age:
                return
            del entries[self._first]
            self._kept_bytes -= len(oldest.line)
            self._first += 1

    def get(self, seq: int) -> _Entry | None:
        """The entry for ``seq``, or None when it was dropped or does not exist yet."""
        return self._entries.get(seq)

    def covers(self, last_seen: int) -> bool:
        """Whether every event after ``last_seen`` is still held (so a resume can replay them)."""
        return self._first - 1 <= last_seen <= self.last_seq


@implementer(ICTISession)
class CTISession:
    """One client session; created by :class:`SessionRegistry`, given to the handler with every command."""

    def __init__(self, registry: SessionRegistry, token: str, version: int, client: str, peer: str):
        self.token = token
        self.tag = hashlib.sha256(token.encode()).hexdigest()[:10]
        self.version = version
        self.client = client
        self.peer = peer
        self.identity: dict[str, Any] | None = None
        self.state = SessionState.ATTACHED
        self.end_reason: str | None = None
        self.buffer = ReplayBuffer(registry.replay_limit, registry.replay_age, registry.replay_bytes)
        self.link: SessionLink | None = None
        self._registry = registry
        self._grace: IDelayedCall | None = None

    def __repr__(self) -> str:
        return f"<CTISession {self.tag} {self.state.value} identity={self.identity!r}>"

    @property
    def connected(self) -> bool:
        """True while a connection carries the session."""
        return self.state is SessionState.ATTACHED

    @property
    def ended(self) -> bool:
        """True once the session is gone for good (see :attr:`end_reason`)."""
        return self.state is SessionState.ENDED

    def _move(self, new: SessionState, link: SessionLink | None) -> None:
        if new not in SESSION_TRANSITIONS[self.state]:
            raise AssertionError(f"CTI session: no transition {self.state} -> {new}")
        self.state, self.link = new, link

    @property
    def last_seq(self) -> int:
        """The seq of the latest event sent on this session (0 before the first)."""
        return self.buffer.last_seq

    @property
    def logged_in(self) -> bool:
        """Whether the handler logged someone in."""
        return self.identity is not None

    def login(self, identity: Mapping[str, Any]) -> None:
        """Mark the session logged in as ``identity`` (kept across resumes; never put secrets in it)."""
        self.identity = dict(identity)

    def logout(self) -> None:
        """Forget the login identity."""
        self.identity = None

    def send_event(self, name: str, data: Mapping[str, Any] | None = None) -> int:
        """Send event ``name`` with ``data`` to the client and keep it for replay; returns its seq.

        Raises ValueError for a name that is not PascalCase, data that is not
        JSON, or an event longer than the line limit.  On a session that
        has ended the event is dropped and 0 is returned.
        """
        if self.ended:
            log.debug("CTI event {event} dropped: session {session} has ended", event=name, session=self.tag)
            return 0
        if not is_name(name):
            raise ValueError(f"not a CTI event name: {name!r}")
        now = self._registry.clock.seconds()
        line = encode_event(name, self.buffer.last_seq + 1, now, dict(data or {}))
        if len(line) > self._registry.max_line + 1:
            raise ValueError(f"CTI event {name} is {len(line)} bytes, over the line limit")
        seq = self.buffer.append(line, now)
        if self.link is not None:
            self.link.events_available()
        return seq

    def end(self, reason: str = END_ENDED, message: str = "the server ended the session") -> None:
        """End the session now (a forced logout, the agent logged in elsewhere …); no resume.

        The client is told ``session_ended`` with ``message`` and ``{"reason":
        reason}`` and disconnected; ``reason`` (snake_case) becomes
        :attr:`end_reason`.
        """
        if not _REASON.match(reason):
            raise ValueError(f"not a snake_case reason: {reason!r}")
        self._registry.end(self, reason, CTIError(ErrorCode.SESSION_ENDED, message, {"reason": reason}))


class SessionRegistry:
    """Every live session by token; creates, re-attaches, expires and ends them and tells the handler."""

    def __init__(self, handler: Any, clock: IReactorTime, *, resume_grace: float = 60.0, replay_limit: int = 10_000,
                 replay_age: float = 300.0, replay_bytes: int = 4 << 20, max_line: int = DEFAULT_MAX_LINE):
        self.handler = handler
        self.clock = clock
        self.resume_grace = resume_grace
        self.replay_limit, self.replay_age, self.replay_bytes = replay_limit, replay_age, replay_bytes
        self.max_line = max_line
        self._sessions: dict[str, CTISession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[CTISession]:
        return iter(list(self._sessions.values()))

    def get(self, token: str) -> CTISession | None:
        """The live session with ``token``, if any."""
        return self._sessions.get(token)

    def create(self, link: SessionLink, version: int, client: str) -> CTISession:
        """A new session carried by ``link``."""
        session = CTISession(self, secrets.token_urlsafe(32), version, client, link.peer)
        self._sessions[session.token] = session
        session.link = link
        log.info("CTI session {session} opened from {peer} by {client!r} (version {version})",
                 session=session.tag, peer=link.peer, client=client, version=version)
        return session

    def resume(self, token: str, last_seq: int, link: SessionLink) -> CTISession:
        """Move the session ``token`` onto ``link``; the link then replays from ``last_seq + 1``.

        Raises CTIError ``unknown_session`` (no such live session),
        ``bad_request`` (``last_seq`` ahead of the session) or ``resume_gap``
        (events after ``last_seq`` were dropped; the session is ended).  A
        link still carrying the session is closed with ``session_replaced``.
        """
        session = self._sessions.get(token)
        if session is None:
            raise CTIError(ErrorCode.UNKNOWN_SESSION, "no such session (it ended or expired); start with Hello")
        session.buffer.trim(self.clock.seconds())
        if last_seq > session.buffer.last_seq:
            raise CTIError(ErrorCode.BAD_REQUEST, f"last_seq {last_seq} is ahead of the session")
        if not session.buffer.covers(last_seq):
            self.end(session, END_RESUME_GAP)
            raise CTIError(ErrorCode.RESUME_GAP, "events after last_seq are no longer held; start with Hello")
        old = session.link
        if old is not None:
            self.detach(session, old, CTIError(ErrorCode.SESSION_REPLACED, "the session was resumed elsewhere"))
        self._cancel_grace(session)
        session._move(SessionState.ATTACHED, link)
        session.peer = link.peer
        log.info("CTI session {session} resumed from {peer} after seq {last_seq} ({replay} to replay)",
                 session=session.tag, peer=link.peer, last_seq=last_seq, replay=session.last_seq - last_seq)
        self._notify("session_resumed", session)
        return session

    def detach(self, session: CTISession, link: SessionLink, notice: CTIError | None = None) -> None:
        """``link`` no longer carries ``session`` (closed or lost); keep it for the grace period."""
        if session.link is not link:
            return
        session._move(SessionState.DETACHED, None)
        link.session_ended(notice)
        log.info("CTI session {session} disconnected from {peer}; kept {grace}s for resume",
                 session=session.tag, peer=session.peer, grace=self.resume_grace)
        self._notify("session_closed", session)
        if session.state is SessionState.DETACHED:  # unless the handler ended it just now
            session._grace = self.clock.callLater(self.resume_grace, self._expire, session)

    def end(self, session: CTISession, reason: str, notice: CTIError | None = None) -> None:
        """End ``session`` for good: close its connection (sending ``notice``), forget it, tell the handler."""
        if session.ended:
            return
        link = session.link
        session._move(SessionState.ENDED, None)
        session.end_reason = reason
        self._cancel_grace(session)
        self._sessions.pop(session.token, None)
        log.info("CTI session {session} ended ({reason})", session=session.tag, reason=reason)
        if link is not None:
            link.session_ended(notice)
            self._notify("session_closed", session)
        self._notify("session_expired", session)

    def shutdown(self) -> None:
        """End every session (``shutdown``), telling connected clients ``shutting_down``."""
        for session in self:
            self.end(session, END_SHUTDOWN, CTIError(ErrorCode.SHUTTING_DOWN, "the server is shutting down"))

    def _expire(self, session: CTISession) -> None:
        session._grace = None
        if session.state is SessionState.DETACHED:
            self.end(session, END_EXPIRED)

    def _cancel_grace(self, session: CTISession) -> None:
        timer, session._grace = session._grace, None
        if timer is not None and timer.active():
            timer.cancel()

    def _notify(self, method: str, session: CTISession) -> None:
        try:
            result = getattr(self.handler, method)(session)
        except Exception:
            self._failed(Failure(), method, session)
            return
        if isinstance(result, Deferred) or inspect.isawaitable(result):
            ensureDeferred(result).addErrback(self._failed, method, session)  # type: ignore[arg-type]

    def _failed(self, failure: Failure, method: str, session: CTISession) -> None:
        log.failure("CTI handler {method} failed for session {session}", failure, level=LogLevel.error,
                    method=method, session=session.tag)


#: A command implementation for :class:`CommandRouter`: ``fn(session, args) -> dict`` (may be async).
Command = Callable[[CTISession, dict[str, Any]], "Awaitable[dict[str, Any]] | dict[str, Any]"]


@implementer(ICTIHandler)
class CommandRouter:
    """An :class:`ICTIHandler` that runs the function registered for each command name.

    ``add(name, fn, login=True)`` registers ``fn(session, args)``; with
    ``login`` the command answers ``login_required`` until the session has
    logged in.  Unregistered names answer ``unknown_command``.  Subclass and
    override the ``session_*`` notifications as needed (they do nothing here).
    """

    def __init__(self) -> None:
        self._commands: dict[str, tuple[Command, bool]] = {}

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
