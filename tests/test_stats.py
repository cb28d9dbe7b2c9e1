"""Statistics from stored records (ctid.kpis, ctid.stats): one hand-computed hour, on SQLite and MariaDB.

The scenario (09:00-10:00 UTC on 4 May 2026, SL 80/20, short abandon 5 s, FCR window 7 days):

====  ===========  =======  ============  =====  ====  ====  ====  ======================
call  caller       trunk    queue         agent  wait  talk  wrap  notes
====  ===========  =======  ============  =====  ====  ====  ====  ======================
c1    13800138000  DAHDI/1  general       1001   10    120   30    rated 5; calls again (c7)
c2    13911112222  DAHDI/1  general       1002   30    200   20    rated 3; calls again 6 May
c3    02112345678  DAHDI/2  complaints    1002   15    300   60
c4    13701234567  DAHDI/2  general       -      3                 short abandon
c5    13602223333  DAHDI/1  general       -      40                abandoned
c6    18688889999  DAHDI/1  -             -                        IVR self-service
c7    13800138000  DAHDI/2  consultation  1001   5     60    0     rated 4
c8    -            -        -             -                        hung up in the IVR
====  ===========  =======  ============  =====  ====  ====  ====  ======================

By hand: queued 6, short abandons 1 → offered 5; answered 4, within 20 s 3 →
SL 60 %; ASA (10+30+15+5)/4 = 15 s; AHT (150+220+360+60)/4 = 197.5 s;
abandon rate 1/5; FCR: c1 and c2 were called again within 7 days, c3 and c7
not → 50 %; satisfaction (5+3+4)/3 = 4.0, 2 of 3 satisfied.  Agents' time
(see STATES): 1001 handles 210 s and is available 2,200 s of 3,600 s logged
in; 1002 handles 580 s, available 3,020 s → occupancy 790/6,010,
utilisation 790/7,200.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert

from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import ThreadlessDatabasePool
from ctid.adapters.store.schema import agent_state_log, all_busy_log, call_records, recordings
from ctid.kpis import CallRow, Definitions, StateRow, agent_lines, first_contact_resolution, kpis, volumes
from ctid.staffing import ServiceTarget, agents_needed
from ctid.stats import StatsOptions, demands, fetch_calls, period_stats, search_logs
from tests.conftest import wipe_tables

START = datetime(2026, 5, 4, 9, 0)
END = datetime(2026, 5, 4, 10, 0)


def at(minute: int, second: int = 0, hour: int = 9) -> datetime:
    """A time on the scenario's morning."""
    return datetime(2026, 5, 4, hour, minute, second)


def call(call_id, ani, trunk, queue, agent, arrived, queued, answered, ended, wait, talk=0.0, wrap=None,
         self_service=False, abandoned=False, satisfaction=None) -> CallRow:
    return CallRow(call_id, arrived, ended, ani, trunk, queue, agent, queued, answered, wait, talk, wrap,
                   self_service, abandoned, satisfaction)


CALLS = [
    call("c1", "13800138000", "DAHDI/1", "general", "1001", at(0), at(0, 30), at(0, 40), at(2, 40), 10, 120, 30,
         satisfaction=5),
    call("c2", "13911112222", "DAHDI/1", "general", "1002", at(5), at(5, 20), at(5, 50), at(9, 10), 30, 200, 20,
         satisfaction=3),
    call("c3", "02112345678", "DAHDI/2", "complaints", "1002", at(10), at(10, 10), at(10, 25), at(15, 25), 15, 300,
         60),
    call("c4", "13701234567", "DAHDI/2", "general", None, at(20), at(20, 10), None, at(20, 13), 3, abandoned=True),
    call("c5", "13602223333", "DAHDI/1", "general", None, at(30), at(30, 10), None, at(30, 50), 40, abandoned=True),
    call("c6", "18688889999", "DAHDI/1", None, None, at(40), None, at(40), at(42), None, 120, self_service=True),
    call("c7", "13800138000", "DAHDI/2", "consultation", "1001", at(50), at(50, 5), at(50, 10), at(51, 10), 5, 60, 0,
         satisfaction=4),
    call("c8", None, None, None, None, at(55), None, at(55), at(55, 30), None, 30),
]
#: A call after the period that makes c2 a repeat contact.
LATER_CALL = call("c9", "13911112222", "DAHDI/1", "general", "1001", datetime(2026, 5, 6, 8), None,
                  datetime(2026, 5, 6, 8, 0, 5), datetime(2026, 5, 6, 8, 3), 5, 170, 10)


