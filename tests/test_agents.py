"""Agents (ctid.agents, ctid.agentstate): AG-1 states, refusals, 未挂机, statistics, as exact record sequences."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher

from ctid.agents import (
    AgentBoard,
    AgentHungUp,
    AgentNotHungUp,
    AgentState,
    AgentStateError,
    AgentTransition,
    Pending,
)
from ctid.agentstate import BUSY, CODES, TRANSITIONS, refusal

OUT, RDY, NR, RES, RNG, TLK, HLD, WU, LCK = AgentState
START = 100.0


# -- helpers ----------------------------------------------------------------------


class Harness:
    """A board on a fake clock starting at ``START``, with a subscriber recording every record."""

    def __init__(self, **kwargs):
        self.clock = Clock()
        self.clock.advance(START)
        self.traced = []
        self.board = AgentBoard(self.clock, trace=lambda *args: self.traced.append(args), **kwargs)
        self.records = []
        self.board.subscribe(self.records.append)

    def take(self):
        """The records since the last call, then forget them."""
        taken, self.records[:] = self.records[:], []
        return taken

    def at(self, seconds):
        """Move the clock to ``START + seconds``."""
        self.clock.advance(START + seconds - self.clock.seconds())

    def login(self, agent_id="a1", station="PJSIP/1001", **kwargs):
        """Log ``agent_id`` in and forget the records."""
        agent = self.board.login(agent_id, station, **kwargs)
        self.take()
        return agent

    def talking(self, agent_id="a1", call_id="c1"):
        """Bring a READY agent to TALKING on ``call_id`` and forget the records."""
        self.board.reserve(agent_id, call_id)
        self.board.ringing(agent_id)
        self.board.answered(agent_id)
        self.take()


def T(old, new, trigger, at=0.0, reason=None, call_id=None, forced_by=None, agent_id="a1"):
    """The expected transition record; ``at`` is relative to ``START``, ``available`` follows from ``new``."""
    return AgentTransition(agent_id, old, new, trigger, START + at, reason, call_id, forced_by, new is RDY)


def refused(code, action, *args, **kwargs):
    """Assert ``action(*args, **kwargs)`` raises :class:`AgentStateError` with ``code``."""
    with pytest.raises(AgentStateError) as caught:
        action(*args, **kwargs)
    assert caught.value.code == code
    return caught.value


@pytest.fixture
def h():
    """A harness with the default settings (wrap-up 10 s, not hung up after 30 s)."""
    return Harness()


# -- the legal paths of AG-1 ----------------------------------------------------------


def test_whole_call(h):
    """Sign-in, resume, an ACD call with hold, wrap-up ending on its timer: one record per change."""
    h.board.login("a1", "PJSIP/1001")
    h.at(1)
    h.board.ready("a1")
    h.at(5)
    h.board.reserve("a1", "c1")
    h.board.ringing("a1")
    h.at(8)
    h.board.answered("a1")
    h.at(20)
    h.board.held("a1")
    h.at(30)
    h.board.retrieved("a1")
    h.at(50)
    h.board.call_ended("a1")
    h.at(59.9)
    assert h.board.get("a1").state is WU
    h.at(60)
    assert h.take() == [
        T(OUT, NR, "login"), T(NR, RDY, "ready", 1),
        T(RDY, RES, "reserve", 5, call_id="c1"), T(RES, RNG, "ring", 5, call_id="c1"),
        T(RNG, TLK, "answer", 8, call_id="c1"), T(TLK, HLD, "hold", 20, call_id="c1"),
        T(HLD, TLK, "retrieve", 30, call_id="c1"), T(TLK, WU, "hangup", 50, call_id="c1"),
        T(WU, RDY, "wrap_up_done", 60, call_id="c1"),
    ]
    agent = h.board.get("a1")
    assert (agent.state, agent.call_id, agent.state_since) == (RDY, None, START + 60)
    assert h.traced[-1] == ("a1", WU, "wrap_up_done", RDY)
    assert len(h.traced) == 9


def test_login_ready(h):
    """``login(ready=True)`` records sign-in and resume at the same instant."""
    h.board.login("a1", "PJSIP/1001", ready=True)
    assert h.take() == [T(OUT, NR, "login"), T(NR, RDY, "ready")]
    assert h.board.is_available("a1")


def test_hangup_while_on_hold(h):
    """A call that ends while held goes to wrap-up like any other."""
    h.login(ready=True)
    h.talking()
    h.board.held("a1")
    h.board.call_ended("a1", "c1")
    assert h.take() == [T(TLK, HLD, "hold", call_id="c1"), T(HLD, WU, "hangup", call_id="c1")]


def test_wrap_up_zero():
    """With no wrap-up time the WRAP_UP record is followed at once by READY, with no timer left."""
    h = Harness(wrap_up_time=0)
    h.login(ready=True)
    h.talking()
    h.board.call_ended("a1")
    assert h.take() == [T(TLK, WU, "hangup", call_id="c1"), T(WU, RDY, "wrap_up_done", call_id="c1")]
    assert h.clock.getDelayedCalls() == []


def test_wrap_up_time_per_agent(h):
    """An agent's own wrap-up time beats the board's default (10 s)."""
    h.login(ready=True, wrap_up_time=3)
    h.talking()
    h.board.call_ended("a1")
    h.at(3)
    assert h.take()[-1] == T(WU, RDY, "wrap_up_done", 3, call_id="c1")


def test_ready_ends_wrap_up_early(h):
    """``ready`` in wrap-up goes READY at once and the wrap-up timer never fires."""
    h.login(ready=True)
    h.talking()
    h.board.call_ended("a1")
    h.at(2)
    h.board.ready("a1")
    h.at(60)
    assert h.take() == [T(TLK, WU, "hangup", call_id="c1"), T(WU, RDY, "ready", 2, call_id="c1")]
    assert h.clock.getDelayedCalls() == []


def test_pause_in_wrap_up_is_immediate(h):
    """A pause in wrap-up ends it at once with the reason code."""
    h.login(ready=True)
    h.talking()
    h.board.call_ended("a1")
    assert h.board.pause("a1", "lunch") is False
    assert h.take()[-1] == T(WU, NR, "pause", reason="lunch", call_id="c1")
    assert h.board.get("a1").reason == "lunch"


def test_pause_and_change_reason(h):
    """Pause from READY, change the reason while paused, resume: every change recorded."""
    h.login(ready=True)
    assert h.board.pause("a1", "break") is False
    h.board.pause("a1", "training")
    h.board.ready("a1")
    assert h.take() == [T(RDY, NR, "pause", reason="break"), T(NR, NR, "pause", reason="training"),
                        T(NR, RDY, "ready")]
    assert h.board.get("a1").reason is None


def test_pending_pause_after_call(h):
    """A pause while talking waits: after wrap-up the agent goes NOT_READY with that reason."""
    h.login(ready=True)
    h.talking()
    assert h.board.pause("a1", "lunch") is True
    assert h.board.get("a1").pending == Pending("pause", "lunch")
    assert h.board.get("a1").state is TLK
    h.board.call_ended("a1")
    h.at(10)
    assert h.take() == [T(TLK, WU, "hangup", call_id="c1"),
                        T(WU, NR, "wrap_up_done", 10, reason="lunch", call_id="c1")]
    assert h.board.get("a1").pending is None


def test_pending_logout_after_call(h):
    """"Sign out after this call": after wrap-up the agent is logged out and the station free."""
    h.login(ready=True)
    h.talking()
    h.board.set_pending("a1", "logout")
    h.board.call_ended("a1")
    h.at(10)
    assert h.take()[-1] == T(WU, OUT, "wrap_up_done", 10, call_id="c1")
    assert h.board.by_station("PJSIP/1001") is None
    h.board.login("a2", "PJSIP/1001")


def test_pending_set_during_wrap_up(h):
    """A pending pause can still be asked for in wrap-up and applies when it ends."""
    h.login(ready=True)
    h.talking()
    h.board.call_ended("a1")
    h.board.set_pending("a1", "pause", "meeting")
    h.at(10)
    assert h.take()[-1] == T(WU, NR, "wrap_up_done", 10, reason="meeting", call_id="c1")


def test_explicit_ready_drops_pending(h):
    """The latest request wins: ``ready`` in wrap-up forgets a pending pause."""
    h.login(ready=True)
    h.talking()
    h.board.pause("a1", "lunch")
    h.board.call_ended("a1")
    h.board.ready("a1")
    h.at(10)
    assert h.take()[-1] == T(WU, RDY, "ready", call_id="c1")
    assert h.board.get("a1").pending is None


def test_clear_pending(h):
    """Clearing the pending state brings the agent back to READY after the call."""
    h.login(ready=True)
    h.talking()
    h.board.set_pending("a1", "logout")
    h.board.clear_pending("a1")
    h.board.call_ended("a1")
    h.at(10)
    assert h.take()[-1] == T(WU, RDY, "wrap_up_done", 10, call_id="c1")


def test_offer_cancelled_back_to_ready(h):
    """A withdrawn reservation or ringing returns the agent to READY with the call id on the record."""
    h.login(ready=True)
    h.board.reserve("a1", "c1")
    h.board.offer_cancelled("a1", "c1")
    h.board.reserve("a1", "c2")
    h.board.ringing("a1", "c2")
    h.board.offer_cancelled("a1")
    assert h.take() == [
        T(RDY, RES, "reserve", call_id="c1"), T(RES, RDY, "offer_cancelled", call_id="c1"),
        T(RDY, RES, "reserve", call_id="c2"), T(RES, RNG, "ring", call_id="c2"),
        T(RNG, RDY, "offer_cancelled", call_id="c2"),
    ]
    assert h.board.get("a1").call_id is None


def test_offer_cancelled_to_pending(h):
    """A withdrawn offer goes to the pending pause, or the pending sign-out."""
    h.login(ready=True)
    h.board.reserve("a1", "c1")
    assert h.board.pause("a1", "break") is True
    h.board.offer_cancelled("a1")
    h.board.ready("a1")
    h.board.reserve("a1", "c2")
    h.board.set_pending("a1", "logout")
    h.board.offer_cancelled("a1")
    assert h.take() == [
        T(RDY, RES, "reserve", call_id="c1"), T(RES, NR, "offer_cancelled", reason="break", call_id="c1"),
        T(NR, RDY, "ready"), T(RDY, RES, "reserve", call_id="c2"), T(RES, OUT, "offer_cancelled", call_id="c2"),
    ]


def test_direct_ring_and_auto_answer(h):
    """A call straight to the extension rings a READY agent; an auto-answered offer skips RINGING."""
    h.login(ready=True)
    h.board.ringing("a1", "d1")
    h.board.answered("a1", "d1")
    h.board.call_ended("a1", "d1")
    h.board.ready("a1")
    h.board.reserve("a1", "c2")
    h.board.answered("a1")
    assert h.take() == [
        T(RDY, RNG, "ring", call_id="d1"), T(RNG, TLK, "answer", call_id="d1"), T(TLK, WU, "hangup", call_id="d1"),
        T(WU, RDY, "ready", call_id="d1"), T(RDY, RES, "reserve", call_id="c2"), T(RES, TLK, "answer", call_id="c2"),
    ]


def test_ring_no_answer_lock_and_supervisor_unlock(h):
    """Ring-no-answer locks the agent (AC-7); resume and pause are refused until a supervisor unlocks."""
    h.login(ready=True)
    h.board.reserve("a1", "c1")
    h.board.ringing("a1")
    h.at(15)
    h.board.ring_no_answer("a1", "c1")
    assert not h.board.is_available("a1")
    refused("locked", h.board.ready, "a1")
    refused("locked", h.board.pause, "a1", "break")
    h.at(40)
    h.board.unlock("a1", forced_by="sup1")
    assert h.take() == [
        T(RDY, RES, "reserve", call_id="c1"), T(RES, RNG, "ring", call_id="c1"),
        T(RNG, LCK, "lock", 15, call_id="c1"), T(LCK, RDY, "force_unlock", 40, forced_by="sup1"),
    ]
    assert h.board.get("a1").stats.no_answer == 1


def test_agent_unlocks_and_lock_drops_pending(h):
    """The agent may unlock (恢复) themselves; a pending pause is dropped by the lock."""
    h.login(ready=True)
    h.board.reserve("a1", "c1")
    h.board.pause("a1", "break")
    h.board.ring_no_answer("a1")
    assert h.board.get("a1").pending is None
    h.board.unlock("a1")
    assert h.take()[-2:] == [T(RES, LCK, "lock", call_id="c1"), T(LCK, RDY, "unlock")]


def test_locked_agent_signs_out(h):
    """A locked agent can sign out; the record says so."""
    h.login(ready=True)
    h.board.reserve("a1", "c1")
    h.board.ring_no_answer("a1")
    h.board.logout("a1")
    assert h.take()[-1] == T(LCK, OUT, "logout")


def test_forced_pause(h):
    """A supervisor's pause is recorded with who forced it, now or (on a call) after it."""
    h.login(ready=True)
    h.board.pause("a1", "coaching", forced_by="sup1")
    h.board.ready("a1")
    h.talking()
    assert h.board.pause("a1", "coaching", forced_by="sup1") is True
    h.board.call_ended("a1")
    h.at(10)
    assert h.take() == [T(TLK, WU, "hangup", call_id="c1"),
                        T(WU, NR, "wrap_up_done", 10, reason="coaching", call_id="c1", forced_by="sup1")]
    h.board.ready("a1")
    h.board.reserve("a1", "c2")
    h.board.ring_no_answer("a1")
    h.board.pause("a1", "check", forced_by="sup1")
    assert h.take()[-1] == T(LCK, NR, "force_pause", 10, reason="check", forced_by="sup1")


