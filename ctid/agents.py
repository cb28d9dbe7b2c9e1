"""Agents (AG-1): who is logged in where, in which state, and the service log of every change.

Pure domain code: no sockets, time and timers from an injected clock (an
``IReactorTime``).  :class:`AgentBoard` applies the table in
:mod:`ctid.agentstate`; the CTI layer calls it for agents' and supervisors'
requests, the switch integration for call signals, the ACD for reservations.

Records (坐席服务流水): every state change publishes one
:class:`~ctid.agentstate.AgentTransition`; the "not hung up" flag publishes
:class:`~ctid.agentstate.AgentNotHungUp` when set and
:class:`~ctid.agentstate.AgentHungUp` when cleared.  Storage and the ACD
subscribe with :meth:`AgentBoard.subscribe`; records reach every subscriber in
order, once the request that made them is complete, even when a subscriber
acts on the board while being called.  Every
change of availability produces exactly one record, and each record says
whether the agent is available after it.

Rules chosen here:

* **Sign-in** lands in NOT_READY (``login(..., ready=True)`` adds the
  ``ready`` transition).  Agents stay on the board after sign-out, with their
  statistics; a station belongs to at most one logged-in agent.
* **A pause while a call is offered or handled** (RESERVED, RINGING, TALKING,
  HOLD) becomes the pending state; in WRAP_UP it is immediate.  Sign-out is
  refused in those states and in WRAP_UP ("on_call"); a pending sign-out is the
  way.  When wrap-up ends or an offer is withdrawn the agent goes READY, or to
  the pending state (recorded with its reason and who forced it).  Any other
  way out of a call (``ready``/``pause`` in wrap-up, lock, forced sign-out)
  drops the pending state: the latest request wins.
* **Wrap-up** lasts the agent's ``wrap_up_time`` (else the board's); with 0 the
  WRAP_UP record is followed at once by the one leaving it.
* **Lock** (ring-no-answer) lasts until ``unlock``: by the agent (恢复) or by a
  supervisor (``forced_by``, SV-1); ``ready`` and ``pause`` are refused there.
* **Forced** sign-out works in every state, even on a call; a forced pause on
  a call is pending like the agent's own.
* **Not hung up** (未挂机) is a flag, not a state: the agent keeps the AG-1
  state they chose and is only left out of :meth:`AgentBoard.available`.  The
  phone off hook with no call offered or handled for ``not_hung_up_after``
  seconds sets it; on hook or sign-out clears it.
* **Statistics** (:class:`~ctid.agentstate.AgentStats`): ``idle_since`` is
  kept through a withdrawn offer, so the agent keeps their place in "longest
  idle first"; see :func:`~ctid.agentstate.account`.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from twisted.logger import Logger

from ctid.agentstate import (
    AFTER_CALL,
    BUSY,
    ON_CALL,
    PENDING_KINDS,
    TRANSITIONS,
    AgentHungUp,
    AgentNotHungUp,
    AgentRecord,
    AgentState,
    AgentStateError,
    AgentStats,
    AgentTransition,
    Pending,
    account,
    after_call,
    refusal,
)

__all__ = [
    "Agent",
    "AgentBoard",
    "AgentHungUp",
    "AgentNotHungUp",
    "AgentRecord",
    "AgentState",
    "AgentStateError",
    "AgentStats",
    "AgentTransition",
    "Clock",
    "Pending",
]

_OUT, _RDY, _NR, _WU = AgentState.LOGGED_OUT, AgentState.READY, AgentState.NOT_READY, AgentState.WRAP_UP


class Clock(Protocol):
    """The part of ``IReactorTime`` the board uses."""

    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...


Subscriber = Callable[[AgentRecord], object]
Trace = Callable[[str, AgentState, str, AgentState], object]
_F = TypeVar("_F", bound=Callable[..., Any])


def _delivers(method: _F) -> _F:
    """Deliver the records ``method`` queued once it is done, also when it raises."""

    @functools.wraps(method)
    def delivering(self: AgentBoard, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:
            self._deliver()

    return delivering  # type: ignore[return-value]


@dataclass(eq=False)
class Agent:
    """One agent as the board sees them; read it, change it only through :class:`AgentBoard`.

    ``station`` is the device (``PJSIP/1001``); ``skills`` maps a group to a
    level 1..9, higher is more skilled; ``reason`` is the pause reason code;
    ``call_id`` the call offered, handled or wrapped up; ``wrap_up_time``
    ``None`` means the board's default; ``not_hung_up`` the 未挂机 flag.
    """

    agent_id: str
    station: str
    name: str = ""
    skills: dict[str, int] = field(default_factory=dict)
    city: str | None = None
    state: AgentState = _OUT
    reason: str | None = None
    state_since: float = 0.0
    call_id: str | None = None
    pending: Pending | None = None
    wrap_up_time: float | None = None
    off_hook: bool = False
    not_hung_up: bool = False
    stats: AgentStats = field(default_factory=AgentStats)
    _wrap_timer: Any = field(default=None, init=False, repr=False)
    _hook_timer: Any = field(default=None, init=False, repr=False)

    @property
    def available(self) -> bool:
        """READY and not flagged "not hung up": the ACD may offer a call."""
        return self.state is _RDY and not self.not_hung_up


class AgentBoard:
    """The registry of agents and their states (AG-1, AC-7, SV-1).

    ``clock`` gives the time and the timers; ``wrap_up_time`` is the default
    after-call work in seconds; ``not_hung_up_after`` the seconds off hook
    without a call before the 未挂机 flag; ``trace(agent_id, old, trigger,
    new)`` is called on every transition when given.  Refusals raise
    :class:`AgentStateError` before anything changes.
    """

    log = Logger()

    def __init__(self, clock: Clock, wrap_up_time: float = 10.0, not_hung_up_after: float = 30.0,
                 trace: Trace | None = None):
        self._clock = clock
        self.wrap_up_time = wrap_up_time
        self.not_hung_up_after = not_hung_up_after
        self._trace = trace
        self._agents: dict[str, Agent] = {}
        self._stations: dict[str, Agent] = {}
        self._states: dict[AgentState, dict[str, Agent]] = {state: {} for state in AgentState}
        self._available: dict[str, Agent] = {}
        self._subscribers: tuple[Subscriber, ...] = ()
        self._outbox: deque[AgentRecord] = deque()
        self._delivering = False

    # -- subscribers and queries -----------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(record)`` synchronously for every record from now on."""
        self._subscribers += (subscriber,)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber`` (no error if it was not subscribed)."""
        self._subscribers = tuple(s for s in self._subscribers if s != subscriber)

    def get(self, agent_id: str) -> Agent | None:
        """The agent ``agent_id`` (logged out ones too), if ever logged in."""
        return self._agents.get(agent_id)

    def by_station(self, device: str) -> Agent | None:
        """The agent logged in on ``device``, if any."""
        return self._stations.get(device)

    def in_state(self, state: AgentState) -> list[Agent]:
        """The agents in ``state``."""
        return list(self._states[state].values())

    def all(self) -> list[Agent]:
        """Every agent ever logged in, logged out ones included."""
        return list(self._agents.values())

    def available(self) -> list[Agent]:
        """The agents the ACD may offer a call to: READY and not flagged "not hung up"."""
        return list(self._available.values())

    def is_available(self, agent_id: str) -> bool:
        """Whether the ACD may offer a call to ``agent_id``."""
        return agent_id in self._available

    # -- the agent's and the supervisor's requests ----------------------------------------

    @_delivers
    def login(self, agent_id: str, station: str, *, name: str | None = None,
              skills: Mapping[str, int] | None = None, city: str | None = None,
              wrap_up_time: float | None = None, ready: bool = False) -> Agent:
        """Sign ``agent_id`` in on ``station`` (签到): NOT_READY, or READY with ``ready``.

        ``skills``, ``city`` and ``wrap_up_time`` describe this session (the
        CTI layer passes them at every sign-in); ``name`` is kept when omitted.
        """
        agent = self._agents.get(agent_id)
        if agent is not None and agent.state is not _OUT:
            raise AgentStateError("already_logged_in", f"agent {agent_id} is logged in on {agent.station}")
        holder = self._stations.get(station)
        if holder is not None:
            raise AgentStateError("station_in_use", f"agent {holder.agent_id} is logged in on {station}")
        levels = _check_skills(skills or {})
        if agent is None:
            agent = self._agents[agent_id] = Agent(agent_id, station)
            self._states[_OUT][agent_id] = agent
        agent.station, agent.skills, agent.city, agent.wrap_up_time = station, levels, city, wrap_up_time
        agent.name = name if name is not None else agent.name
        self._stations[station] = agent
        self._apply(agent, "login")
        if ready:
            self._apply(agent, "ready")
        return agent

    @_delivers
    def logout(self, agent_id: str, forced_by: str | None = None) -> None:
        """Sign out (签退); refused on a call or in wrap-up unless a supervisor forces it."""
        self._apply(self._logged_in(agent_id), "force_logout" if forced_by else "logout", forced_by=forced_by)

    @_delivers
    def pause(self, agent_id: str, reason: str | None, forced_by: str | None = None) -> bool:
        """Pause with a reason code (暂停); True when it waits for the current call to end."""
        agent = self._logged_in(agent_id)
        if agent.state in ON_CALL:
            agent.pending = Pending("pause", reason, forced_by)
            return True
        self._apply(agent, "force_pause" if forced_by else "pause", reason=reason, forced_by=forced_by)
        return False

    @_delivers
    def ready(self, agent_id: str) -> None:
        """Resume (恢复) from a pause, or end wrap-up early."""
        self._apply(self._logged_in(agent_id), "ready")

    @_delivers
    def unlock(self, agent_id: str, forced_by: str | None = None) -> None:
        """Unlock (解锁) a locked agent, by themselves or by the supervisor ``forced_by``."""
        self._apply(self._logged_in(agent_id), "force_unlock" if forced_by else "unlock", forced_by=forced_by)

    def set_pending(self, agent_id: str, pending: str, reason: str | None = None,
                    forced_by: str | None = None) -> None:
        """Ask for ``pending`` ("pause" with ``reason``, or "logout") once the call and its wrap-up end."""
        agent = self._logged_in(agent_id)
        if pending not in PENDING_KINDS:
            raise AgentStateError("invalid_pending", f"cannot ask for {pending!r} after a call")
        if agent.state not in BUSY:
            raise AgentStateError("not_on_call", f"agent {agent_id} is {agent.state.value}, not on a call")
        agent.pending = Pending(pending, reason if pending == "pause" else None, forced_by)

    def clear_pending(self, agent_id: str) -> None:
        """Forget the pending state: READY after the call."""
        self._logged_in(agent_id).pending = None

    # -- the ACD and the switch ---------------------------------------------------------

    @_delivers
    def reserve(self, agent_id: str, call_id: str) -> None:
        """Hold an available agent for ``call_id`` while it is being offered."""
        agent = self._logged_in(agent_id)
        if agent.state is _RDY and agent.not_hung_up:
            raise AgentStateError("not_available", f"agent {agent_id}'s phone is not hung up")
        self._apply(agent, "reserve", call_id=call_id)

    def ringing(self, agent_id: str, call_id: str | None = None) -> None:
        """The agent's phone rings for their reserved call, or for ``call_id`` dialled directly."""
        self._signal(agent_id, "ring", call_id)

    def answered(self, agent_id: str, call_id: str | None = None) -> None:
        """The agent answered."""
        self._signal(agent_id, "answer", call_id)

    def held(self, agent_id: str, call_id: str | None = None) -> None:
        """The agent put the call on hold."""
        self._signal(agent_id, "hold", call_id)

    def retrieved(self, agent_id: str, call_id: str | None = None) -> None:
        """The agent took the call off hold."""
        self._signal(agent_id, "retrieve", call_id)

    def call_ended(self, agent_id: str, call_id: str | None = None) -> None:
        """The agent's call ended: wrap-up, then READY or the pending state."""
        self._signal(agent_id, "hangup", call_id)

    def offer_cancelled(self, agent_id: str, call_id: str | None = None) -> None:
        """The reservation or ringing was withdrawn: READY (idle time kept) or the pending state."""
        self._signal(agent_id, "offer_cancelled", call_id)

    def ring_no_answer(self, agent_id: str, call_id: str | None = None) -> None:
        """The agent did not answer in time (久不应答): locked until unlocked (AC-7)."""
        self._signal(agent_id, "lock", call_id)

    def phone_off_hook(self, agent_id: str) -> None:
        """The agent's phone is off hook; flagged 未挂机 if it stays so without a call."""
        agent = self._logged_in(agent_id)
        agent.off_hook = True
        self._sync_hook(agent)

    @_delivers
    def phone_on_hook(self, agent_id: str) -> None:
        """The agent's phone is on hook; clears the 未挂机 flag."""
        agent = self._logged_in(agent_id)
        agent.off_hook = False
        self._sync_hook(agent)
        if agent.not_hung_up:
            agent.not_hung_up = False
            self._sync_available(agent)
            self._outbox.append(AgentHungUp(agent.agent_id, self._clock.seconds(), agent.available))

    # -- applying the table ---------------------------------------------------------------

    def _logged_in(self, agent_id: str) -> Agent:
        agent = self._agents.get(agent_id)
        if agent is None or agent.state is _OUT:
            raise AgentStateError("not_logged_in", f"agent {agent_id} is not logged in")
        return agent

    @_delivers
    def _signal(self, agent_id: str, trigger: str, call_id: str | None) -> None:
        agent = self._logged_in(agent_id)
        current = agent.call_id if agent.state in BUSY else None
        if call_id is not None and current is not None and call_id != current:
            raise AgentStateError("wrong_call", f"agent {agent_id} is on call {current}, not {call_id}")
        if trigger == "ring" and agent.state is _RDY and call_id is None:
            raise AgentStateError("wrong_call", f"a call ringing agent {agent_id} directly needs its call id")
        self._apply(agent, trigger, call_id=call_id)

    def _apply(self, agent: Agent, trigger: str, *, reason: str | None = None, call_id: str | None = None,
               forced_by: str | None = None) -> None:
        """Fire ``trigger`` on ``agent`` and queue its record; the caller delivers."""
        old = agent.state
        target = TRANSITIONS.get((old, trigger))
        if target is None:
            raise AgentStateError(refusal(old, trigger), f"agent {agent.agent_id} is {old.value}: cannot {trigger}")
        if target is AFTER_CALL:
            new = after_call(agent.pending)
            if agent.pending is not None:
                reason, forced_by = agent.pending.reason, agent.pending.forced_by
        else:
            new = target
        now = self._clock.seconds()
        record_call = call_id or agent.call_id
        account(agent.stats, old, new, trigger, now)
        self._enter(agent, old, new, now, reason, call_id)
        if self._trace is not None:
            self._trace(agent.agent_id, old, trigger, new)
        self._outbox.append(AgentTransition(agent.agent_id, old, new, trigger, now, agent.reason, record_call,
                                            forced_by, agent.available))
        if new is _WU:
            self._start_wrap_up(agent)

    def _enter(self, agent: Agent, old: AgentState, new: AgentState, now: float, reason: str | None,
               call_id: str | None) -> None:
        """Move ``agent`` to ``new`` and keep the indexes and timers in step."""
        agent.state, agent.state_since = new, now
        agent.reason = reason if new is _NR else None
        if new in BUSY:
            agent.call_id = call_id or agent.call_id
        else:
            agent.call_id = agent.pending = None
        del self._states[old][agent.agent_id]
        self._states[new][agent.agent_id] = agent
        if old is _WU:
            _cancel(agent._wrap_timer)
            agent._wrap_timer = None
        if new is _OUT:
            del self._stations[agent.station]
            agent.off_hook = agent.not_hung_up = False
        self._sync_hook(agent)
        self._sync_available(agent)

    def _start_wrap_up(self, agent: Agent) -> None:
        delay = agent.wrap_up_time if agent.wrap_up_time is not None else self.wrap_up_time
        if delay <= 0:
            self._apply(agent, "wrap_up_done")
        else:
            agent._wrap_timer = self._clock.callLater(delay, self._wrap_up_over, agent)

    @_delivers
    def _wrap_up_over(self, agent: Agent) -> None:
        agent._wrap_timer = None
        if agent.state is _WU:
            self._apply(agent, "wrap_up_done")

    # -- not hung up, availability, delivery ----------------------------------------------

    def _sync_hook(self, agent: Agent) -> None:
        """Run the 未挂机 timer exactly while the phone is off hook with no call and no flag yet."""
        waiting = agent.off_hook and not agent.not_hung_up and agent.state is not _OUT and agent.state not in ON_CALL
        if waiting and agent._hook_timer is None:
            agent._hook_timer = self._clock.callLater(self.not_hung_up_after, self._not_hung_up, agent)
        elif not waiting:
            _cancel(agent._hook_timer)
            agent._hook_timer = None

    @_delivers
    def _not_hung_up(self, agent: Agent) -> None:
        agent._hook_timer = None
        agent.not_hung_up = True
        agent.stats.not_hung_up += 1
        self._sync_available(agent)
        self._outbox.append(AgentNotHungUp(agent.agent_id, self._clock.seconds(), agent.available))

    def _sync_available(self, agent: Agent) -> None:
        if agent.available:
            self._available[agent.agent_id] = agent
        else:
            self._available.pop(agent.agent_id, None)

    def _deliver(self) -> None:
        """Hand the queued records to every subscriber in order (once, however deeply re-entered)."""
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._outbox:
                record = self._outbox.popleft()
                for subscriber in self._subscribers:
                    try:
                        subscriber(record)
                    except Exception:
                        self.log.failure("agent board subscriber {subscriber!r} failed on {record!r}",
                                         subscriber=subscriber, record=record)
        finally:
            self._delivering = False


def _cancel(timer: Any) -> None:
    """Cancel ``timer`` (an ``IDelayedCall`` or ``None``) if it is still pending."""
    if timer is not None and timer.active():
        timer.cancel()


def _check_skills(skills: Mapping[str, int]) -> dict[str, int]:
    """A copy of ``skills`` with every level checked to be an integer 1..9."""
    for group, level in skills.items():
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 9:
            raise AgentStateError("invalid_skill", f"skill {group!r}: level {level!r} is not 1..9")
    return dict(skills)
