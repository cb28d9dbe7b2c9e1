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
deletion: see :mod:`ctid.acd.pools` and :mod:`ctid.acd.calls`); an agent
becoming available looks at the heads of its call pools only.  The two hot
paths (:meth:`ACD.enqueue` into a queue without local preference, and
:meth:`ACD.agent_available`) are written flat, with few calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from heapq import heapify, heappop, heappush
from typing import NamedTuple, Protocol

from ctid.acd.calls import CallPool, WaitingCall
from ctid.acd.config import QueueConfig
from ctid.acd.ewt import Estimator, QueueStats, observed_estimate
from ctid.acd.locality import CityTable, national
from ctid.acd.pools import SEQ_MASK, AgentInfo, HeapIndex, RingIndex, file_agent, level_key
from ctid.acd.priority import PriorityRule, RuleBook
from ctid.acd.runtime import AgentRecord, QueueRecord
from ctid.acd.strategies import STRATEGIES

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


class ACD:
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
        self._cities = cities if isinstance(cities, CityTable) else CityTable(cities or {})
        self._estimator = estimator
        #: Availability number -> agent, for the agents available now.
        self._live: dict[int, AgentRecord] = {}
        self._queues: dict[str, QueueRecord] = {}
        self._indexes: dict[str, list[HeapIndex | RingIndex]] = {}
        #: Per skill group: (level limit, call pool) for each min_level in use.
        self._pools: dict[str, list[tuple[int, CallPool]]] = {}
        self._build(list(queues), tuple(rules), alpha)
        self._serving = dict.fromkeys(self._pools, 0)
        self._agents: dict[str, AgentRecord] = {}
        self._calls: dict[str, WaitingCall] = {}
        self._seq = self._head = self._avail_seq = 0
        self._overflows: list[tuple[float, int, WaitingCall]] = []
        self._expiries: list[tuple[float, int, WaitingCall]] = []

    def _build(self, configs: list[QueueConfig], rules: tuple[PriorityRule, ...], alpha: float) -> None:
        """One index per (group, strategy) — per queue for ``even`` — and one call pool per (group, min_level)."""

        def key(config: QueueConfig) -> tuple[str, str, str]:
            per_queue = STRATEGIES[config.strategy].kind == "count"
            return config.group, config.strategy, config.name if per_queue else ""

        local = {key(config) for config in configs if config.local_preference}
        indexes: dict[tuple[str, str, str], HeapIndex | RingIndex] = {}
        pools: dict[tuple[str, int], CallPool] = {}
        for config in configs:
            if config.name in self._queues:
                raise ValueError(f"queue {config.name} is configured twice")
            index = indexes.get(key(config))
            if index is None:
                strategy = STRATEGIES[config.strategy]
                if strategy.kind == "ring":
                    index = RingIndex(key(config) in local)
                else:
                    index = HeapIndex(strategy.metric, key(config) in local, self._live)
                indexes[key(config)] = index
                self._indexes.setdefault(config.group, []).append(index)
            pool = pools.get((config.group, config.min_level))
            if pool is None:
                pool = pools[config.group, config.min_level] = CallPool()
                self._pools.setdefault(config.group, []).append((level_key(config.min_level - 1), pool))
            queue = QueueRecord(config, pool, index, RuleBook(rules + config.rules), QueueStats(alpha))
            self._queues[config.name] = queue

    # -- agents ------------------------------------------------------------------

    def agent_available(self, info: AgentInfo) -> list[Offer]:
        """The agent is ready: offer it the most urgent call it may take, else file it as available.

        Also promotes the calls whose overflow time has come (their offers, to
        other agents, come first in the list).  An agent already available is
        re-filed with the new ``info``.
        """
        now = self._clock.seconds()
        agent = self._agents.get(info.agent_id)
        if agent is None:
            agent = self._agents[info.agent_id] = AgentRecord(info)
        elif agent.seq:
            self._retire(agent)  # before promotions: they must not offer its old availability
        overflows = self._overflows
        offers = self._promote(now) if overflows and overflows[0][0] <= now else []
        agent.info = info
        if agent.skills is not info.skills:
            self._plan(agent, info.skills)
        offer = self._call_for(agent, info, now)
        if offer is not None:
            offers.append(offer)
            return offers
        seq = self._avail_seq = self._avail_seq + 1
        agent.seq = seq
        self._live[seq] = agent
        file_agent(agent.plan, info, seq, agent.rings)
        return offers

    def agent_unavailable(self, agent_id: str) -> None:
        """The agent logged out, paused or was locked: it is no longer offered calls nor counted as serving."""
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            return
        if agent.seq:
            self._retire(agent)
        if agent.skills is not None:
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

    def _plan(self, agent: AgentRecord, skills: Mapping[str, int]) -> None:
        """Work out where the agent is filed and which call pools it serves; keep the serving counts."""
        if agent.skills == skills:
            agent.skills = skills
            return
        if agent.skills is not None:
            self._count_serving(agent.skills, -1)
        self._count_serving(skills, 1)
        agent.skills = skills
        agent.plan = tuple(
            (index, level_key(level)) for group, level in skills.items() for index in self._indexes.get(group, ())
        )
        agent.serves = tuple(
            pool
            for group, level in skills.items()
            for limit, pool in self._pools.get(group, ())
            if level_key(level) < limit
        )

    def _retire(self, agent: AgentRecord) -> None:
        """End the agent's availability: O(1) for heaps (lazy), O(log n) per ring entry."""
        del self._live[agent.seq]
        agent.seq = 0
        if agent.rings:
            for ring, entry in agent.rings:
                ring.remove(entry)
            agent.rings.clear()

    def _count_serving(self, skills: Mapping[str, int], step: int) -> None:
        serving = self._serving
        for group in skills:
            if group in serving:
                serving[group] += step

    def _call_for(self, agent: AgentRecord, info: AgentInfo, now: float) -> Offer | None:
        """The most urgent call the agent may take, taken out of its queue, as an offer."""
        best = best_heap = best_pool = None
        city = info.city
        for pool in agent.serves:
            if not pool.live:
                continue
            heap = pool.open
            if heap.items:
                key = heap.top()
                if key is not None and (best is None or key < best):
                    best, best_heap, best_pool = key, heap, pool
            if pool.local:
                heap = pool.cities.get(city)
                if heap is not None and heap.items:
                    key = heap.top()
                    if key is not None and (best is None or key < best):
                        best, best_heap, best_pool = key, heap, pool
        if best_pool is None:
            return None
        call = best_pool.take(best_heap)
        queue = self._queues[call.queue]
        queue.calls.order.remove(best)
        del self._calls[call.call_id]
        if queue.picked is not None:
            queue.picked(info.agent_id)
        return Offer(call, info.agent_id, queue.name, now - call.enqueued_at)

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
        if queue.max_length is not None and len(queue.calls.order) >= queue.max_length:
            raise QueueFull(call.queue)
        now = call.enqueued_at = self._clock.seconds()
        floor = queue.priority if call.priority is None or call.priority < queue.priority else call.priority
        rules = queue.rules
        if queue.local:
            number = national(call.caller)
            call.city = self._cities.city_of_national(number)
            call.located = True
            call.priority = rules.priority_for(number, call.data, floor) if rules else floor
        else:
            call.located = False
            if rules:
                number = national(call.caller) if rules.needs_number else ""
                call.priority = rules.priority_for(number, call.data, floor)
            else:
                call.priority = floor
        self._seq += 1
        call.seq = self._seq
        call.overflowed = False
        if queue.local:
            return self._place(queue, call, now)
        key = queue.best()
        if key is not None and key < queue.limit:
            return self._offer(queue, call, key, now)
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
            if max_wait is not None and call.enqueued_at + max_wait == deadline:
                out.append(self.abandon(call.call_id))
        return out

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` or :meth:`expired` may have work (possibly early), or None."""
        times = [heap[0][0] for heap in (self._overflows, self._expiries) if heap]
        return min(times) if times else None

    def _queue(self, name: str) -> QueueRecord:
        try:
            return self._queues[name]
        except KeyError:
            raise KeyError(f"unknown queue {name!r}") from None

    def _place(self, queue: QueueRecord, call: WaitingCall, now: float) -> Offer | None:
        """Offer ``call`` to an agent of ``queue`` now (marking it overflowed when due), or queue it."""
        if queue.local:
            if not call.located:
                call.city = self._cities.city_of(call.caller)
                call.located = True
            if call.city is not None and not call.overflowed:
                key = queue.index.best(call.city)
                if key is not None and key < queue.limit:
                    return self._offer(queue, call, key, now)
                overflow_after = queue.overflow_after
                if overflow_after is None or now < call.enqueued_at + overflow_after:
                    self._park(queue, call)
                    if overflow_after is not None:
                        self._deadline(self._overflows, call.enqueued_at + overflow_after, call)
                    return None
                call.overflowed = True
        key = queue.best()
        if key is not None and key < queue.limit:
            return self._offer(queue, call, key, now)
        self._park(queue, call)
        return None

    def _park(self, queue: QueueRecord, call: WaitingCall) -> None:
        """Queue ``call`` (no agent for it now)."""
        queue.calls.insert(call)
        self._calls[call.call_id] = call
        if queue.max_wait is not None:
            self._deadline(self._expiries, call.enqueued_at + queue.max_wait, call)

    def _deadline(self, heap: list[tuple[float, int, WaitingCall]], when: float, call: WaitingCall) -> None:
        """Schedule ``call`` at ``when``; entries of calls no longer waiting are swept when they pile up."""
        if len(heap) > 2 * len(self._calls) + 64:
            calls = self._calls
            heap[:] = [entry for entry in heap if calls.get(entry[2].call_id) is entry[2]]
            heapify(heap)
        heappush(heap, (when, call.seq, call))

    def _offer(self, queue: QueueRecord, call: WaitingCall, key: int, now: float) -> Offer:
        """Reserve the agent behind ``key`` for ``call``."""
        agent = self._live.pop(key & SEQ_MASK)
        agent.seq = 0
        if agent.rings:
            for ring, entry in agent.rings:
                ring.remove(entry)
            agent.rings.clear()
        agent_id = agent.info.agent_id
        if queue.picked is not None:
            queue.picked(agent_id)
        return Offer(call, agent_id, queue.name, now - call.enqueued_at)

    def _promote(self, now: float) -> list[Offer]:
        """Open the calls whose overflow time has come to every city; offer them to available agents."""
        heap, offers = self._overflows, []
        while heap and heap[0][0] <= now:
            deadline, _, call = heappop(heap)
            if self._calls.get(call.call_id) is not call or call.overflowed:
                continue
            queue = self._queues[call.queue]
            if queue.overflow_after is None or call.enqueued_at + queue.overflow_after != deadline:
                continue
            queue.calls.open_up(call)
            key = queue.best()
            if key is not None and key < queue.limit:
                self.abandon(call.call_id)
                offers.append(self._offer(queue, call, key, now))
        return offers

    # -- queries and statistics --------------------------------------------------------

    def position(self, call_id: str) -> int | None:
        """The call's rank in its queue (1 = next), O(log n); None if it is not waiting."""
        call = self._calls.get(call_id)
        return None if call is None else self._queues[call.queue].calls.position(call)

    def waiting(self, queue: str) -> list[WaitingCall]:
        """The calls waiting in ``queue``, next to be served first."""
        return self._queue(queue).calls.calls()

    def queue_length(self, queue: str) -> int:
        """How many calls wait in ``queue``."""
        return len(self._queue(queue).calls)

    def call(self, call_id: str) -> WaitingCall | None:
        """The waiting call ``call_id``, or None."""
        return self._calls.get(call_id)

    def all_busy(self, queue: str) -> bool:
        """True when no agent of any city that may take ``queue``'s calls is available (遇忙)."""
        q = self._queue(queue)
        key = q.best()
        return key is None or key >= q.limit

    def estimated_wait(self, call_id: str) -> float | None:
        """Seconds the waiting call should still wait (see :mod:`ctid.acd.ewt`); None if unknown."""
        call = self._calls.get(call_id)
        if call is None:
            return None
        queue = self._queues[call.queue]
        return self._estimator(queue.stats.snapshot(queue.calls.position(call), self._serving[queue.group]))

    def estimated_queue_wait(self, queue: str, priority: int = 0) -> float | None:
        """Seconds a new call of ``priority`` would wait in ``queue`` (behind every call of its priority)."""
        q = self._queue(queue)
        position = q.calls.ahead_of(max(priority, q.config.priority)) + 1
        return self._estimator(q.stats.snapshot(position, self._serving[q.group]))

    def call_answered(self, queue: str, wait: float) -> None:
        """A call of ``queue`` was answered by its agent after ``wait`` seconds (feeds the EWT)."""
        q = self._queue(queue)
        q.stats.answered(self._clock.seconds(), wait, backlog=len(q.calls) > 0)

    def call_completed(self, queue: str, handle_time: float) -> None:
        """A call of ``queue`` ended; ``handle_time``: seconds of agent time it took (feeds the EWT)."""
        self._queue(queue).stats.completed(handle_time)
