"""The building blocks: agent and call heaps with lazy deletion, the round-robin ring, the keys."""

from __future__ import annotations

from ctid.acd.calls import CallHeap, CallPool, CallQueue, WaitingCall, call_key
from ctid.acd.config import QueueConfig
from ctid.acd.pools import SEQ_MASK, AgentHeap, AgentInfo, HeapIndex, RingIndex, bury, file_agent, level_key, level_of
from ctid.acd.strategies import STRATEGIES


def test_keys_order_by_level_then_metric_then_sequence():
    """Agent keys sort higher levels first, then lower metrics, then earlier availability."""
    live: dict[int, object] = {}
    index = HeapIndex(STRATEGIES["least_talk"].metric, False, live)
    agents = [("a", 5, 10.0, 1), ("b", 7, 99.0, 2), ("c", 5, 10.0, 3), ("d", 5, 9.999, 4)]
    for agent_id, level, talk, seq in agents:
        live[seq] = agent_id
        index.add(AgentInfo(agent_id, talk_time_total=talk), level_key(level), seq, [])
    order = []
    while (key := index.best()) is not None:
        order.append(live.pop(key & SEQ_MASK))
        assert level_of(key) in (5, 7)
    assert order == ["b", "d", "a", "c"]


def test_call_keys_order_by_priority_then_sequence():
    """Call keys: higher priority first, then the sequence (negative sequences first), then the generation."""
    keys = [call_key(0, 5), call_key(3, 9), call_key(0, -1), call_key(0, 5, 2), call_key(-1, 1)]
    assert sorted(keys) == [keys[1], keys[2], keys[0], keys[3], keys[4]]


def test_agent_heap_stays_bounded_under_churn():
    """Dead entries never pile up: a heap holds at most about twice its peak live size."""
    live: dict[int, object] = {}
    heap = AgentHeap(live)
    for seq in range(1, 20_001):
        live[seq] = None
        heap.push(level_key(5) + seq)
        live.pop(seq - 10, None)  # ten agents available at a time, one leaves per arrival
        assert len(heap.items) <= 2 * 64 + 64
    assert heap.top() & SEQ_MASK == 19_991


def test_call_heap_stays_bounded_under_churn():
    """Abandoned calls' keys are dropped by compaction even if they never reach the top."""
    live: dict[int, object] = {}
    heap = CallHeap(live)
    for seq in range(10_000):
        key = call_key(0, -seq)  # every new call goes to the top: old ones sink and are abandoned
        live[key] = None
        heap.push(key)
        live.pop(call_key(0, -(seq - 3)), None)
        assert len(heap.items) <= 200
    assert heap.top() == call_key(0, -9_999)


def test_ring_wraps_and_skips_the_last_offered():
    """The ring answers the agent after the last one offered, wrapping to the first of the tier."""
    ring = RingIndex(local=True)
    rings: list = []
    for seq, agent_id in enumerate(("b", "a", "c"), start=1):
        ring.add(AgentInfo(agent_id, city="Shanghai"), level_key(4), seq, rings)
    assert ring.best() & SEQ_MASK == 2  # "a"
    ring.picked("a")
    assert ring.best() & SEQ_MASK == 1  # "b"
    ring.picked("c")
    assert ring.best("Shanghai") & SEQ_MASK == 2  # wraps to "a"
    assert ring.best("Beijing") is None
    for sorted_list, entry in rings:
        sorted_list.remove(entry)
    assert ring.best() is None


def test_file_agent_files_in_every_index_and_city():
    """file_agent puts one key per index, and a second one under the city for local indexes."""
    live = {1: "a"}
    plain = HeapIndex(STRATEGIES["fewest_answered"].metric, False, live)
    local = HeapIndex(None, True, live)
    ring = RingIndex(False)
    rings: list = []
    file_agent(((plain, level_key(3)), (local, level_key(6)), (ring, level_key(6))), AgentInfo("a", city="X"), 1, rings)
    assert [level_of(k) for k in (plain.best(), local.best(), local.best("X"), ring.best())] == [3, 6, 6, 6]
    assert local.best("Y") is None and len(rings) == 1


def test_agent_heap_compacts_in_place():
    """Compaction keeps the heap's list object (the ACD holds it) and drops only dead keys."""
    live: dict[int, object] = {}
    heap = AgentHeap(live)
    items = heap.items
    for seq in range(1, 200):
        live[seq] = None
        heap.push(level_key(5) + seq)
        if seq % 3:
            del live[seq]
    assert heap.items is items
    assert len(items) < 199 and {k & SEQ_MASK for k in items} >= set(live)


def test_ring_with_a_live_table_steps_over_buried_entries_and_rebuilds():
    """Lazy rings: buried entries are never answered, and a ring mostly dead is rebuilt when an agent is filed."""
    live: dict[int, object] = {}
    ring = RingIndex(local=False, live=live)
    filed: dict[str, list] = {}
    for seq, agent_id in enumerate(("a", "b", "c", "d"), start=1):
        live[seq] = agent_id
        filed[agent_id] = []
        ring.add(AgentInfo(agent_id), level_key(4), seq, filed[agent_id])
    ring.picked("a")
    del live[2]
    bury(filed["b"])
    assert ring.best() & SEQ_MASK == 3  # "b" is dead: "c" follows "a"
    assert filed["b"] == [] and ring.everyone.dead == 1
    for seq in (1, 3, 4):
        del live[seq]
    for agent_id in ("a", "c", "d"):
        bury(filed[agent_id])
    assert ring.best() is None
    for seq in range(10, 22):  # twelve more, ten of which leave
        live[seq] = f"x{seq}"
        ring.add(AgentInfo(f"x{seq}"), level_key(4), seq, filed.setdefault(f"x{seq}", []))
    for seq in range(10, 20):
        del live[seq]
        bury(filed[f"x{seq}"])
    live[30] = "y"
    ring.add(AgentInfo("y"), level_key(4), 30, [])  # 14 dead of 16: rebuilt before filing "y"
    assert ring.everyone.dead == 0 and [entry[1] for entry in ring.everyone] == ["x20", "x21", "y"]


def test_call_queue_order_is_brought_up_to_date_only_when_asked():
    """Filing and taking calls only note their keys; positions and listings are right whenever asked."""
    pool = CallPool()
    queue = CallQueue(QueueConfig("q", "g"), pool)
    calls = [WaitingCall(f"c{seq}", "q") for seq in range(6)]
    for seq, call in enumerate(calls):
        call.priority, call.seq = (5 if seq == 4 else 0), seq
        queue.insert(call)
    queue.remove(calls[1])
    assert len(queue) == 5 and queue.position(calls[4]) == 1 and queue.position(calls[5]) == 5
    assert not queue.added and not queue.removed
    key = pool.open.top()
    del pool.live[key]
    queue.forget(key)  # the agent side took the most urgent call
    queue.reprioritise(calls[5], 9)
    assert [c.call_id for c in queue.calls()] == ["c5", "c0", "c2", "c3"]
    assert queue.ahead_of(9) == 1 and queue.ahead_of(0) == 4
