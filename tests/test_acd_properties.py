"""Property test of the ACD: random sequences of events never break its promises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from ctid.acd import ACD, AgentInfo, CityTable, Offer, PriorityRule, QueueConfig, WaitingCall

QUEUES = {
    q.name: q
    for q in (
        QueueConfig("q0", "g0", "longest_idle", local_preference=True, overflow_after=10),
        QueueConfig("q1", "g0", "round_robin", min_level=4),
        QueueConfig("q2", "g1", "even"),
        QueueConfig("q3", "g1", "fewest_answered", local_preference=True),
        QueueConfig("q4", "g1", "least_avg_talk", local_preference=True, overflow_after=0),
    )
}
CITIES = CityTable({"021": "Shanghai", "010": "Beijing"})
CALLERS = ("02111112222", "01033334444", "07555556666", "")
SKILL_SETS = ({"g0": 5}, {"g1": 3}, {"g0": 2, "g1": 7}, {"g0": 9, "g1": 1})
AGENT_CITIES = ("Shanghai", "Beijing", "Shanghai", "Guangzhou", "Beijing")

_enqueue = st.tuples(st.just("enqueue"), st.sampled_from(sorted(QUEUES)), st.integers(0, 3), st.booleans())
_available = st.tuples(st.just("available"), st.integers(0, 4), st.integers(0, 3), st.integers(0, 20))
ops = st.lists(
    st.one_of(
        _enqueue,
        _available,
        _enqueue,
        _available,
        st.tuples(st.just("unavailable"), st.integers(0, 4)),
        st.tuples(st.just("abandon"), st.integers(0, 30)),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 3, 9.5, 20]), st.booleans()),
        st.tuples(st.just("requeue"), st.integers(0, 30)),
        st.tuples(st.just("priority"), st.integers(0, 30), st.integers(-2, 12)),
        st.tuples(st.just("move"), st.integers(0, 30), st.sampled_from(sorted(QUEUES))),
    ),
    min_size=10,
    max_size=80,
)


def can_take(info: AgentInfo, call: WaitingCall) -> bool:
    """Whether the rules allow ``info``'s agent to take ``call`` now (level, group, city)."""
    queue = QUEUES[call.queue]
    level = info.skills.get(queue.group)
    if level is None or level < queue.min_level:
        return False
    return not queue.local_preference or call.city is None or call.overflowed or call.city == info.city


class Model:
    """What the test believes: who is available, and where every call is."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.acd = ACD(QUEUES.values(), self.clock, rules=[PriorityRule(10, data=(("vip", "1"),))], cities=CITIES)
        self.available: dict[str, AgentInfo] = {}
        self.infos: dict[str, AgentInfo] = {}
        self.calls: list[WaitingCall] = []
        self.state: dict[str, str] = {}
        #: When overflows were last promoted (tick or agent_available).
        self.promoted = 0.0

    def take(self, offers: list[Offer], pending: WaitingCall | None = None) -> None:
        """Check and record offers: the agent was available and may take the call, the call was waiting."""
        for offer in offers:
            assert offer.agent_id in self.available, "offered an agent that is not available"
            info = self.available.pop(offer.agent_id)
            assert offer.call is pending or self.state[offer.call.call_id] == "waiting", "offered a lost call"
            assert offer.queue == offer.call.queue
            assert can_take(info, offer.call), "offered a call the agent may not take"
            self.state[offer.call.call_id] = "offered"
            pending = None if offer.call is pending else pending
        if pending is not None:
            self.state[pending.call_id] = "waiting"

    def pick(self, index: int, state: str) -> WaitingCall | None:
        """The index-th call (modulo) if it is in ``state``."""
        if not self.calls:
            return None
        call = self.calls[index % len(self.calls)]
        return call if self.state[call.call_id] == state else None

    def apply(self, op: tuple) -> None:
        """Run one event against the ACD and check the offers it returns."""
        acd, kind = self.acd, op[0]
        if kind == "enqueue":
            call = WaitingCall(f"c{len(self.calls)}", op[1], CALLERS[op[2]], {"vip": "1"} if op[3] else {})
            self.calls.append(call)
            offer = acd.enqueue(call)
            self.take([offer] if offer else [], pending=call)
        elif kind == "available":
            agent_id = f"a{op[1]}"
            figures = {"idle_since": self.clock.seconds(), "answered": op[3], "talk_time_total": 60.0 * op[3]}
            info = AgentInfo(agent_id, SKILL_SETS[op[2]], AGENT_CITIES[op[1]], **figures)
            self.available[agent_id] = self.infos[agent_id] = info
            self.take(acd.agent_available(info))
            self.promoted = self.clock.seconds()
        elif kind == "unavailable":
            self.available.pop(f"a{op[1]}", None)
            acd.agent_unavailable(f"a{op[1]}")
        elif kind == "abandon":
            call = self.pick(op[1], "waiting")
            assert acd.abandon(call.call_id) is call if call else True
            if call:
                self.state[call.call_id] = "abandoned"
        elif kind == "advance":
            self.clock.advance(op[1])
            if op[2]:
                self.take(acd.tick())
                self.promoted = self.clock.seconds()
        elif kind == "requeue":
            call = self.pick(op[1], "offered")
            if call:
                offer = acd.requeue_at_head(call)
                self.take([offer] if offer else [], pending=call)
        elif kind == "priority":
            call = self.pick(op[1], "waiting")
            if call:
                acd.set_priority(call.call_id, op[2])
                assert call.priority == op[2]
        elif kind == "move":
            call = self.pick(op[1], "waiting")
            if call:
                offer = acd.move(call.call_id, op[2])
                self.take([offer] if offer else [], pending=call)

    def check(self) -> None:
        """Invariants: no call lost, availability agrees, no free agent could take a waiting call."""
        acd = self.acd
        waiting = [call for queue in QUEUES for call in acd.waiting(queue)]
        assert sorted(call.call_id for call in waiting) == sorted(c for c, s in self.state.items() if s == "waiting")
        assert len(self.state) == len(self.calls)
        for agent_id in self.infos:
            assert acd.is_available(agent_id) == (agent_id in self.available)
        for call in waiting:
            assert acd.position(call.call_id) == acd.waiting(call.queue).index(call) + 1
            queue = QUEUES[call.queue]
            if queue.local_preference and call.city is not None:
                due = float("inf") if queue.overflow_after is None else call.enqueued_at + queue.overflow_after
                if due <= self.promoted:
                    assert call.overflowed, "a call due to overflow was not promoted"
                if due > self.clock.seconds():
                    assert not call.overflowed, "a call overflowed early"
            for info in self.available.values():
                assert not can_take(info, call), f"{info.agent_id} is free but {call.call_id} waits"
        for queue in QUEUES:
            keys = [(-c.priority, c.seq) for c in acd.waiting(queue)]
            assert keys == sorted(keys), "queue not in priority / arrival order"


@settings(max_examples=200, deadline=None)
@given(ops)
def test_random_event_sequences_keep_the_acd_consistent(events):
    """Never an unavailable or doubly offered agent, never a lost call, never a free agent beside a waiting call."""
    model = Model()
    for event in events:
        model.apply(event)
        model.check()
