"""Agent states (AG-1): the state enum, the one transition table, refusal codes and service-log records.

Everything here is plain data; :class:`ctid.agents.AgentBoard` applies the
table.  The table maps ``(state, trigger)`` to the new state; a pair that is
not in it is refused with the code :func:`refusal` gives.  The target
:data:`AFTER_CALL` means "READY, or the state the agent asked for after this
call" (a :class:`Pending` pause or sign-out).

Triggers: ``login`` (签到), ``logout`` (签退), ``ready`` (恢复, also ends
wrap-up early), ``pause`` (暂停, also changes the reason code), ``reserve``
(the ACD holds the agent for a call it is about to offer), ``ring``,
``answer``, ``hold``, ``retrieve``, ``hangup`` (the call ended → wrap-up),
``wrap_up_done`` (the wrap-up timer), ``offer_cancelled`` (the reservation or
ringing was withdrawn), ``lock`` (闭锁, ring-no-answer), ``unlock`` (解锁 by the
agent), and the supervisor's ``force_pause``, ``force_logout`` and
``force_unlock`` (SV-1), allowed from more states and recorded with who forced
them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "AFTER_CALL",
    "BUSY",
    "CODES",
    "ON_CALL",
    "PENDING_KINDS",
    "REFUSALS",
    "TRANSITIONS",
    "AgentHungUp",
    "AgentNotHungUp",
    "AgentRecord",
    "AgentState",
    "AgentStateError",
    "AgentStats",
    "AgentTransition",
    "Pending",
    "account",
    "after_call",
    "refusal",
]


class AgentState(enum.Enum):
    """Where an agent is in AG-1; the values are the names the CTI protocol sends."""

    LOGGED_OUT = "logged_out"
    READY = "ready"
    NOT_READY = "not_ready"
    RESERVED = "reserved"
    RINGING = "ringing"
    TALKING = "talking"
    HOLD = "hold"
    WRAP_UP = "wrap_up"
    LOCKED = "locked"


class _Next(enum.Enum):
    AFTER_CALL = "after_call"


#: Table target: READY, or the pending next state (see :func:`after_call`).
AFTER_CALL: Final = _Next.AFTER_CALL

_OUT, _RDY, _NR, _RES, _RNG, _TLK, _HLD, _WU, _LCK = AgentState
#: A call is being offered to or handled by the agent: a pause waits for the call to end.
ON_CALL = frozenset({_RES, _RNG, _TLK, _HLD})
#: Sign-out is refused ("on_call"); a pending pause or sign-out can be set.
BUSY = ON_CALL | {_WU}
_TALK = frozenset({_TLK, _HLD})
_LOGGED_IN = tuple(state for state in AgentState if state is not _OUT)

#: The agent state machine: (state, trigger) -> new state.  Pairs not listed are refused.
TRANSITIONS: dict[tuple[AgentState, str], AgentState | _Next] = {
    (_OUT, "login"): _NR,
    (_RDY, "logout"): _OUT,
    (_NR, "logout"): _OUT,
    (_LCK, "logout"): _OUT,
    (_NR, "ready"): _RDY,
    (_WU, "ready"): _RDY,
    (_RDY, "pause"): _NR,
    (_NR, "pause"): _NR,
    (_WU, "pause"): _NR,
    (_RDY, "reserve"): _RES,
    (_RDY, "ring"): _RNG,  # a call straight to the agent's extension, not through the ACD
    (_RES, "ring"): _RNG,
    (_RES, "answer"): _TLK,  # auto-answer: the ringing was not seen
    (_RNG, "answer"): _TLK,
    (_TLK, "hold"): _HLD,
    (_HLD, "retrieve"): _TLK,
    (_TLK, "hangup"): _WU,
    (_HLD, "hangup"): _WU,
    (_WU, "wrap_up_done"): AFTER_CALL,
    (_RES, "offer_cancelled"): AFTER_CALL,
    (_RNG, "offer_cancelled"): AFTER_CALL,
    (_RES, "lock"): _LCK,
    (_RNG, "lock"): _LCK,
    (_LCK, "unlock"): _RDY,
    (_LCK, "force_unlock"): _RDY,
    (_RDY, "force_pause"): _NR,
    (_NR, "force_pause"): _NR,
    (_WU, "force_pause"): _NR,
    (_LCK, "force_pause"): _NR,
    **{(state, "force_logout"): _OUT for state in _LOGGED_IN},
}

#: Refusals with a code of their own; other illegal pairs get "invalid_transition" (see :func:`refusal`).
REFUSALS: dict[tuple[AgentState, str], str] = {
    **{(state, "logout"): "on_call" for state in BUSY},
    (_LCK, "ready"): "locked",
    (_LCK, "pause"): "locked",
}

#: Every code an :class:`AgentStateError` can carry.
CODES = frozenset({
    "already_logged_in",  # login of an agent who is logged in (here or elsewhere)
    "station_in_use",  # login on a station another agent is logged in on
    "not_logged_in",  # anything but login for an agent who is not logged in
    "on_call",  # sign-out while reserved, ringing, talking, on hold or in wrap-up
    "locked",  # ready/pause while locked: unlock first
    "not_available",  # reserve an agent who is not READY, or flagged "not hung up"
    "not_on_call",  # set a pending state while no call is offered or handled
    "wrong_call",  # a call signal for another call than the agent's
    "invalid_pending",  # a pending state other than "pause" or "logout"
    "invalid_skill",  # a skill level outside 1..9
    "invalid_transition",  # any other illegal (state, trigger)
})

#: What an agent can ask for after the current call.
PENDING_KINDS = frozenset({"pause", "logout"})


class AgentStateError(Exception):
    """An agent action refused; ``code`` (one of :data:`CODES`) is stable and sent to clients."""

    def __init__(self, code: str, message: str):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def refusal(state: AgentState, trigger: str) -> str:
    """The code refusing ``trigger`` in ``state`` (a pair that is not in :data:`TRANSITIONS`)."""
    if trigger == "login":
        return "already_logged_in"
    if state is _OUT:
        return "not_logged_in"
    code = REFUSALS.get((state, trigger))
    if code is not None:
        return code
    return "not_available" if trigger == "reserve" else "invalid_transition"


@dataclass(frozen=True)
class Pending:
    """A state the agent asked for after the current call: ``kind`` "pause" (with ``reason``) or "logout"."""

    kind: str
    reason: str | None = None
    forced_by: str | None = None


def after_call(pending: Pending | None) -> AgentState:
    """The state an :data:`AFTER_CALL` target stands for, given the agent's pending request."""
    if pending is None:
        return _RDY
    return _OUT if pending.kind == "logout" else _NR