def test_forced_logout_on_a_call(h):
    """A supervisor can sign an agent out even while talking; the talk is closed and later signals refused."""
    h.login(ready=True)
    h.talking()
    h.at(30)
    h.board.logout("a1", forced_by="sup1")
    assert h.take() == [T(TLK, OUT, "force_logout", 30, call_id="c1", forced_by="sup1")]
    assert h.board.get("a1").stats.talk_time_total == 30
    assert h.board.by_station("PJSIP/1001") is None
    refused("not_logged_in", h.board.call_ended, "a1")


def test_forced_logout_in_wrap_up_cancels_timer(h):
    """A forced sign-out in wrap-up leaves no wrap-up timer behind."""
    h.login(ready=True)
    h.talking()
    h.board.call_ended("a1")
    h.board.logout("a1", forced_by="sup1")
    h.at(60)
    assert h.take()[-1] == T(WU, OUT, "force_logout", call_id="c1", forced_by="sup1")
    assert h.clock.getDelayedCalls() == []


# -- refusals -----------------------------------------------------------------------


def into(h, state):
    """Bring agent a1 (logged in, READY) into ``state``."""
    steps = {
        NR: [lambda: h.board.pause("a1", "x")],
        RES: [lambda: h.board.reserve("a1", "c1")],
        RNG: [lambda: h.board.reserve("a1", "c1"), lambda: h.board.ringing("a1")],
        TLK: [lambda: h.talking()],
        HLD: [lambda: h.talking(), lambda: h.board.held("a1")],
        WU: [lambda: h.talking(), lambda: h.board.call_ended("a1")],
        LCK: [lambda: h.board.reserve("a1", "c1"), lambda: h.board.ring_no_answer("a1")],
    }
    for step in steps.get(state, []):
        step()
    assert h.board.get("a1").state is state
    h.take()


