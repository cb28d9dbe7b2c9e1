"""Records, written behind: calls and legs, agent state log, queue events, all-busy waits, recordings,
voice messages, the core-banking trade log and the audit log.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Names are wrapped in op.f(): final, whatever naming convention the live metadata has later.
_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
#: UTC with microseconds on both backends.
_TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

_TABLES = ("call_records", "call_legs", "agent_state_log", "queue_events", "all_busy_log", "recordings",
           "voice_messages", "trade_log", "audit_log")


def _at(name: str, nullable: bool = False, comment: str = "UTC") -> sa.Column:
    """A UTC timestamp column."""
    return sa.Column(name, _TIMESTAMP, nullable=nullable, comment=comment)


def _create(name: str, *columns: sa.Column, checks: tuple[tuple[str, str], ...] = ()) -> None:
    """Create record table ``name``: ``record_id`` primary key, ``columns``, named check constraints."""
    op.create_table(
        name,
        sa.Column("record_id", sa.String(32), nullable=False, comment="the writer's id; a replay is not doubled"),
        *columns,
        sa.PrimaryKeyConstraint("record_id", name=op.f(f"pk_{name}")),
        *(sa.CheckConstraint(sql, name=op.f(f"ck_{name}_{check}")) for check, sql in checks),
        **_MYSQL,
    )


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def upgrade() -> None:
    """Create the nine record tables and the indexes the reports use."""
    _create(
        "call_records",
        sa.Column("call_id", sa.String(64), nullable=False, comment="the switch's Linkedid"),
        sa.Column("ani", sa.String(32), nullable=True, comment="caller's number"),
        sa.Column("dnis", sa.String(32), nullable=True, comment="number dialled"),
        sa.Column("trunk", sa.String(64), nullable=True,
                  comment="line/trunk the call came in on: its first channel's device"),
        sa.Column("queue", sa.String(64), nullable=True, comment="last queue the call waited in; NULL: never queued"),
        sa.Column("agent_id", sa.String(32), nullable=True, comment="agent who answered; NULL: no agent"),
        sa.Column("customer_id", sa.String(32), nullable=True,
                  comment="customer identified by the IVR or the screen pop"),
        sa.Column("city", sa.String(64), nullable=True, comment="caller's city as the ACD located it"),
        sa.Column("priority", sa.SmallInteger(), nullable=True, comment="queue priority the call had"),
        _at("arrived_at"),
        _at("queued_at", True, "UTC, first time queued for an agent"),
        _at("answered_at", True, "UTC, first connected to a party"),
        _at("ended_at"),
        sa.Column("wait_s", sa.Float(), nullable=True,
                  comment="seconds queued before an agent answered or the caller left"),
        sa.Column("talk_s", sa.Float(), nullable=False, server_default=sa.text("0"),
                  comment="answer to end, hold included"),
        sa.Column("hold_s", sa.Float(), nullable=False, server_default=sa.text("0")),
        sa.Column("wrap_up_s", sa.Float(), nullable=True, comment="the agent's after-call work; NULL: no agent"),
        sa.Column("hangup_side", sa.String(8), nullable=True, comment="caller, agent or system: who hung up first"),
        sa.Column("hangup_cause", sa.SmallInteger(), nullable=True, comment="Q.850 cause of the call's end"),
        sa.Column("ivr_path", sa.String(255), nullable=False, server_default="",
                  comment="IVR nodes visited, '>' between"),
        sa.Column("self_service", sa.Boolean(), nullable=False, comment="1: served by the IVR alone, never queued"),
        sa.Column("abandoned", sa.Boolean(), nullable=False,
                  comment="1: the caller hung up while waiting for an agent"),
        sa.Column("transfers", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("satisfaction", sa.SmallInteger(), nullable=True, comment="caller's score 1..5; NULL: not rated"),
        checks=(("hangup_side", "hangup_side IN ('caller', 'agent', 'system')"),),
    )
    for columns in (("arrived_at",), ("agent_id", "arrived_at"), ("queue", "arrived_at"), ("ani", "arrived_at"),
                    ("call_id",)):
        _index("call_records", *columns)

    _create(
        "call_legs",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("uniqueid", sa.String(64), nullable=False, comment="the channel's Uniqueid"),
        sa.Column("channel", sa.String(128), nullable=False, comment="channel name, e.g. PJSIP/1001-00000002"),
        sa.Column("agent_id", sa.String(32), nullable=True, comment="the agent whose station this leg is"),
        _at("joined_at"),
        _at("answered_at", True, "UTC, the leg went Up"),
        _at("left_at"),
        sa.Column("hangup_cause", sa.SmallInteger(), nullable=True,
                  comment="Q.850; NULL: moved to another call or vanished"),
    )
    _index("call_legs", "call_id")
    _index("call_legs", "agent_id", "joined_at")

    _create(
        "agent_state_log",
        sa.Column("agent_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False,
                  comment="ready, not_ready, reserved, ringing, talking, hold, wrap_up, locked, not_hung_up"),
        sa.Column("entered_by", sa.String(16), nullable=False, comment="trigger that began it: login, pause, lock…"),
        sa.Column("left_by", sa.String(16), nullable=False,
                  comment="trigger that ended it: logout, ready, unlock, shutdown…"),
        sa.Column("reason", sa.String(64), nullable=True, comment="pause reason code"),
        sa.Column("call_id", sa.String(64), nullable=True, comment="call offered or handled in this state"),
        sa.Column("forced_by", sa.String(32), nullable=True, comment="supervisor who forced the state"),
        _at("started_at"),
        _at("ended_at"),
        sa.Column("duration_s", sa.Float(), nullable=False),
    )
    _index("agent_state_log", "agent_id", "started_at")
    _index("agent_state_log", "started_at")

    _create(
        "queue_events",
        _at("at"),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False,
                  comment="enqueue, offer, answer, abandon, requeue, overflow, timeout, external"),
        sa.Column("agent_id", sa.String(32), nullable=True, comment="agent offered or answering"),
        sa.Column("wait_s", sa.Float(), nullable=True, comment="seconds since first queued"),
        sa.Column("position", sa.Integer(), nullable=True, comment="calls waiting in the queue, this one included"),
        sa.Column("priority", sa.SmallInteger(), nullable=True),
        sa.Column("detail", sa.String(255), nullable=False, server_default="",
                  comment="route rule, dial status, target…"),
        checks=(("kind", "kind IN ('enqueue', 'offer', 'answer', 'abandon', 'requeue', 'overflow', 'timeout', "
                         "'external')"),),
    )
    _index("queue_events", "queue", "at")
    _index("queue_events", "at")
    _index("queue_events", "call_id")

    _create(
        "all_busy_log",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("ani", sa.String(32), nullable=True),
        _at("started_at", comment="UTC, queued with no agent free"),
        _at("ended_at", comment="UTC, offered to an agent, sent out or abandoned"),
        sa.Column("wait_s", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False, comment="offered, abandoned, external"),
        checks=(("outcome", "outcome IN ('offered', 'abandoned', 'external')"),),
    )
    _index("all_busy_log", "started_at")
    _index("all_busy_log", "queue", "started_at")

    _create(
        "recordings",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("uniqueid", sa.String(64), nullable=False, comment="the recorded leg"),
        sa.Column("agent_id", sa.String(32), nullable=True, comment="agent on the call"),
        sa.Column("ani", sa.String(32), nullable=True),
        sa.Column("extension", sa.String(64), nullable=True, comment="agent's station, or the number dialled"),
        sa.Column("filename", sa.String(255), nullable=True, comment="the file on the recording server"),
        _at("started_at"),
        _at("stopped_at"),
        sa.Column("duration_s", sa.Float(), nullable=False),
    )
    for columns in (("started_at",), ("agent_id", "started_at"), ("extension", "started_at"), ("call_id",)):
        _index("recordings", *columns)

    _create(
        "voice_messages",
        _at("at", comment="UTC, when the message was left"),
        sa.Column("call_id", sa.String(64), nullable=True),
        sa.Column("ani", sa.String(32), nullable=True, comment="caller's number, to call back"),
        sa.Column("mailbox", sa.String(64), nullable=False, comment="queue or agent the message is for"),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
    )
    _index("voice_messages", "mailbox", "at")
    _index("voice_messages", "at")

    _create(
        "trade_log",
        _at("at", comment="UTC, request sent"),
        sa.Column("trade_id", sa.String(64), nullable=False, comment="the request's serial number"),
        sa.Column("kind", sa.String(32), nullable=False, comment="balance, transfer, statement, loss_report…"),
        sa.Column("call_id", sa.String(64), nullable=True),
        sa.Column("customer_id", sa.String(32), nullable=True),
        sa.Column("account", sa.String(24), nullable=True, comment="masked: **** **** **** 1234"),
        sa.Column("amount", sa.Numeric(18, 2), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True, comment="ISO 4217: CNY, USD…"),
        sa.Column("result_code", sa.String(16), nullable=False, comment="the host's answer code, or timeout, error…"),
        sa.Column("latency_ms", sa.Integer(), nullable=True, comment="NULL: no answer"),
        sa.Column("channel", sa.String(16), nullable=False, comment="ivr, agent, sms…"),
        sa.Column("agent_id", sa.String(32), nullable=True),
    )
    for columns in (("at",), ("trade_id",), ("call_id",), ("customer_id", "at")):
        _index("trade_log", *columns)

    _create(
        "audit_log",
        _at("at"),
        sa.Column("actor", sa.String(64), nullable=False, comment="agent id, admin, or system"),
        sa.Column("role", sa.String(16), nullable=True, comment="agent, supervisor, admin, leader"),
        sa.Column("address", sa.String(64), nullable=True, comment="peer host:port"),
        sa.Column("action", sa.String(64), nullable=False, comment="login, force_logout, listen, reload…"),
        sa.Column("target", sa.String(128), nullable=True, comment="agent, call, queue or file acted on"),
        sa.Column("outcome", sa.String(32), nullable=False, comment="ok, or the refusal code"),
        sa.Column("detail", sa.String(1000), nullable=False, server_default="",
                  comment="long digit runs are masked"),
    )
    for columns in (("at",), ("actor", "at"), ("action", "at")):
        _index("audit_log", *columns)


def downgrade() -> None:
    """Drop the record tables (their indexes go with them)."""
    for name in reversed(_TABLES):
        op.drop_table(name)