def state(agent, name, entered_by, start, end) -> StateRow:
    return StateRow(agent, name, entered_by, start, end)


STATES = [
    state("1001", "ready", "login", at(50, hour=8), at(0, 40)),       # 40 s inside the period
    state("1001", "talking", "answer", at(0, 40), at(2, 40)),
    state("1001", "wrap_up", "hangup", at(2, 40), at(3, 10)),
    state("1001", "ready", "wrap_up_done", at(3, 10), at(30)),
    state("1001", "ringing", "ring", at(30), at(30, 15)),
    state("1001", "locked", "lock", at(30, 15), at(31)),              # ring-no-answer
    state("1001", "not_ready", "pause", at(31), at(50, 5)),
    state("1001", "reserved", "reserve", at(50, 5), at(50, 10)),
    state("1001", "talking", "answer", at(50, 10), at(51, 10)),
    state("1001", "ready", "hangup", at(51, 10), at(10, hour=10)),     # 530 s inside
    state("1002", "ready", "login", at(0), at(5, 50)),
    state("1002", "talking", "answer", at(5, 50), at(9, 10)),
    state("1002", "wrap_up", "hangup", at(9, 10), at(9, 30)),
    state("1002", "ready", "wrap_up_done", at(9, 30), at(10, 25)),
    state("1002", "talking", "answer", at(10, 25), at(15, 25)),
    state("1002", "wrap_up", "hangup", at(15, 25), at(16, 25)),
    state("1002", "ready", "wrap_up_done", at(16, 25), at(0, hour=10)),
    state("1002", "not_hung_up", "not_hung_up", at(20), at(21)),       # a flag, not a stretch of time
]
DEFINITIONS = Definitions(answer_within=20.0, short_abandon=5.0, fcr_window=timedelta(days=7))
OPTIONS = StatsOptions(DEFINITIONS, target_level=0.8, interval=1800.0, patience="observed")
LATER = [(c.ani, c.arrived_at) for c in CALLS + [LATER_CALL] if c.ani]


def insert_scenario(connection) -> None:
    """Runs in a database pool: the scenario's calls, agent states, an all-busy wait and a recording."""
    connection.execute(insert(call_records), [
        dict(c._asdict(), record_id=f"r{n:04d}", dnis="95566", hangup_side="caller")
        for n, c in enumerate(CALLS + [LATER_CALL])])
    connection.execute(insert(agent_state_log), [
        dict(s._asdict(), record_id=f"s{n:04d}", left_by="next", duration_s=(s.ended_at - s.started_at).total_seconds())
        for n, s in enumerate(STATES)])
    connection.execute(insert(all_busy_log), [
        dict(record_id="b1", call_id="c5", queue="general", ani="13602223333", started_at=at(30, 10),
             ended_at=at(30, 50), wait_s=40.0, outcome="abandoned")])
    connection.execute(insert(recordings), [
        dict(record_id=f"v{n}", call_id=c.call_id, uniqueid=f"u{n}", agent_id=c.agent_id, ani=c.ani,
             extension=f"PJSIP/{c.agent_id}", filename=f"{c.call_id}.wav", started_at=c.answered_at,
             stopped_at=c.ended_at, duration_s=c.talk_s)
        for n, c in enumerate(CALLS) if c.agent_id])


# -- the pure functions ------------------------------------------------------------------------------------------


def test_volumes_by_hand():
    """8 calls: 1 self-service, 6 manual, 1 other, 2 abandoned; trunk seconds add up each call's time on the line."""
    v = volumes(CALLS, START, END)
    assert (v.total, v.self_service, v.manual, v.other, v.abandoned) == (8, 1, 6, 1, 2)
    assert [(t.trunk, t.calls, t.seconds) for t in v.trunks] == [
        ("(unknown)", 1, 30.0), ("DAHDI/1", 4, 160 + 250 + 50 + 120.0), ("DAHDI/2", 3, 325 + 13 + 70.0)]
    assert v.trunks[1].erlangs == pytest.approx(580 / 3600)


