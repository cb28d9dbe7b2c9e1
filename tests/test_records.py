"""Records end to end: simulated calls through the daemon leave the expected rows; no database, no lost records."""

from __future__ import annotations

import dataclasses

import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import reactor

from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.schema import agent_state_log, all_busy_log, call_legs, call_records, queue_events
from ctid.calls import CallEnded
from ctid.client import CTIClient, CTIClientError
from ctid.records import Records
from tests.e2e import PASSWORD, Daemon, daemon_config, free_port


async def signed_in(daemon, agent):
    """A desktop for ``agent`` on its own station, ready for calls; returns (client, events)."""
    client = CTIClient(reactor, name="test-records/1", retry_policy=lambda attempt: 0.05)
    await client.connect(f"tcp:127.0.0.1:{daemon.port('cti')}")
    events = []
    client.on_event(None, events.append)
    await client.call("Login", agent=agent, password=PASSWORD, station=agent)
    await client.call("SetAgentState", state="ready")
    return client, events


def states(events):
    """The agent states the desktop was told about, in order."""
    return [e.data["state"] for e in events if e.name == "AgentStateChanged"]


def rows(daemon, table, **where):
    """The rows of ``table`` (as dicts, in record order) matching ``where``."""
    engine = make_engine(daemon.config.database.url, pool_size=1)
    try:
        with engine.connect() as connection:
            query = select(table).order_by(table.c.record_id)
            for column, value in where.items():
                query = query.where(table.c[column] == value)
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


async def written(daemon, table, what, **where):
    """Wait until the writer has flushed and ``table`` has rows matching ``where``; return them."""
    writer = daemon.root.getServiceNamed("records")
    await daemon.until(lambda: writer.stats().queued == 0 and rows(daemon, table, **where), what)
    return rows(daemon, table, **where)


@pytest.mark.sim(talk_time="1 1")
@pytest_twisted.ensureDeferred
async def test_a_delivered_call_leaves_its_cdr_agent_log_and_queue_events(daemon):
    """Queued, offered, answered, talked, wrapped up: one call record with wait/talk/wrap-up, the agent's stretches."""
    client, _ = await signed_in(daemon, "1002")
    trunk = daemon.call_in("13800138000", "95566", script="1", patience=30)
    call_id = trunk.linkedid
    (record,) = await written(daemon, call_records, "the call record (after wrap-up)", call_id=call_id)
    assert (record["ani"], record["dnis"], record["queue"], record["agent_id"]) == (
        "13800138000", "95566", "general", "1002")
    assert not record["self_service"] and not record["abandoned"] and record["hangup_side"] in ("caller", "agent")
    assert record["arrived_at"] <= record["queued_at"] <= record["answered_at"] <= record["ended_at"]
    assert record["talk_s"] > 0 and record["wait_s"] >= 0 and record["wrap_up_s"] > 0
    assert record["trunk"]
    kinds = [e["kind"] for e in await written(daemon, queue_events, "queue events", call_id=call_id)]
    assert kinds == ["enqueue", "offer", "answer"]
    stretches = await written(daemon, agent_state_log, "agent stretches", agent_id="1002")
    states = [(s["state"], s["entered_by"], s["left_by"]) for s in stretches]
    assert states[:5] == [("not_ready", "login", "ready"), ("ready", "ready", "reserve"),
                          ("reserved", "reserve", "ring"), ("ringing", "ring", "answer"),
                          ("talking", "answer", "hangup")]
    assert all(s["call_id"] == call_id for s in stretches[2:5])
    legs = await written(daemon, call_legs, "the call's legs", call_id=call_id)
    assert any(leg["agent_id"] == "1002" for leg in legs)
    await client.close()