@pytest.mark.parametrize("state", sorted(BUSY, key=lambda s: s.value))
def test_sign_out_on_a_call_refused(h, state):
    """Sign-out is refused with "on_call" while reserved, ringing, talking, on hold or in wrap-up."""
    h.login(ready=True)
    into(h, state)
    error = refused("on_call", h.board.logout, "a1")
    assert "a1" in str(error) and str(error).startswith("on_call: ")
    assert h.board.get("a1").state is state
    assert h.take() == []


def test_station_in_use_and_already_logged_in(h):
    """Two agents cannot share a station; an agent cannot log in twice, here or elsewhere."""
    h.login()
    refused("station_in_use", h.board.login, "a2", "PJSIP/1001")
    refused("already_logged_in", h.board.login, "a1", "PJSIP/1001")
    refused("already_logged_in", h.board.login, "a1", "PJSIP/1002")
    assert h.board.get("a2") is None
    assert h.board.by_station("PJSIP/1002") is None
    assert h.take() == []


def test_not_logged_in(h):
    """Every request but login is refused for an unknown or logged-out agent."""
    refused("not_logged_in", h.board.ready, "nobody")
    h.login()
    h.board.logout("a1")
    for action, args in [(h.board.ready, ()), (h.board.pause, ("x",)), (h.board.logout, ()),
                         (h.board.reserve, ("c1",)), (h.board.answered, ()), (h.board.unlock, ()),
                         (h.board.set_pending, ("pause",)), (h.board.phone_off_hook, ())]:
        refused("not_logged_in", action, "a1", *args)