def test_kpis_by_hand():
    """SL, ASA, AHT, abandon rate, occupancy, utilisation, FCR and satisfaction as computed in the module docstring."""
    k = kpis(CALLS, STATES, LATER, START, END, DEFINITIONS)
    assert (k.offered, k.answered, k.answered_in_time, k.abandoned, k.short_abandoned) == (5, 4, 3, 1, 1)
    assert k.service_level == pytest.approx(0.6)
    assert k.asa == pytest.approx(15.0)
    assert k.aht == pytest.approx(197.5)
    assert k.abandon_rate == pytest.approx(0.2)
    assert k.occupancy == pytest.approx(790 / 6010)
    assert k.utilisation == pytest.approx(790 / 7200)
    assert k.fcr == pytest.approx(0.5)
    assert (k.satisfaction, k.satisfied_share, k.rated) == (pytest.approx(4.0), pytest.approx(2 / 3), 3)


def test_queue_kpis_by_hand():
    """Queue general alone: offered 3 (c4 short), answered 2, 1 in time; ASA 20 s, AHT 185 s."""
    k = kpis(CALLS, STATES, LATER, START, END, DEFINITIONS, queue="general")
    assert (k.offered, k.answered, k.answered_in_time, k.abandoned) == (3, 2, 1, 1)
    assert k.service_level == pytest.approx(1 / 3) and k.abandon_rate == pytest.approx(1 / 3)
    assert (k.asa, k.aht) == (pytest.approx(20.0), pytest.approx(185.0))
    assert k.occupancy is None


def test_nothing_to_divide_by_gives_none():
    """An empty period has no SL, ASA or AHT: None, not 0."""
    k = kpis([], [], [], START, END, DEFINITIONS)
    assert (k.offered, k.service_level, k.asa, k.aht, k.fcr, k.satisfaction) == (0, None, None, None, None, None)


def test_first_contact_resolution_window():
    """A repeat call counts against FCR only inside the window."""
    answered = [CALLS[1]]
    assert first_contact_resolution(answered, LATER, timedelta(days=7)) == 0.0
    assert first_contact_resolution(answered, LATER, timedelta(days=1)) == 1.0


def test_agent_lines_count_complaints_by_the_agents_category_before_the_queue():
    """A classified call counts by its category (SetCallCategory); an unclassified one by its queue, as before."""
    classified = [CALLS[0]._replace(category="complaint"), CALLS[2]._replace(category="consultation"),
                  CALLS[6]._replace(category="transaction"), CALLS[1]]
    lines = {line.agent_id: line for line in agent_lines(classified, STATES, START, END, DEFINITIONS)}
    assert (lines["1001"].complaints, lines["1001"].consultations) == (1, 0)  # c1 complaint, c7 a transaction
    assert (lines["1002"].complaints, lines["1002"].consultations) == (0, 1)  # c3 in complaints, said consultation


def test_agent_lines_by_hand():
    """The monthly report's columns for 1001 and 1002."""
    lines = {line.agent_id: line for line in agent_lines(CALLS, STATES, START, END, DEFINITIONS)}
    a, b = lines["1001"], lines["1002"]
    assert (a.served, a.complaints, a.consultations, a.service_total, a.service_avg) == (2, 0, 1, 210.0, 105.0)
    assert (a.waits, a.wait_avg, a.no_answer, a.not_hung_up) == (2, 7.5, 1, 0)
    assert a.occupancy == pytest.approx(210 / 2410)
    assert (b.served, b.complaints, b.consultations, b.service_total, b.service_avg) == (2, 1, 0, 580.0, 290.0)
    assert (b.waits, b.wait_avg, b.no_answer, b.not_hung_up) == (2, 22.5, 0, 1)
    assert b.occupancy == pytest.approx(580 / 3600)


def test_staffing_demands_per_queue_and_half_hour():
    """general 09:00: 3 calls, AHT 185 s, patience 43 s (1 abandon / 43 s waited); 09:30 takes the queue's AHT."""
    d = {(x.queue, x.start): x for x in demands(CALLS, START, END, OPTIONS)}
    first = d["general", START]
    assert (first.calls, first.aht, first.patience, first.seconds) == (3, 185.0, 43.0, 1800.0)
    second = d["general", at(30)]
    assert (second.calls, second.aht, second.patience) == (1, 185.0, 40.0)
    assert d["complaints", START].patience is None
    assert sorted(d) == sorted([("general", START), ("general", at(30)), ("complaints", START),
                                ("consultation", at(30))])


