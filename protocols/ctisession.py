"""CTI sessions: they outlive their TCP connection and number the events sent on them.

A :class:`CTISession` has an unguessable token, the login identity the
handler gave it, and a bounded :class:`~ctid.protocols.ctireplay.ReplayBuffer`
of the events sent on it, so a client that lost its connection can
``Resume`` within the grace period and get what it missed.  The
:class:`SessionRegistry` creates, re-attaches, expires and ends sessions and
tells the handler.  Sessions never see a socket: they talk to the connection
currently carrying them through a small :class:`SessionLink`.

:func:`broadcast` sends one event to many sessions, encoding it once: each
session only adds the shared entry under its next seq and wakes its link.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from .cticodec import DEFAULT_MAX_LINE, CTIError, ErrorCode, encode_event_body, is_name
from .ctireplay import EventEntry, ReplayBuffer

log = Logger()

#: Room kept in a line for ``{"seq":`` and the largest seq a session can reach.
_SEQ_ROOM = len(b'{"seq":') + 20

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


class SessionLink(Protocol):
    """What a session needs from the connection carrying it (the CTI server protocol)."""

    @property
    def peer(self) -> str:
        """The remote address, ``host:port``."""

    def events_available(self) -> None:
        """New events were appended to the session's replay buffer: send what the link can."""

    def session_ended(self, notice: CTIError | None) -> None:
        """The session is over (or moved to another link): send ``notice`` if any, then close."""


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
        if self.state is SessionState.ENDED:
            log.debug("CTI event {event} dropped: session {session} has ended", event=name, session=self.tag)
            return 0
        return self._push(self._registry.prepare(name, data))

    def _push(self, entry: EventEntry) -> int:
        """Number ``entry`` (already encoded), keep it, wake the link; 0 once the session has ended."""
        if self.state is SessionState.ENDED:
            return 0
        seq = self.buffer.append(entry)
        link = self.link
        if link is not None:
            link.events_available()
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

    def prepare(self, name: str, data: Mapping[str, Any] | None) -> EventEntry:
        """Event ``name`` with ``data``, timed now and encoded once for any number of sessions.

        Raises ValueError for a name that is not PascalCase or an event that
        would not fit a line, TypeError or ValueError for data that is not JSON.
        """
        now = self.clock.seconds()
        body = encode_event_body(name, now, {} if data is None else data if type(data) is dict else dict(data))
        if len(body) + _SEQ_ROOM > self.max_line + 1:
            raise ValueError(f"CTI event {name} is {len(body) + _SEQ_ROOM} bytes, over the line limit")
        return now, body

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


def broadcast(sessions: Iterable[CTISession], name: str, data: Mapping[str, Any] | None = None) -> int:
    """Send event ``name`` with ``data`` to every session of ``sessions``; returns how many took it.

    The event is encoded once (with one ``at``) and shared: each session
    numbers it with its own seq and keeps it for replay, as
    :meth:`CTISession.send_event` does; sessions that have ended are
    skipped.  Raises like ``send_event`` before any session gets it.
    """
    targets = tuple(sessions)
    if not targets:
        if not is_name(name):
            raise ValueError(f"not a CTI event name: {name!r}")
        return 0
    entry = targets[0]._registry.prepare(name, data)
    sent = 0
    for session in targets:
        if session._push(entry):
            sent += 1
    return sent
