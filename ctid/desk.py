"""The agent's desk on the CTI protocol: sign in, agent state, snapshots, state events.

Commands (CSTA-style names; docs/cti-protocol.md has the wire details):

- ``Login {agent, password, station}`` — checks the password through the
  directory (:class:`ctid.interfaces.IDirectory`), signs the agent in on the
  station's phone and answers with a snapshot.
- ``Logout {after_call?}`` — signs out; refused with ``on_call`` while on a
  call unless ``after_call`` asks for "sign out after this call".
- ``SetAgentState {state: ready|not_ready, reason?, after_call?}`` — resume,
  or pause with a reason code (on a call the pause becomes pending).
- ``SnapshotAgent`` — the agent's state now.
- ``SnapshotQueues`` — the queues of the agent's skill groups: calls waiting,
  agents serving, all busy, estimated wait for a new call.

Every change of the agent's state reaches its sessions as an
``AgentStateChanged`` event.  A session whose client never comes back within
the resume grace signs the agent out (or, on a call, after the call), so no
call is offered to a seat with no desktop.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from typing import Any, Literal, overload

from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger

from ctid.acd import ACD, QueueConfig
from ctid.agents import Agent, AgentBoard
from ctid.agentstate import AgentRecord, AgentStateError, AgentTransition
from ctid.directory import AuthenticationError, DirectoryError
from ctid.interfaces import IDirectory
from ctid.loginguard import LoginGuard, TooManyAttempts
from ctid.protocols.ctiapi import CommandRouter, CTIError, CTISession, broadcast, require_login

log = Logger()

STATES = ("ready", "not_ready")
MAX_FIELD = 128


@overload
def _text(args: dict[str, Any], name: str, required: Literal[True] = True) -> str: ...


@overload
def _text(args: dict[str, Any], name: str, required: bool) -> str | None: ...


def _text(args: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
        raise CTIError("bad_request", f"{name} must be a non-empty string of at most {MAX_FIELD} characters")
    return value


def _flag(args: dict[str, Any], name: str) -> bool:
    value = args.get(name, False)
    if not isinstance(value, bool):
        raise CTIError("bad_request", f"{name} must be true or false")
    return value


def plaintext_login_refused(session: CTISession, policy: str) -> bool:
    """Whether ``Login`` must be refused (``tls_required``) on ``session``'s connection.

    TLS connections are always accepted; a plain one only when ``policy`` is
    ``localhost`` ([cti] allow_plaintext_login) and the peer is a loopback
    address or a unix socket.
    """
    if ISSLTransport.providedBy(getattr(session.link, "transport", None)):
        return False
    if policy != "localhost":
        return True
    host = session.peer.rpartition(":")[0].strip("[]")
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return not session.peer.startswith("UNIXAddress")


def agent_view(agent: Agent) -> dict[str, Any]:
    """The agent as clients see it (AgentStateChanged data and snapshots)."""
    pending = agent.pending
    return {
        "agent": agent.agent_id,
        "name": agent.name,
        "station": agent.station,
        "state": agent.state.value,
        "reason": agent.reason,
        "since": agent.state_since,
        "call": agent.call_id,
        "pending": None if pending is None else {"state": pending.kind, "reason": pending.reason},
        "available": agent.available,
        "skills": dict(agent.skills),
        "city": agent.city,
    }


class AgentDesk(CommandRouter):
    """CTI commands of agents, on the agent board, checked against the directory."""

    def __init__(self, board: AgentBoard, directory: IDirectory, station_prefix: str = "PJSIP/",
                 acd: ACD | None = None, queues: Iterable[QueueConfig] = (), guard: LoginGuard | None = None):
        super().__init__()
        #: Failed-login back-off and the login/logout audit (ctid.loginguard); None: neither.
        self.guard = guard
        self.acd = acd
        self.queues = tuple(queues)
        self.board = board
        self.directory = directory
        self.station_prefix = station_prefix
        #: [cti] allow_plaintext_login: "localhost" (Login without TLS from loopback peers only) or "no".
        self.plaintext_login = "localhost"
        self.sessions: dict[str, set[CTISession]] = {}
        self.add("Login", self.login, login=False)
        self.add("Logout", self.logout)
        self.add("SetAgentState", self.set_agent_state)
        self.add("SnapshotAgent", self.snapshot_agent)
        self.add("SnapshotQueues", self.snapshot_queues)
        board.subscribe(self._on_record)

    def _station(self, station: str) -> str:
        return station if "/" in station else self.station_prefix + station

    async def login(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Check the password, sign the agent in on the station, answer with a snapshot."""
        if plaintext_login_refused(session, self.plaintext_login):
            log.warn("CTI login from {peer} refused: password over a connection without TLS", peer=session.peer)
            raise CTIError("tls_required", "log in over TLS: this connection is not encrypted")
        agent_id, password, station = _text(args, "agent"), _text(args, "password"), _text(args, "station")
        if session.identity is not None:
            raise CTIError("already_logged_in", "this session is already signed in; Logout first")
        try:
            identity = await (self.directory.authenticate(agent_id, password) if self.guard is None
                              else self.guard.authenticate(self.directory, agent_id, password, session.peer))
        except TooManyAttempts as e:
            raise CTIError("too_many_attempts", str(e), {"retry_after": math.ceil(e.retry_after)}) from None
        except AuthenticationError as e:
            log.info("CTI login refused for {agent} from {peer}: {code}", agent=agent_id, peer=session.peer,
                     code=e.code)
            raise CTIError(e.code, "wrong agent id or password" if e.code == "bad_credentials" else str(e)) from None
        except DirectoryError:
            raise CTIError("directory_unavailable", "the directory cannot be reached; try again") from None
        try:
            agent = self.board.login(identity.agent_id, self._station(station), name=identity.name,
                                     skills=dict(identity.skills), city=identity.city)
        except AgentStateError as e:
            raise CTIError(e.code, e.message) from None
        session.login({"agent": identity.agent_id, "roles": sorted(identity.roles), "station": agent.station,
                       "city": identity.city, "manages": sorted(identity.manages)})
        self.sessions.setdefault(identity.agent_id, set()).add(session)
        log.info("agent {agent} signed in on {station} from {peer}", agent=identity.agent_id,
                 station=agent.station, peer=session.peer)
        return {"agent": agent_view(agent), "calls": [], "roles": sorted(identity.roles),
                "queues": self._queues_of(agent)}

    def _agent(self, agent_id: str) -> Agent:
        agent = self.board.get(agent_id)
        assert agent is not None  # signed in through this desk: the board keeps it, logged out too
        return agent

    def _agent_of(self, session: CTISession) -> str:
        return require_login(session)["agent"]

    def logout(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Sign out now, or after the current call with ``after_call``."""
        agent_id = self._agent_of(session)
        try:
            if _flag(args, "after_call"):
                self.board.set_pending(agent_id, "logout")
                if self.guard is not None:
                    self.guard.logged_out(agent_id, require_login(session)["roles"], session.peer, "after the call")
                return {"agent": agent_view(self._agent(agent_id)), "pending": True}
            self.board.logout(agent_id)
        except AgentStateError as e:
            raise CTIError(e.code, e.message) from None
        if self.guard is not None:
            self.guard.logged_out(agent_id, require_login(session)["roles"], session.peer)
        self._forget(agent_id, session)
        session.logout()
        return {"agent": agent_view(self._agent(agent_id)), "pending": False}

    def set_agent_state(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """``ready`` or ``not_ready`` (with a reason); on a call, a pause is pending."""
        agent_id = self._agent_of(session)
        state = _text(args, "state")
        if state not in STATES:
            raise CTIError("bad_request", f"state must be one of {', '.join(STATES)}")
        reason = _text(args, "reason", required=False)
        try:
            if state == "ready":
                self.board.ready(agent_id)
                pending = False
            elif _flag(args, "after_call"):
                self.board.set_pending(agent_id, "pause", reason=reason)
                pending = True
            else:
                pending = self.board.pause(agent_id, reason or "")
        except AgentStateError as e:
            raise CTIError(e.code, e.message) from None
        return {"agent": agent_view(self._agent(agent_id)), "pending": pending}

    def snapshot_agent(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """The agent's state now."""
        return {"agent": agent_view(self._agent(self._agent_of(session)))}

    def notify(self, agent_id: str, event: str, data: dict[str, Any]) -> None:
        """Send ``event`` to every session of ``agent_id`` (e.g. the ``Delivered`` screen pop), encoded once."""
        broadcast(self.sessions.get(agent_id, ()), event, data)

    def snapshot_queues(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """The queues the agent serves, now."""
        return {"queues": self._queues_of(self._agent(self._agent_of(session)))}

    def _queues_of(self, agent: Agent) -> list[dict[str, Any]]:
        if self.acd is None:
            return []
        views = []
        for queue in self.queues:
            if queue.group not in agent.skills:
                continue
            wait = self.acd.estimated_queue_wait(queue.name)
            views.append({
                "queue": queue.name,
                "group": queue.group,
                "waiting": self.acd.queue_length(queue.name),
                "serving": self.acd.serving(queue.group),
                "all_busy": self.acd.all_busy(queue.name),
                "estimated_wait": None if wait is None else round(wait, 1),
            })
        return views

    def _on_record(self, record: AgentRecord) -> None:
        sessions = self.sessions.get(record.agent_id)
        if not sessions:
            return
        data = agent_view(self._agent(record.agent_id))
        if isinstance(record, AgentTransition):
            data.update(previous=record.old.value, trigger=record.trigger, forced_by=record.forced_by)
            event = "AgentStateChanged"
        else:
            data.update(not_hung_up=type(record).__name__ == "AgentNotHungUp")
            event = "AgentPhoneWarning"
        broadcast(sessions, event, data)

    def _forget(self, agent_id: str, session: CTISession) -> None:
        sessions = self.sessions.get(agent_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self.sessions[agent_id]

    def session_expired(self, session: CTISession) -> None:
        """The client never came back: sign the agent out (after the call if on one)."""
        if session.identity is None:
            return
        agent_id = self._agent_of(session)
        self._forget(agent_id, session)
        if self.sessions.get(agent_id):
            return
        try:
            try:
                self.board.logout(agent_id)
                when = "now"
            except AgentStateError as e:
                if e.code != "on_call":
                    raise
                self.board.set_pending(agent_id, "logout", forced_by="session_expired")
                when = "after the call"
        except AgentStateError as e:
            log.warn("could not sign out {agent} after its session expired: {error}", agent=agent_id, error=e.message)
        else:
            log.info("agent {agent} signed out {when}: desktop session expired", agent=agent_id, when=when)
            if self.guard is not None:
                self.guard.logged_out(agent_id, session.identity.get("roles", ()), session.peer,
                                      f"session expired; signed out {when}")