def test_invalid_transitions(h):
    """Illegal pairs get "invalid_transition" and change nothing."""
    h.login(ready=True)
    refused("invalid_transition", h.board.held, "a1")
    refused("invalid_transition", h.board.ready, "a1")
    refused("invalid_transition", h.board.unlock, "a1")
    refused("invalid_transition", h.board.call_ended, "a1")
    refused("invalid_transition", h.board.offer_cancelled, "a1")
    into(h, TLK)
    refused("invalid_transition", h.board.ready, "a1")
    refused("invalid_transition", h.board.retrieved, "a1")
    assert h.board.get("a1").state is TLK
    assert h.take() == []


def test_not_available_and_wrong_call(h):
    """Only READY agents can be reserved; call signals for another call are refused."""
    h.login()
    refused("not_available", h.board.reserve, "a1", "c1")
    h.board.ready("a1")
    refused("wrong_call", h.board.ringing, "a1")
    h.board.reserve("a1", "c1")
    refused("not_available", h.board.reserve, "a1", "c2")
    refused("wrong_call", h.board.ringing, "a1", "c2")
    refused("wrong_call", h.board.offer_cancelled, "a1", "c0")
    assert h.board.get("a1").call_id == "c1"


def test_bad_pending_and_skills(h):
    """A pending state needs a call and a known kind; skill levels are 1..9."""
    refused("invalid_skill", h.board.login, "a1", "PJSIP/1001", skills={"loans": 10})
    refused("invalid_skill", h.board.login, "a1", "PJSIP/1001", skills={"loans": True})
    assert h.board.by_station("PJSIP/1001") is None
    h.login(ready=True, skills={"loans": 9, "cards": 1})
    refused("not_on_call", h.board.set_pending, "a1", "logout")
    into(h, TLK)
    refused("invalid_pending", h.board.set_pending, "a1", "lunch")
    assert h.board.get("a1").pending is None