# -- service-log records (坐席服务流水) ---------------------------------------------------


@dataclass(frozen=True)
class AgentTransition:
    """One state change: ``trigger`` moved ``agent_id`` from ``old`` to ``new`` at ``at``.

    ``reason`` is the pause reason code when ``new`` is NOT_READY; ``call_id``
    the call offered or handled (also on the record leaving it); ``forced_by``
    the supervisor who forced it; ``available`` whether the agent can take an
    ACD call after it.
    """

    agent_id: str
    old: AgentState
    new: AgentState
    trigger: str
    at: float
    reason: str | None = None
    call_id: str | None = None
    forced_by: str | None = None
    available: bool = False


@dataclass(frozen=True)
class AgentNotHungUp:
    """未挂机: the agent's phone stayed off hook with no call; out of distribution until it hangs up."""

    agent_id: str
    at: float
    available: bool = False


@dataclass(frozen=True)
class AgentHungUp:
    """The phone of an agent flagged :class:`AgentNotHungUp` went on hook; the flag is cleared."""

    agent_id: str
    at: float
    available: bool = False


AgentRecord = AgentTransition | AgentNotHungUp | AgentHungUp


# -- statistics for the ACD -------------------------------------------------------------


@dataclass
class AgentStats:
    """Running figures for the ACD strategies (AC-2), updated by :func:`account` in O(1)."""

    idle_since: float | None = None  #: when the agent last became READY (kept through a withdrawn offer)
    ready_at: float | None = None  #: start of the current stretch in READY
    idle_time_total: float = 0.0
    idle_periods: int = 0
    last_offer_at: float | None = None  #: last reservation (or direct ring from READY)
    answered: int = 0
    talk_since: float | None = None  #: answer time of the current call
    talk_time_total: float = 0.0
    talks: int = 0  #: answered calls that have ended
    no_answer: int = 0  #: locks for ring-no-answer (久不应答)
    not_hung_up: int = 0  #: times flagged 未挂机

    @property
    def avg_talk(self) -> float:
        """Mean talk time of the ended calls (0 before the first)."""
        return self.talk_time_total / self.talks if self.talks else 0.0

    @property
    def avg_idle(self) -> float:
        """Mean length of the ended stretches in READY (0 before the first)."""
        return self.idle_time_total / self.idle_periods if self.idle_periods else 0.0


def account(stats: AgentStats, old: AgentState, new: AgentState, trigger: str, now: float) -> None:
    """Update ``stats`` for the transition ``old`` -> ``new`` by ``trigger`` at ``now``.

    Idle time is time in READY; ``idle_since`` survives an ``offer_cancelled``
    (the agent served nobody).  Talk time runs from answer to the call's end,
    hold included.
    """
    if old is _RDY and new is not _RDY:
        stats.idle_time_total += now - (stats.ready_at if stats.ready_at is not None else now)
        stats.idle_periods += 1
        stats.ready_at = None
        if trigger in ("reserve", "ring"):
            stats.last_offer_at = now
    if new is _RDY and old is not _RDY:
        stats.ready_at = now
        if trigger != "offer_cancelled" or stats.idle_since is None:
            stats.idle_since = now
    if trigger == "answer":
        stats.answered += 1
        stats.talk_since = now
    if old in _TALK and new not in _TALK:
        stats.talk_time_total += now - (stats.talk_since if stats.talk_since is not None else now)
        stats.talks += 1
        stats.talk_since = None
    if trigger == "lock":
        stats.no_answer += 1