@pytest.mark.sim(talk_time="2 2")
@pytest_twisted.ensureDeferred
async def test_the_agent_classifies_its_call_and_the_record_keeps_the_category(daemon):
    """SetCallCategory while talking: the call record carries the category; nonsense and no call are refused."""
    client, events = await signed_in(daemon, "1003")
    with pytest.raises(CTIClientError, match="no_call: no call to classify"):
        await client.call("SetCallCategory", category="complaint")
    trunk = daemon.call_in("13800138005", "95566", script="1", patience=30)
    await daemon.until(lambda: "talking" in states(events), "the agent to talk")
    with pytest.raises(CTIClientError, match="bad_request: category must be one of"):
        await client.call("SetCallCategory", category="rant")
    result = await client.call("SetCallCategory", category="complaint")
    assert result == {"call": trunk.linkedid, "category": "complaint"}
    (record,) = await written(daemon, call_records, "the call record", call_id=trunk.linkedid)
    assert (record["agent_id"], record["category"]) == ("1003", "complaint")
    await client.close()


@pytest_twisted.ensureDeferred
async def test_a_caller_giving_up_in_the_queue_is_an_abandoned_all_busy_wait(daemon):
    """Nobody ready: the wait is logged as all-busy, the call record says abandoned, the queue events too."""
    trunk = daemon.call_in("13800138002", "95566", script="1", patience=2)
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the caller to give up")
    (record,) = await written(daemon, call_records, "the call record", call_id=trunk.linkedid)
    assert record["abandoned"] and record["agent_id"] is None and record["wrap_up_s"] is None
    kinds = [e["kind"] for e in await written(daemon, queue_events, "queue events", call_id=trunk.linkedid)]
    assert kinds == ["enqueue", "abandon"]
    (busy,) = await written(daemon, all_busy_log, "the all-busy wait", call_id=trunk.linkedid)
    assert (busy["queue"], busy["outcome"], busy["ani"]) == ("general", "abandoned", "13800138002")
    assert busy["wait_s"] > 0


@pytest_twisted.ensureDeferred
async def test_audit_and_trade_helpers_mask_what_must_not_be_stored(daemon):
    """An audit detail with a card number and a trade's account keep only the last 4 digits."""
    writer = daemon.root.getServiceNamed("records")
    records = Records(writer, reactor)
    records.audit("1900", "supervisor", "127.0.0.1:5000", "force_logout", "1002", "ok", "card 6222021234567891234")
    records.trade("T-1", "balance", "0000", account="6222021234567891234", amount="12.50", currency="CNY",
                  latency_ms=35, call_id="c-1")
    from ctid.adapters.store.schema import audit_log, trade_log

    (audit,) = await written(daemon, audit_log, "the audit row", actor="1900")
    (trade,) = await written(daemon, trade_log, "the trade row", trade_id="T-1")
    assert audit["detail"] == "card **** **** **** 1234"
    assert (trade["account"], str(trade["amount"]), trade["latency_ms"]) == ("**** **** **** 1234", "12.50", 35)


@pytest.mark.allow_logged_errors  # the schema upgrade at start-up fails, and says so
@pytest_twisted.ensureDeferred
async def test_a_daemon_whose_database_is_unreachable_still_answers_calls_and_spools(tmp_path):
    """MySQL on a closed port: the simulated call is still handled; its records wait in the spool."""
    settings = daemon_config(tmp_path)
    url = f"mysql+pymysql://ctid@127.0.0.1:{free_port()}/ctid?connect_timeout=1"
    settings = dataclasses.replace(settings, database=dataclasses.replace(settings.database, url=url),
                                   records=dataclasses.replace(settings.records, spool=str(tmp_path / "spool")))
    daemon = Daemon(settings)
    daemon.root.startService()
    try:
        await daemon.root.getServiceNamed("schema").done
        await daemon.ami.whenConnected()
        await daemon.until(lambda: daemon.pbx.synced, "the first resync")
        trunk = daemon.call_in("13800138003", "95566", script="1", patience=1)
        await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the call to be handled and end")
        writer = daemon.root.getServiceNamed("records")
        await daemon.until(lambda: writer.stats().spooling and writer.stats().spooled > 0, "records to be spooled")
    finally:
        await daemon.stop()
    assert b'"table":"call_records"' in (tmp_path / "spool").read_bytes()