@pytest.mark.parametrize("state", list(AgentState))
def test_every_refusal_has_a_known_code(state):
    """Every (state, trigger) pair missing from the table is refused with one of the documented codes."""
    triggers = {trigger for _, trigger in TRANSITIONS}
    for trigger in triggers:
        if (state, trigger) not in TRANSITIONS:
            assert refusal(state, trigger) in CODES


# -- not hung up (未挂机) -------------------------------------------------------------


def test_not_hung_up_flag_and_clear(h):
    """Off hook with no call for 30 s flags the agent out of distribution until the phone hangs up."""
    h.login(ready=True)
    h.board.phone_off_hook("a1")
    h.at(29.9)
    assert h.take() == []
    h.at(30)
    assert h.take() == [AgentNotHungUp("a1", START + 30, False)]
    assert h.board.get("a1").state is RDY
    assert h.board.available() == [] and not h.board.get("a1").available
    refused("not_available", h.board.reserve, "a1", "c1")
    h.at(45)
    h.board.phone_on_hook("a1")
    assert h.take() == [AgentHungUp("a1", START + 45, True)]
    assert h.board.is_available("a1")
    assert h.board.get("a1").stats.not_hung_up == 1


def test_on_hook_in_time_is_not_flagged(h):
    """Hanging up before the limit leaves no record and no timer."""
    h.login(ready=True)
    h.board.phone_off_hook("a1")
    h.at(10)
    h.board.phone_on_hook("a1")
    h.at(100)
    assert h.take() == []
    assert h.clock.getDelayedCalls() == []


