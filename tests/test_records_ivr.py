"""Revision 0005 and the IVR records: where each call left its flow (ivr_sessions) and faxed statements."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest_twisted
from alembic import command
from sqlalchemy import inspect
from twisted.internet import reactor
from twisted.internet.task import Clock

from ctid.adapters.store import migrate
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.schema import fax_requests, ivr_sessions
from ctid.banking import Statement, Transaction
from ctid.ivr.call import CallInfo, FaxRequest, FlowEnd
from ctid.records import Records
from tests.test_records import written

INFO = CallInfo("PJSIP/trunk-00000001", "1700000000.1", "13800138000", "95566", "bank")
LINE = Transaction(datetime(2026, 11, 2, 9, 0), -1250, 98750, "ATM", "R1")


class ListSink:
    """Keeps what is written, as (table, row)."""

    def __init__(self):
        self.rows = []

    def write(self, table, row):
        self.rows.append((table, dict(row)))
        return str(len(self.rows))


def test_a_flow_end_becomes_one_ivr_session_row():
    """Node, reason, path, verification and customer are kept; the time is the clock's; no customer is NULL."""
    clock, sink = Clock(), ListSink()
    clock.advance(1_700_000_000)
    records = Records(sink, clock)
    records.ivr_session(FlowEnd(INFO, "to_agent", "transfer", "main>card>balance", True, "C0001"))
    records.ivr_session(FlowEnd(INFO, "welcome", "hangup", "", False, ""))
    assert sink.rows == [
        ("ivr_sessions", {"at": 1_700_000_000, "call_id": "1700000000.1", "uniqueid": "1700000000.1",
                          "channel": "PJSIP/trunk-00000001", "flow": "bank", "node": "to_agent",
                          "reason": "transfer", "path": "main>card>balance", "verified": True,
                          "customer_id": "C0001"}),
        ("ivr_sessions", {"at": 1_700_000_000, "call_id": "1700000000.1", "uniqueid": "1700000000.1",
                          "channel": "PJSIP/trunk-00000001", "flow": "bank", "node": "welcome", "reason": "hangup",
                          "path": "", "verified": False, "customer_id": None}),
    ]


def test_a_fax_request_keeps_the_masked_account_the_number_the_date_and_the_line_count():
    """Even a statement carrying a full account number is stored with its last 4 digits only."""
    clock, sink = Clock(), ListSink()
    records = Records(sink, clock)
    statement = Statement("6222021234567891234", "Zhang San", date(2026, 11, 1), (LINE, LINE))
    records.fax_request(FaxRequest(INFO, "fax", "02188886666", statement, "C0001"))
    assert sink.rows == [("fax_requests", {
        "at": 0, "call_id": "1700000000.1", "customer_id": "C0001", "account": "**** **** **** 1234",
        "fax_number": "02188886666", "since": "2026-11-01", "lines": 2, "status": "requested"})]


@pytest_twisted.ensureDeferred
async def test_both_rows_reach_the_database_through_the_writer(daemon):
    """Written behind like every record: the rows land in the tables, times as UTC."""
    records = Records(daemon.root.getServiceNamed("records"), reactor)
    before = datetime.now(UTC).replace(tzinfo=None)
    records.ivr_session(FlowEnd(INFO, "menu", "completed", "main>rates", False, ""))
    statement = Statement("**** **** **** 4321", "Li Si", date(2026, 10, 1), (LINE,))
    records.fax_request(FaxRequest(INFO, "fax", "02188886666", statement))
    (session,) = await written(daemon, ivr_sessions, "the IVR session row", call_id=INFO.uniqueid)
    (fax,) = await written(daemon, fax_requests, "the fax request row", call_id=INFO.uniqueid)
    assert (session["node"], session["reason"], session["path"], session["verified"]) == (
        "menu", "completed", "main>rates", False)
    assert session["customer_id"] is None and session["at"] >= before
    assert (fax["account"], fax["since"], fax["lines"], fax["status"]) == (
        "**** **** **** 4321", "2026-10-01", 1, "requested")


def test_downgrade_from_0005_to_0004_and_back(tmp_path):
    """0005 comes off (both tables go, with their indexes) and goes on again."""
    url = f"sqlite:///{tmp_path / 'ctid.db'}"
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=1)
    try:
        indexed = {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes("ivr_sessions")}
        assert indexed == {("at",), ("call_id",)}
        command.downgrade(migrate.alembic_config(url), "0004")
        assert not {"ivr_sessions", "fax_requests"} & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    migrate.upgrade(url)
    assert migrate.current_revision(make_engine(url)) == "0005"