# -- the query layer, on both backends --------------------------------------------------------------------------


@pytest.fixture
def pool(database_url):
    """A threadless pool on the migrated database, holding the scenario (and emptied afterwards)."""
    pool = ThreadlessDatabasePool(make_engine(database_url, pool_size=1))
    pool.startService()
    pool.run(wipe_tables)
    pool.run(insert_scenario)
    yield pool
    pool.run(wipe_tables)
    pool.stopService()


def result(deferred):
    """The value of an already-fired Deferred."""
    out = []
    deferred.addBoth(out.append)
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def test_fetch_calls_round_trip(pool):
    """Rows read back equal the rows written (times to the microsecond, flags as booleans)."""
    calls = result(pool.run(fetch_calls, START, END))
    assert [c.call_id for c in calls] == [c.call_id for c in CALLS]
    assert [tuple(c) for c in calls] == [tuple(c) for c in CALLS]


def test_period_stats_from_the_database(pool):
    """The same hand-computed figures, read from the database; staffing per queue and half hour."""
    s = result(pool.run(period_stats, START, END, OPTIONS))
    assert (s.volumes.total, s.volumes.self_service, s.volumes.manual) == (8, 1, 6)
    assert s.total.service_level == pytest.approx(0.6) and s.total.fcr == pytest.approx(0.5)
    assert s.total.occupancy == pytest.approx(790 / 6010)
    assert [q.queue for q in s.queues] == ["complaints", "consultation", "general"]
    assert [(line.agent_id, line.served, line.no_answer, line.not_hung_up) for line in s.agents] == [
        ("1001", 2, 1, 0), ("1002", 2, 0, 1)]
    general = next(x for x in s.staffing if x.queue == "general" and x.start == START)
    expected = agents_needed(3 * 185 / 1800, 185.0, ServiceTarget(0.8, 20.0), patience=43.0)
    assert general.performance == expected


def test_search_logs_by_time_agent_caller_queue_extension(pool):
    """RP-1: each log searched by time and by agent, caller (exact or prefix*), queue, extension."""
    calls = result(pool.run(search_logs, "calls", START, END, {"agent": "1001"}))
    assert [row[calls.columns.index("call_id")] for row in calls.rows] == ["c1", "c7"]
    calls = result(pool.run(search_logs, "calls", START, END, {"caller": "139*"}))
    assert [row[calls.columns.index("call_id")] for row in calls.rows] == ["c2"]
    busy = result(pool.run(search_logs, "busy", START, END, {"queue": "general"}))
    assert len(busy.rows) == 1 and not busy.truncated
    recs = result(pool.run(search_logs, "recordings", START, END, {"extension": "PJSIP/1002"}))
    assert [row[recs.columns.index("call_id")] for row in recs.rows] == ["c2", "c3"]
    states = result(pool.run(search_logs, "agents", START, END, {"agent": "1002"}, limit=3))
    assert len(states.rows) == 3 and states.truncated
    assert "record_id" not in states.columns


def test_search_logs_refuses_bad_requests(pool):
    """Unknown logs, filters a log lacks and absurd limits are clear errors."""
    with pytest.raises(ValueError, match="unknown log"):
        result(pool.run(search_logs, "nope", START, END, {}))
    with pytest.raises(ValueError, match="cannot be searched by caller"):
        result(pool.run(search_logs, "agents", START, END, {"caller": "1"}))
    with pytest.raises(ValueError, match="limit"):
        result(pool.run(search_logs, "calls", START, END, {}, limit=0))


def test_prefix_search_takes_wildcards_literally(pool):
    """A '%' or '_' in a prefix search matches only itself."""
    assert result(pool.run(search_logs, "calls", START, END, {"caller": "%*"})).rows == ()
    assert result(pool.run(search_logs, "calls", START, END, {"caller": "1380013800_*"})).rows == ()


def test_staffing_patience_settings():
    """patience = none staffs by Erlang C everywhere; a number fixes every queue's patience."""
    import dataclasses

    none = demands(CALLS, START, END, dataclasses.replace(OPTIONS, patience="none"))
    fixed = demands(CALLS, START, END, dataclasses.replace(OPTIONS, patience=90.0))
    assert {d.patience for d in none} == {None} and {d.patience for d in fixed} == {90.0}