def test_not_hung_up_after_the_customer_left():
    """Off hook during the call is normal; the limit counts from the call's end, through wrap-up."""
    h = Harness(wrap_up_time=60, not_hung_up_after=20)
    h.login(ready=True)
    h.talking()
    h.board.phone_off_hook("a1")
    h.at(50)
    h.board.call_ended("a1")
    h.at(70)
    h.at(110)
    h.board.phone_on_hook("a1")
    assert h.take() == [
        T(TLK, WU, "hangup", 50, call_id="c1"), AgentNotHungUp("a1", START + 70, False),
        AgentTransition("a1", WU, RDY, "wrap_up_done", START + 110, None, "c1", None, False),
        AgentHungUp("a1", START + 110, True),
    ]


def test_logout_clears_not_hung_up(h):
    """Signing out clears the flag and stops the timer."""
    h.login()
    h.board.phone_off_hook("a1")
    h.board.logout("a1")
    h.at(60)
    assert h.take() == [T(NR, OUT, "logout")]
    assert h.clock.getDelayedCalls() == []
    agent = h.login(station="PJSIP/1002")
    assert (agent.off_hook, agent.not_hung_up) == (False, False)


# -- statistics ---------------------------------------------------------------------


def test_statistics(h):
    """Idle, talk and offer figures follow the transitions; averages count finished periods."""
    h.login()
    stats = h.board.get("a1").stats
    assert (stats.idle_since, stats.avg_talk, stats.avg_idle) == (None, 0.0, 0.0)
    h.at(10)
    h.board.ready("a1")
    h.at(20)
    h.board.reserve("a1", "c1")
    h.board.ringing("a1")
    h.at(25)
    h.board.answered("a1")
    h.at(35)
    h.board.held("a1")
    h.at(45)
    h.board.call_ended("a1")  # 20 s talk, hold included
    h.at(55)  # wrap-up over: READY
    h.at(85)
    h.board.reserve("a1", "c2")
    h.board.answered("a1")
    h.at(125)
    h.board.call_ended("a1")  # 40 s talk
    assert stats.idle_since == START + 55
    assert (stats.answered, stats.talks, stats.talk_time_total, stats.avg_talk) == (2, 2, 60, 30)
    assert (stats.idle_periods, stats.idle_time_total, stats.avg_idle) == (2, 40, 20)
    assert stats.last_offer_at == START + 85
    assert (stats.talk_since, stats.ready_at) == (None, None)


def test_withdrawn_offer_keeps_idle_since(h):
    """An offer withdrawn keeps the agent's place in "longest idle first"; totals count time READY only."""
    h.login(ready=True)
    h.at(10)
    h.board.reserve("a1", "c1")
    h.at(14)
    h.board.offer_cancelled("a1")
    h.at(20)
    stats = h.board.get("a1").stats
    assert (stats.idle_since, stats.ready_at, stats.last_offer_at) == (START, START + 14, START + 10)
    h.board.pause("a1", "x")
    assert (stats.idle_periods, stats.idle_time_total) == (2, 16)
    h.board.ready("a1")
    assert stats.idle_since == START + 20


def test_stats_survive_sign_out(h):
    """An agent stays on the board after sign-out; logging in again keeps the statistics."""
    h.login(ready=True, name="Li Lei", city="SH")
    h.talking()
    h.board.call_ended("a1")
    h.board.ready("a1")
    h.board.logout("a1")
    assert [a.agent_id for a in h.board.all()] == ["a1"]
    assert h.board.in_state(OUT) == [h.board.get("a1")]
    agent = h.login(station="PJSIP/1009", skills={"cards": 3})
    assert (agent.stats.answered, agent.name, agent.city, agent.skills) == (1, "Li Lei", None, {"cards": 3})
    assert h.board.by_station("PJSIP/1009") is agent


