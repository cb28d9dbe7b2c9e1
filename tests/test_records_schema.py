"""Revisions 0003 and 0004: the record tables, their indexes, sub-second UTC times, call categories."""

from __future__ import annotations

from datetime import datetime

from alembic import command
from sqlalchemy import delete, insert, inspect, select

from ctid.adapters.store import migrate
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.schema import RECORD_TABLES, audit_log, call_records, trade_log


def test_the_migrations_create_every_record_table_with_its_indexes(database_url):
    """After ``upgrade`` each record table exists, keyed on record_id, with the report indexes."""
    engine = make_engine(database_url, pool_size=1)
    try:
        inspector = inspect(engine)
        assert set(RECORD_TABLES) <= set(inspector.get_table_names())
        for name in RECORD_TABLES:
            assert inspector.get_pk_constraint(name)["constrained_columns"] == ["record_id"]
        indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes("call_records")}
        assert {("arrived_at",), ("agent_id", "arrived_at"), ("queue", "arrived_at"), ("ani", "arrived_at")} <= indexed
    finally:
        engine.dispose()


def test_times_keep_microseconds_on_both_backends(database_url):
    """DATETIME(6) on MySQL, text on SQLite: a time comes back exactly as stored."""
    at = datetime(2025, 3, 1, 8, 30, 5, 123456)
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.begin() as connection:
            connection.execute(insert(audit_log).values(record_id="r1", at=at, actor="a", action="x", outcome="ok"))
            assert connection.scalar(select(audit_log.c.at).where(audit_log.c.record_id == "r1")) == at
            connection.execute(delete(audit_log))
    finally:
        engine.dispose()


def test_downgrade_to_0002_drops_only_the_record_tables(tmp_path):
    """Revision 0003 comes off cleanly (0004 with it) and everything goes on again."""
    url = f"sqlite:///{tmp_path / 'ctid.db'}"
    migrate.upgrade(url)
    command.downgrade(migrate.alembic_config(url), "0002")
    engine = make_engine(url, pool_size=1)
    try:
        names = set(inspect(engine).get_table_names())
        assert not names & set(RECORD_TABLES) and "customers" in names
    finally:
        engine.dispose()
    migrate.upgrade(url)
    assert migrate.current_revision(make_engine(url)) == migrate.head_revision()


def test_0004_keeps_a_category_per_call_and_long_host_result_codes(database_url):
    """A call's wrap-up category is stored; a 32-character host result code fits whole (it used to be cut at 16)."""
    at = datetime(2026, 11, 2, 9, 0)
    code = "insufficient_funds_daily_limit_x"
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.begin() as connection:
            connection.execute(insert(call_records).values(
                record_id="c1", call_id="1.1", arrived_at=at, ended_at=at, self_service=False, abandoned=False,
                category="complaint"))
            connection.execute(insert(trade_log).values(record_id="t1", at=at, trade_id="T1", kind="transfer",
                                                        result_code=code, channel="ivr"))
            assert connection.scalar(select(call_records.c.category)) == "complaint"
            assert connection.scalar(select(trade_log.c.result_code)) == code
            connection.execute(delete(call_records))
            connection.execute(delete(trade_log))
    finally:
        engine.dispose()


def test_downgrade_from_0004_to_0003_and_back(tmp_path):
    """0004 comes off (the column goes, long codes are cut to 16) and goes on again."""
    url = f"sqlite:///{tmp_path / 'ctid.db'}"
    migrate.upgrade(url)
    command.downgrade(migrate.alembic_config(url), "0003")
    engine = make_engine(url, pool_size=1)
    try:
        assert "category" not in {c["name"] for c in inspect(engine).get_columns("call_records")}
    finally:
        engine.dispose()
    migrate.upgrade(url)
    assert migrate.current_revision(make_engine(url)) == migrate.head_revision()
