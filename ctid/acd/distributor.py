"""The ACD (自动呼叫分配): matches waiting calls with available agents.

Pure domain code: no sockets, no reactor; time comes from the injected clock
(anything with ``seconds()``, e.g. the reactor or ``twisted.internet.task.Clock``).

**Invariant.** After every method returns, no available agent may take a
waiting call (given the overflows promoted so far).  Hence the two ways a
decision (an :class:`Offer`) happens:

* a call arrives, moves or is put back (:meth:`ACD.enqueue`,
  :meth:`ACD.move`, :meth:`ACD.requeue_at_head`): the queue's strategy picks
  the best available agent of its skill group (level ≥ ``min_level``, higher
  levels first; with local preference an agent of the caller's city first,
  any city once the call has overflowed);
* an agent becomes available (:meth:`ACD.agent_available`): it takes the most
  urgent call it may take over all the queues of its skill groups — highest
  priority, then earliest sequence (FIFO; calls put back first) — else it is
  filed in the indexes of its groups and waits.

An offer removes both sides: the call leaves its queue, the agent is reserved
until :meth:`ACD.agent_available` or :meth:`ACD.agent_unavailable` tells
otherwise.  On ring-no-answer the integration locks the agent
(``agent_unavailable``) and hands the call back with ``requeue_at_head``.

Overflow of local-preference calls happens on the clock: at
:meth:`ACD.tick` (call it periodically, or at :meth:`ACD.next_deadline`) and
at the start of :meth:`ACD.agent_available`; both return the offers the newly
open calls got.

Costs: O(log n) per decision and per change, amortised (integer keys and lazy
deletion: see :mod:`ctid.acd.pools` and :mod:`ctid.acd.calls`); nothing
scans all agents or all calls.  The decision paths are kept short and flat:
:meth:`ACD.enqueue` reads the top of one heap, :meth:`ACD.agent_available`
the heads of the call heaps in its precomputed ``watch`` list; the dead keys
lazy deletion leaves are swept when an agent or a call is *filed* in a heap
(work done when nothing is decided), and an agent's filing plan is worked out
once per skills and city (:class:`ctid.acd.runtime.Planner`).  The queries
are in :mod:`ctid.acd.queries`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from heapq import heapify, heappop, heappush
from typing import NamedTuple, Protocol

from ctid.acd.calls import WaitingCall
from ctid.acd.config import QueueConfig
from ctid.acd.ewt import Estimator, observed_estimate
from ctid.acd.locality import COUNTRY_CODES, CityTable, national
from ctid.acd.pools import METRIC_OFFSET, METRIC_SHIFT, SEQ_MASK, AgentInfo, bury, file_agent
from ctid.acd.priority import PriorityRule
from ctid.acd.queries import Queries
from ctid.acd.runtime import AgentRecord, Planner, QueueRecord, Site

__all__ = ["ACD", "Clock", "Offer", "QueueFull"]


class Clock(Protocol):
    """The part of ``IReactorTime`` the ACD uses."""

    def seconds(self) -> float: ...


class QueueFull(Exception):
    """The queue already holds ``max_length`` calls (route the call elsewhere)."""


class Offer(NamedTuple):
    """A decision: deliver ``call`` to ``agent_id``; ``waited`` seconds since it was first queued."""

    call: WaitingCall
    agent_id: str
    queue: str
    waited: float


#: Builds an :class:`Offer` from a 4-tuple without the Python-level ``__new__`` of named tuples.
_new_tuple = tuple.__new__


class ACD(Queries):
    """Queues, priorities and distribution strategies for one site (see the module docstring)."""

    def __init__(
        self,
        queues: Iterable[QueueConfig],
        clock: Clock,
        *,
        rules: Iterable[PriorityRule] = (),
        cities: CityTable | Mapping[str, str] | None = None,
        estimator: Estimator = observed_estimate,
        alpha: float = 0.2,
    ):
        self._clock = clock
        #: The clock's ``seconds``, bound once: the hot paths call it.
        self._now = clock.seconds
        self._cities = cities if isinstance(cities, CityTable) else CityTable(cities or {})
        self._estimator = estimator
        #: Availability number -> agent, for the agents available now.
        self._live: dict[int, AgentRecord] = {}
        site = Site(list(queues), tuple(rules), alpha, self._live)
        self._queues = site.queues
        self._planner = Planner(site.indexes, site.pools)
        self._indexes = site.indexes
        self._serving = dict.fromkeys(site.pools, 0)
        self._agents: dict[str, AgentRecord] = {}
        self._calls: dict[str, WaitingCall] = {}
        self._seq = self._head = self._avail_seq = 0
        self._overflows: list[tuple[float, int, WaitingCall]] = []
        self._expiries: list[tuple[float, int, WaitingCall]] = []

    # -- agents ------------------------------------------------------------------

    def agent_available(self, info: AgentInfo) -> list[Offer]:
        """The agent is ready: offer it the most urgent call it may take, else file it as available.

        Also promotes the calls whose overflow time has come (their offers, to
        other agents, come first in the list).  An agent already available is
        re-filed with the new ``info``.
        """
        now = self._now()
        agent = self._agents.get(info.agent_id)
        if agent is None:
            agent = self._agents[info.agent_id] = AgentRecord(info)
        elif agent.seq:
            self._retire(agent)  # before promotions: they must not offer its old availability
        overflows = self._overflows
        offers = self._promote(now) if overflows and overflows[0][0] <= now else []
        agent.info = info
        if agent.skills is not info.skills or agent.city != info.city or not agent.serving:
            self._plan(agent, info)
        if self._calls:
            best = None
            for live, heaps in agent.watch:  # the heads of the call heaps it may take from
                if live:
                    for items in heaps:
                        while items:
                            key = items[0]
                            if key in live:
                                if best is None or key < best:
                                    best, best_live = key, live
                                break
                            heappop(items)
            if best is not None:  # its key stays on top, dead: the next call filed in this heap sweeps it
                call = best_live.pop(best)
                queue = self._queues[call.queue]
                waiting = queue.calls  # CallQueue.forget, inlined
                waiting.size -= 1
                if best in waiting.added:
                    waiting.added.remove(best)
                else:
                    waiting.removed.add(best)
                del self._calls[call.call_id]
                if queue.picked is not None:
                    queue.picked(agent.agent_id)
                offers.append(_new_tuple(Offer, (call, agent.agent_id, queue.name, now - call.enqueued_at)))
                return offers
        seq = agent.seq = self._avail_seq = self._avail_seq + 1
        live = self._live
        live[seq] = agent
        for metric, counts, filed in agent.filing:
            if metric is not None:
                value = metric(info)
            else:
                assert counts is not None  # Planner._part files a count table exactly when there is no metric
                value = counts.get(agent.agent_id, 0)
            tail = ((int(value * 1000) + METRIC_OFFSET) << METRIC_SHIFT) + seq
            for part, heap in filed:
                items = heap.items
                while items and items[0] & SEQ_MASK not in live:  # sweep the top here, off the decision paths
                    heappop(items)
                if len(items) >= heap.limit:
                    heap.compact()
                heappush(items, part + tail)
        if agent.ring_plan:
            assert agent.rings is not None  # Planner.plan makes the list along with the ring plan
            file_agent(agent.ring_plan, info, seq, agent.rings)
        return offers

    def agent_unavailable(self, agent_id: str) -> None:
        """The agent logged out, paused or was locked: it is no longer offered calls nor counted as serving."""
        agent = self._agents.get(agent_id)
        if agent is None or not agent.serving:
            return
        if agent.seq:
            self._retire(agent)
        agent.serving = False
        assert agent.skills is not None  # planned when it started serving
        self._count_serving(agent.skills, -1)

    def is_available(self, agent_id: str) -> bool:
        """Whether the agent is filed as available (not reserved by an offer, not unavailable)."""
        agent = self._agents.get(agent_id)
        return agent is not None and agent.seq != 0

    def serving(self, group: str) -> int:
        """Agents of ``group`` available or holding a call the ACD offered."""
        return self._serving.get(group, 0)

    def reset_daily(self) -> None:
        """Start a new day for the ``even`` strategy (its offer counts restart at 0 as agents come back)."""
        for indexes in self._indexes.values():
            for index in indexes:
                index.counts.clear()

    def _plan(self, agent: AgentRecord, info: AgentInfo) -> None:
        """Count the agent as serving its groups; work out its plan again if its skills or city changed."""
        skills = info.skills
        if not agent.serving:
            agent.serving = True
            self._count_serving(skills, 1)
        elif agent.skills != skills:
            assert agent.skills is not None  # planned when it started serving
            self._count_serving(agent.skills, -1)
            self._count_serving(skills, 1)
        if agent.skills != skills or agent.city != info.city:
            self._planner.plan(agent, info)
        else:
            agent.skills = skills

    def _retire(self, agent: AgentRecord) -> None:
        """End the agent's availability: O(1) per heap and ring entry (they die lazily)."""
        del self._live[agent.seq]
        agent.seq = 0
        if agent.rings:
            bury(agent.rings)

    def _count_serving(self, skills: Mapping[str, int], step: int) -> None:
        serving = self._serving
        for group in skills:
            if group in serving:
                serving[group] += step

    # -- calls ---------------------------------------------------------------------

    def enqueue(self, call: WaitingCall) -> Offer | None:
        """A call asks for an agent of ``call.queue``: an offer at once, or None and the call waits.

        Sets the call's priority (rules), city (local-preference queues),
        ``enqueued_at`` and sequence.  Raises ``KeyError`` for an unknown queue,
        ``ValueError`` for a call already waiting, :class:`QueueFull`.
        """
        queue = self._queues.get(call.queue) or self._queue(call.queue)
        if call.call_id in self._calls:
            raise ValueError(f"call {call.call_id} is already waiting")
        if queue.max_length is not None and queue.calls.size >= queue.max_length:
            raise QueueFull(call.queue)
        now = call.enqueued_at = self._now()
        floor = queue.priority if call.priority is None or call.priority < queue.priority else call.priority
        rules = queue.rules
        call.seq = self._seq = self._seq + 1
        call.overflowed = False
        items = queue.agents  # the list of the heap to pick from; None: round robin, or see _place
        caller = call.caller
        if queue.local:
            number = caller if caller.isdigit() and not caller.startswith(COUNTRY_CODES) else national(caller)
            city = call.city = self._cities.city_of_national(number)
            call.located = True
            call.priority = rules.priority_for(number, call.data, floor) if rules is not None else floor
            heap = queue.index.cities.get(city) if items is not None and city is not None else None
            if heap is None:
                return self._place(queue, call, now)
            items = heap.items  # an agent of the caller's city, else _place below (wait or overflow)
        else:
            call.located = False
            if rules is not None:
                if not rules.needs_number:
                    number = ""
                elif not caller.isdigit() or caller.startswith(COUNTRY_CODES):
                    number = national(caller)
                else:
                    number = caller  # national() would answer it as it is
                call.priority = rules.priority_for(number, call.data, floor)
            else:
                call.priority = floor
            if items is None:
                return self._place(queue, call, now)
        live, limit = self._live, queue.limit
        while items:  # the hot path, flat: the best live agent key of the heap, if its level will do
            key = items[0]
            if key >= limit:
                break
            agent = live.pop(key & SEQ_MASK, None)
            if agent is not None:  # its key stays on top, dead: the next filing in this heap sweeps it
                agent.seq = 0
                if agent.rings:
                    bury(agent.rings)
                if queue.picked is not None:
                    queue.picked(agent.agent_id)
                return _new_tuple(Offer, (call, agent.agent_id, queue.name, 0.0))
            heappop(items)
        if queue.local:
            return self._place(queue, call, now)
        self._park(queue, call)
        return None

    def requeue_at_head(self, call: WaitingCall) -> Offer | None:
        """Put an offered call back (ring-no-answer) ahead of every waiting call of its priority.

        It keeps its priority and ``enqueued_at``; another available agent may get it at once.
        """
        if call.call_id in self._calls:
            raise ValueError(f"call {call.call_id} is already waiting")
        if call.enqueued_at is None:
            raise ValueError(f"call {call.call_id} was never queued")
        queue = self._queue(call.queue)
        self._head -= 1
        call.seq = self._head
        return self._place(queue, call, self._clock.seconds())

    def abandon(self, call_id: str) -> WaitingCall | None:
        """The caller hung up (or the call left for another route): drop it; None if it was not waiting."""
        call = self._calls.pop(call_id, None)
        if call is not None:
            self._queues[call.queue].calls.remove(call)
        return call

    def set_priority(self, call_id: str, priority: int) -> None:
        """A supervisor changes a waiting call's priority; it keeps its arrival order among equals."""
        call = self._calls[call_id]
        if priority != call.priority:
            self._queues[call.queue].calls.reprioritise(call, priority)

    def move(self, call_id: str, queue: str) -> Offer | None:
        """Move a waiting call to another queue, keeping its priority, sequence and ``enqueued_at``.

        Overflow is judged again with the new queue's settings; an agent of the
        new queue may get the call at once.
        """
        call = self._calls[call_id]
        target = self._queue(queue)
        self.abandon(call_id)
        call.queue = queue
        call.overflowed = False
        return self._place(target, call, self._clock.seconds())

    def tick(self) -> list[Offer]:
        """Let the calls whose overflow time has come go to any city; return the offers they got."""
        return self._promote(self._clock.seconds())

    def expired(self) -> list[WaitingCall]:
        """Take out and return the calls that waited longer than their queue's ``max_wait``."""
        now = self._clock.seconds()
        heap, out = self._expiries, []
        while heap and heap[0][0] <= now:
            deadline, _, call = heappop(heap)
            if self._calls.get(call.call_id) is not call:
                continue
            max_wait = self._queues[call.queue].max_wait
            assert call.enqueued_at is not None  # set by enqueue
            if max_wait is not None and call.enqueued_at + max_wait == deadline:
                abandoned = self.abandon(call.call_id)
                assert abandoned is call  # it is waiting (checked above)
                out.append(abandoned)
        return out

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` or :meth:`expired` may have work (possibly early), or None."""
        times = [heap[0][0] for heap in (self._overflows, self._expiries) if heap]
        return min(times) if times else None

    def _place(self, queue: QueueRecord, call: WaitingCall, now: float) -> Offer | None:
        """Offer ``call`` to an agent of ``queue`` now (marking it overflowed when due), or queue it."""
        if queue.local:
            if not call.located:
                call.city = self._cities.city_of(call.caller)
                call.located = True
            if call.city is not None and not call.overflowed:
                agent = self._reserve(queue, call.city)
                if agent is not None:
                    return self._offer(queue, call, agent, now)
                overflow_after = queue.overflow_after
                assert call.enqueued_at is not None  # set by enqueue
                if overflow_after is None or now < call.enqueued_at + overflow_after:
                    self._park(queue, call)
                    if overflow_after is not None:
                        self._deadline(self._overflows, call.enqueued_at + overflow_after, call)
                    return None
                call.overflowed = True
        agent = self._reserve(queue)
        if agent is not None:
            return self._offer(queue, call, agent, now)
        self._park(queue, call)
        return None

    def _reserve(self, queue: QueueRecord, city: str | None = None) -> AgentRecord | None:
        """Take the best available agent for ``queue`` (of ``city``, else of any city) out of the indexes."""
        index, limit = queue.index, queue.limit
        if queue.agents is None:  # round robin
            key = index.best(city)
            agent = self._live.pop(key & SEQ_MASK) if key is not None and key < limit else None
        else:
            heap = index.everyone if city is None else index.cities.get(city)
            items, live, agent = heap.items if heap is not None else (), self._live, None
            while items:
                key = items[0]
                if key >= limit:
                    break
                agent = live.pop(key & SEQ_MASK, None)
                if agent is not None:  # its key stays on top, dead (see enqueue)
                    break
                heappop(items)
        if agent is not None:
            agent.seq = 0
            if agent.rings:
                bury(agent.rings)
        return agent

    def _park(self, queue: QueueRecord, call: WaitingCall) -> None:
        """Queue ``call`` (no agent for it now)."""
        queue.calls.insert(call)
        self._calls[call.call_id] = call
        if queue.max_wait is not None:
            assert call.enqueued_at is not None  # set by enqueue
            self._deadline(self._expiries, call.enqueued_at + queue.max_wait, call)

    def _deadline(self, heap: list[tuple[float, int, WaitingCall]], when: float, call: WaitingCall) -> None:
        """Schedule ``call`` at ``when``; entries of calls no longer waiting are swept when they pile up."""
        if len(heap) > 2 * len(self._calls) + 64:
            calls = self._calls
            heap[:] = [entry for entry in heap if calls.get(entry[2].call_id) is entry[2]]
            heapify(heap)
        heappush(heap, (when, call.seq, call))

    @staticmethod
    def _offer(queue: QueueRecord, call: WaitingCall, agent: AgentRecord, now: float) -> Offer:
        """The offer of ``call`` to ``agent`` (reserved), noted by the queue's index."""
        if queue.picked is not None:
            queue.picked(agent.agent_id)
        assert call.enqueued_at is not None  # set by enqueue
        return _new_tuple(Offer, (call, agent.agent_id, queue.name, now - call.enqueued_at))

    def _promote(self, now: float) -> list[Offer]:
        """Open the calls whose overflow time has come to every city; offer them to available agents."""
        heap, offers = self._overflows, []
        while heap and heap[0][0] <= now:
            deadline, _, call = heappop(heap)
            if self._calls.get(call.call_id) is not call or call.overflowed:
                continue
            queue = self._queues[call.queue]
            assert call.enqueued_at is not None  # set by enqueue
            if queue.overflow_after is None or call.enqueued_at + queue.overflow_after != deadline:
                continue
            queue.calls.open_up(call)
            agent = self._reserve(queue)
            if agent is not None:
                self.abandon(call.call_id)
                offers.append(self._offer(queue, call, agent, now))
        return offers