# -- queries, subscribers, delivery ---------------------------------------------------


def test_queries(h):
    """Lookups by id, station, state and availability."""
    h.login("a1", "PJSIP/1001", ready=True)
    h.login("a2", "PJSIP/1002")
    h.login("a3", "PJSIP/1003", ready=True)
    h.board.reserve("a3", "c1")
    assert h.board.by_station("PJSIP/1002").agent_id == "a2"
    assert [a.agent_id for a in h.board.in_state(RDY)] == ["a1"]
    assert [a.agent_id for a in h.board.in_state(NR)] == ["a2"]
    assert [a.agent_id for a in h.board.available()] == ["a1"]
    assert h.board.get("zz") is None and not h.board.is_available("zz")


@pytest.mark.allow_logged_errors
def test_subscriber_failure_is_logged(h):
    """A failing subscriber is logged with log.failure; the board and later subscribers carry on."""
    failures, after = [], []

    def observer(event):
        if event.get("log_level") is LogLevel.critical:
            failures.append(event)

    def broken(record):
        raise RuntimeError("storage down")

    h.board.subscribe(broken)
    h.board.subscribe(after.append)
    globalLogPublisher.addObserver(observer)
    try:
        h.board.login("a1", "PJSIP/1001")
    finally:
        globalLogPublisher.removeObserver(observer)
    assert h.board.get("a1").state is NR
    assert after == h.take() == [T(OUT, NR, "login")]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(RuntimeError)
    assert failures[0]["record"] == after[0]


def test_unsubscribe(h):
    """An unsubscribed function gets nothing more; unsubscribing twice is harmless."""
    h.board.unsubscribe(h.records.append)
    h.board.unsubscribe(h.records.append)
    h.board.login("a1", "PJSIP/1001")
    assert h.take() == []


def test_reentrant_subscriber_keeps_order(h):
    """A subscriber acting on the board (an ACD reserving on READY) never reorders what others see."""
    def acd(record):
        if isinstance(record, AgentTransition) and record.available:
            h.board.reserve(record.agent_id, "c9")

    h.board.unsubscribe(h.records.append)
    h.board.subscribe(acd)
    h.board.subscribe(h.records.append)
    h.board.login("a1", "PJSIP/1001", ready=True)
    assert h.take() == [T(OUT, NR, "login"), T(NR, RDY, "ready"), T(RDY, RES, "reserve", call_id="c9")]


def test_every_availability_change_is_one_record():
    """Following only the records' ``available`` field reproduces ``available()``, one record per change."""
    h = Harness(wrap_up_time=5, not_hung_up_after=3)
    seen, changes = set(), []

    def follow(record):
        if (record.agent_id in seen) != record.available:
            changes.append(record)
        (seen.add if record.available else seen.discard)(record.agent_id)

    h.board.subscribe(follow)
    b = h.board
    steps = [
        lambda: b.login("a1", "PJSIP/1001"), lambda: b.login("a2", "PJSIP/1002", ready=True),
        lambda: b.ready("a1"), lambda: b.reserve("a1", "c1"), lambda: b.offer_cancelled("a1"),
        lambda: b.phone_off_hook("a2"), lambda: h.at(3), lambda: b.pause("a2", "x"), lambda: b.ready("a2"),
        lambda: b.phone_on_hook("a2"), lambda: b.reserve("a1", "c2"), lambda: b.answered("a1"),
        lambda: b.call_ended("a1"), lambda: h.at(10), lambda: b.reserve("a2", "c3"), lambda: b.ring_no_answer("a2"),
        lambda: b.unlock("a2", forced_by="s"), lambda: b.logout("a1"), lambda: b.logout("a2", forced_by="s"),
    ]
    flips = 0
    for step in steps:
        before = {a.agent_id for a in b.available()}
        step()
        now = {a.agent_id for a in b.available()}
        assert seen == now
        flips += len(before ^ now)
    assert len(changes) == flips == 12 and seen == set()
