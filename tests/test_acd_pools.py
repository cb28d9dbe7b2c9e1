"""The building blocks: agent and call heaps with lazy deletion, the round-robin ring, the keys."""

from __future__ import annotations

from ctid.acd.calls import CallHeap, call_key
from ctid.acd.pools import SEQ_MASK, AgentHeap, AgentInfo, HeapIndex, RingIndex, file_agent, level_key, level_of
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
