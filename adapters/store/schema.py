"""ctid's tables as SQLAlchemy Core metadata — the shape the migrations must produce.

Every change here comes with a new revision under ``migrations/versions``
(written by hand or with Alembic's autogenerate, then reviewed); the test
suite checks that the migrated database matches this metadata on SQLite and
MySQL.  Constraint names follow :data:`NAMING_CONVENTION` so migrations can
refer to them on every backend.

Tables are InnoDB, utf8mb4 with a binary collation on MySQL, so string
comparisons are exact (case-sensitive) there as they are on SQLite.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    func,
    text,
)
from sqlalchemy.dialects import mysql

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Table options for MySQL/MariaDB (ignored by SQLite).
MYSQL_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: Agents, supervisors, admins and leaders who may log in to the CTI server.
agents = Table(
    "agents", metadata,
    Column("agent_id", String(32), primary_key=True, comment="login id, usually the agent's number"),
    Column("name", String(100), nullable=False),
    Column("password_hash", String(255), nullable=True,
           comment="scrypt$n$r$p$salt$hash; NULL: no local password (LDAP only, or not set yet)"),
    Column("roles", String(100), nullable=False, server_default="agent",
           comment="comma list of agent, supervisor, admin, leader"),
    Column("manages", String(255), nullable=False, server_default="",
           comment="comma list of skill groups and cities a supervisor manages"),
    Column("city", String(64), nullable=True),
    Column("enabled", Boolean(), nullable=False, server_default=text("1")),
    Column("created_at", DateTime(), nullable=False, server_default=func.current_timestamp(), comment="UTC"),
    **MYSQL_OPTIONS,
)

#: Skill groups (queues' agent pools): accounts, consultation, complaints…
skill_groups = Table(
    "skill_groups", metadata,
    Column("name", String(64), primary_key=True),
    Column("description", String(255), nullable=False, server_default=""),
    **MYSQL_OPTIONS,
)

#: Which agent serves which skill group, at which level (1 lowest .. 9 highest).
agent_skills = Table(
    "agent_skills", metadata,
    Column("agent_id", String(32), ForeignKey("agents.agent_id", ondelete="CASCADE"), primary_key=True),
    Column("skill_group", String(64), ForeignKey("skill_groups.name"), primary_key=True),
    Column("level", SmallInteger(), nullable=False),
    CheckConstraint("level BETWEEN 1 AND 9", name="level"),
    Index(None, "skill_group"),
    **MYSQL_OPTIONS,
)

#: Bank customers, for the agent's screen pop (AG-2).
customers = Table(
    "customers", metadata,
    Column("customer_id", String(32), primary_key=True, comment="the bank's customer number"),
    Column("name", String(100), nullable=False),
    Column("segment", String(16), nullable=False, server_default="retail",
           comment="vip, private, corporate, retail…"),
    Column("city", String(64), nullable=True),
    Column("language", String(16), nullable=False, server_default="zh", comment="preferred language: zh, en, yue…"),
    Column("notes", String(1000), nullable=False, server_default="",
           comment="free text for agents; long digit runs are masked before storing"),
    Column("created_at", DateTime(), nullable=False, server_default=func.current_timestamp(), comment="UTC"),
    **MYSQL_OPTIONS,
)

#: Which phone numbers (national form) belong to which customers; a number may be shared.
customer_phones = Table(
    "customer_phones", metadata,
    Column("number", String(24), primary_key=True,
           comment="national form: 13800138000, 02112345678; +<digits> abroad"),
    Column("customer_id", String(32), ForeignKey("customers.customer_id", ondelete="CASCADE"), primary_key=True),
    Index(None, "customer_id"),
    **MYSQL_OPTIONS,
)

#: Customers' cards and accounts: never the number, only its last 4 digits and a keyed hash of it.
customer_accounts = Table(
    "customer_accounts", metadata,
    Column("number_hmac", String(64), primary_key=True,
           comment="hex HMAC-SHA256 of the full number's digits under ctid's account key"),
    Column("customer_id", String(32), ForeignKey("customers.customer_id", ondelete="CASCADE"), nullable=False),
    Column("last4", String(4), nullable=False, comment="the only digits of the number ever stored"),
    Column("kind", String(16), nullable=False, server_default="card", comment="card, passbook, corporate"),
    CheckConstraint("kind IN ('card', 'passbook', 'corporate')", name="kind"),
    CheckConstraint("LENGTH(last4) = 4", name="last4"),
    Index(None, "customer_id", "last4"),
    **MYSQL_OPTIONS,
)

#: Customers' past contacts (calls, branch visits…), shown newest first on the screen pop.
customer_contacts = Table(
    "customer_contacts", metadata,
    Column("contact_id", Integer(), primary_key=True, autoincrement=True),
    Column("customer_id", String(32), ForeignKey("customers.customer_id", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime(), nullable=False, comment="UTC"),
    Column("channel", String(16), nullable=False, comment="phone, branch, app, web, sms, wechat…"),
    Column("summary", String(255), nullable=False, server_default="",
           comment="long digit runs are masked before storing"),
    Column("agent_id", String(32), nullable=True, comment="who served; no foreign key: agents come and go"),
    Index(None, "customer_id", "at"),
    **MYSQL_OPTIONS,
)


# -- records (revision 0003): append-only, written behind by ctid.adapters.store.writer ---------------------------

#: UTC times with microseconds on both backends (MySQL's plain DATETIME drops the fraction).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _record_id() -> Column:
    """The primary key of every record table: the writer's unique, roughly time-ordered id (idempotent replays)."""
    return Column("record_id", String(32), primary_key=True, comment="the writer's id; a replay is not doubled")


#: One row per call (CDR, 电话接入流水), written when the call and its agent's wrap-up are over.
call_records = Table(
    "call_records", metadata,
    _record_id(),
    Column("call_id", String(64), nullable=False, comment="the switch's Linkedid"),
    Column("ani", String(32), nullable=True, comment="caller's number"),
    Column("dnis", String(32), nullable=True, comment="number dialled"),
    Column("trunk", String(64), nullable=True, comment="line/trunk the call came in on: its first channel's device"),
    Column("queue", String(64), nullable=True, comment="last queue the call waited in; NULL: never queued"),
    Column("agent_id", String(32), nullable=True, comment="agent who answered; NULL: no agent"),
    Column("customer_id", String(32), nullable=True, comment="customer identified by the IVR or the screen pop"),
    Column("city", String(64), nullable=True, comment="caller's city as the ACD located it"),
    Column("priority", SmallInteger(), nullable=True, comment="queue priority the call had"),
    Column("arrived_at", Timestamp, nullable=False, comment="UTC"),
    Column("queued_at", Timestamp, nullable=True, comment="UTC, first time queued for an agent"),
    Column("answered_at", Timestamp, nullable=True, comment="UTC, first connected to a party"),
    Column("ended_at", Timestamp, nullable=False, comment="UTC"),
    Column("wait_s", Float(), nullable=True, comment="seconds queued before an agent answered or the caller left"),
    Column("talk_s", Float(), nullable=False, server_default=text("0"), comment="answer to end, hold included"),
    Column("hold_s", Float(), nullable=False, server_default=text("0")),
    Column("wrap_up_s", Float(), nullable=True, comment="the agent's after-call work; NULL: no agent"),
    Column("hangup_side", String(8), nullable=True, comment="caller, agent or system: who hung up first"),
    Column("hangup_cause", SmallInteger(), nullable=True, comment="Q.850 cause of the call's end"),
    Column("ivr_path", String(255), nullable=False, server_default="", comment="IVR nodes visited, '>' between"),
    Column("self_service", Boolean(), nullable=False, comment="1: served by the IVR alone, never queued"),
    Column("abandoned", Boolean(), nullable=False, comment="1: the caller hung up while waiting for an agent"),
    Column("transfers", SmallInteger(), nullable=False, server_default=text("0")),
    Column("satisfaction", SmallInteger(), nullable=True, comment="caller's score 1..5; NULL: not rated"),
    Column("category", String(16), nullable=True,
           comment="the agent's wrap-up classification: consultation, complaint, …; NULL: not classified"),
    CheckConstraint("hangup_side IN ('caller', 'agent', 'system')", name="hangup_side"),
    Index(None, "arrived_at"),
    Index(None, "agent_id", "arrived_at"),
    Index(None, "queue", "arrived_at"),
    Index(None, "ani", "arrived_at"),
    Index(None, "call_id"),
    **MYSQL_OPTIONS,
)

#: One row per channel (leg) of a call, written when the leg leaves the call.
call_legs = Table(
    "call_legs", metadata,
    _record_id(),
    Column("call_id", String(64), nullable=False),
    Column("uniqueid", String(64), nullable=False, comment="the channel's Uniqueid"),
    Column("channel", String(128), nullable=False, comment="channel name, e.g. PJSIP/1001-00000002"),
    Column("agent_id", String(32), nullable=True, comment="the agent whose station this leg is"),
    Column("joined_at", Timestamp, nullable=False, comment="UTC"),
    Column("answered_at", Timestamp, nullable=True, comment="UTC, the leg went Up"),
    Column("left_at", Timestamp, nullable=False, comment="UTC"),
    Column("hangup_cause", SmallInteger(), nullable=True, comment="Q.850; NULL: moved to another call or vanished"),
    Index(None, "call_id"),
    Index(None, "agent_id", "joined_at"),
    **MYSQL_OPTIONS,
)

#: The agent service log (坐席服务流水): one row per stretch an agent spent in one state.
agent_state_log = Table(
    "agent_state_log", metadata,
    _record_id(),
    Column("agent_id", String(32), nullable=False),
    Column("state", String(16), nullable=False,
           comment="ready, not_ready, reserved, ringing, talking, hold, wrap_up, locked, not_hung_up"),
    Column("entered_by", String(16), nullable=False, comment="trigger that began it: login, pause, lock…"),
    Column("left_by", String(16), nullable=False, comment="trigger that ended it: logout, ready, unlock, shutdown…"),
    Column("reason", String(64), nullable=True, comment="pause reason code"),
    Column("call_id", String(64), nullable=True, comment="call offered or handled in this state"),
    Column("forced_by", String(32), nullable=True, comment="supervisor who forced the state"),
    Column("started_at", Timestamp, nullable=False, comment="UTC"),
    Column("ended_at", Timestamp, nullable=False, comment="UTC"),
    Column("duration_s", Float(), nullable=False),
    Index(None, "agent_id", "started_at"),
    Index(None, "started_at"),
    **MYSQL_OPTIONS,
)

#: What happened to calls in the ACD's queues, one row per happening.
queue_events = Table(
    "queue_events", metadata,
    _record_id(),
    Column("at", Timestamp, nullable=False, comment="UTC"),
    Column("queue", String(64), nullable=False),
    Column("call_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False,
           comment="enqueue, offer, answer, abandon, requeue, overflow, timeout, external"),
    Column("agent_id", String(32), nullable=True, comment="agent offered or answering"),
    Column("wait_s", Float(), nullable=True, comment="seconds since first queued"),
    Column("position", Integer(), nullable=True, comment="calls waiting in the queue, this one included"),
    Column("priority", SmallInteger(), nullable=True),
    Column("detail", String(255), nullable=False, server_default="", comment="route rule, dial status, target…"),
    CheckConstraint("kind IN ('enqueue', 'offer', 'answer', 'abandon', 'requeue', 'overflow', 'timeout', "
                    "'external')", name="kind"),
    Index(None, "queue", "at"),
    Index(None, "at"),
    Index(None, "call_id"),
    **MYSQL_OPTIONS,
)

#: The all-busy wait log (全忙等待记录): calls that found every agent of their queue busy.
all_busy_log = Table(
    "all_busy_log", metadata,
    _record_id(),
    Column("call_id", String(64), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("ani", String(32), nullable=True),
    Column("started_at", Timestamp, nullable=False, comment="UTC, queued with no agent free"),
    Column("ended_at", Timestamp, nullable=False, comment="UTC, offered to an agent, sent out or abandoned"),
    Column("wait_s", Float(), nullable=False),
    Column("outcome", String(16), nullable=False, comment="offered, abandoned, external"),
    CheckConstraint("outcome IN ('offered', 'abandoned', 'external')", name="outcome"),
    Index(None, "started_at"),
    Index(None, "queue", "started_at"),
    **MYSQL_OPTIONS,
)

#: The recording index (录音索引): one row per recording of a leg.
recordings = Table(
    "recordings", metadata,
    _record_id(),
    Column("call_id", String(64), nullable=False),
    Column("uniqueid", String(64), nullable=False, comment="the recorded leg"),
    Column("agent_id", String(32), nullable=True, comment="agent on the call"),
    Column("ani", String(32), nullable=True),
    Column("extension", String(64), nullable=True, comment="agent's station, or the number dialled"),
    Column("filename", String(255), nullable=True, comment="the file on the recording server"),
    Column("started_at", Timestamp, nullable=False, comment="UTC"),
    Column("stopped_at", Timestamp, nullable=False, comment="UTC"),
    Column("duration_s", Float(), nullable=False),
    Index(None, "started_at"),
    Index(None, "agent_id", "started_at"),
    Index(None, "extension", "started_at"),
    Index(None, "call_id"),
    **MYSQL_OPTIONS,
)

#: Voice messages (留言) callers left, for agents to call back.
voice_messages = Table(
    "voice_messages", metadata,
    _record_id(),
    Column("at", Timestamp, nullable=False, comment="UTC, when the message was left"),
    Column("call_id", String(64), nullable=True),
    Column("ani", String(32), nullable=True, comment="caller's number, to call back"),
    Column("mailbox", String(64), nullable=False, comment="queue or agent the message is for"),
    Column("filename", String(255), nullable=False),
    Column("duration_s", Float(), nullable=False),
    Index(None, "mailbox", "at"),
    Index(None, "at"),
    **MYSQL_OPTIONS,
)

#: The core-banking trade log (交易流水): requests ctid sent to the host and their results; never a secret.
trade_log = Table(
    "trade_log", metadata,
    _record_id(),
    Column("at", Timestamp, nullable=False, comment="UTC, request sent"),
    Column("trade_id", String(64), nullable=False, comment="the request's serial number"),
    Column("kind", String(32), nullable=False, comment="balance, transfer, statement, loss_report…"),
    Column("call_id", String(64), nullable=True),
    Column("customer_id", String(32), nullable=True),
    Column("account", String(24), nullable=True, comment="masked: **** **** **** 1234"),
    Column("amount", Numeric(18, 2), nullable=True),
    Column("currency", String(3), nullable=True, comment="ISO 4217: CNY, USD…"),
    Column("result_code", String(32), nullable=False, comment="the host's answer code, or timeout, error…"),
    Column("latency_ms", Integer(), nullable=True, comment="NULL: no answer"),
    Column("channel", String(16), nullable=False, comment="ivr, agent, sms…"),
    Column("agent_id", String(32), nullable=True),
    Index(None, "at"),
    Index(None, "trade_id"),
    Index(None, "call_id"),
    Index(None, "customer_id", "at"),
    **MYSQL_OPTIONS,
)

#: The audit log: who did what, from where, with which outcome (logins, supervisor actions, config…).
audit_log = Table(
    "audit_log", metadata,
    _record_id(),
    Column("at", Timestamp, nullable=False, comment="UTC"),
    Column("actor", String(64), nullable=False, comment="agent id, admin, or system"),
    Column("role", String(16), nullable=True, comment="agent, supervisor, admin, leader"),
    Column("address", String(64), nullable=True, comment="peer host:port"),
    Column("action", String(64), nullable=False, comment="login, force_logout, listen, reload…"),
    Column("target", String(128), nullable=True, comment="agent, call, queue or file acted on"),
    Column("outcome", String(32), nullable=False, comment="ok, or the refusal code"),
    Column("detail", String(1000), nullable=False, server_default="", comment="long digit runs are masked"),
    Index(None, "at"),
    Index(None, "actor", "at"),
    Index(None, "action", "at"),
    **MYSQL_OPTIONS,
)

#: Where each IVR call left its flow (IVR 会话): the node, why, the menu path, whether the caller was verified.
ivr_sessions = Table(
    "ivr_sessions", metadata,
    _record_id(),
    Column("at", Timestamp, nullable=False, comment="UTC, the call left the flow"),
    Column("call_id", String(64), nullable=False,
           comment="the IVR channel's Uniqueid (the Linkedid of a call that began in the IVR)"),
    Column("uniqueid", String(64), nullable=False, comment="the IVR channel's Uniqueid"),
    Column("channel", String(128), nullable=False, comment="channel name, e.g. PJSIP/trunk-00000001"),
    Column("flow", String(64), nullable=False, comment="the flow the call ran"),
    Column("node", String(64), nullable=False, comment="the node it was at when it left"),
    Column("reason", String(16), nullable=False, comment="transfer, hangup, completed or error"),
    Column("path", String(255), nullable=False, server_default="", comment="menu choices made, '>' between"),
    Column("verified", Boolean(), nullable=False, comment="1: a core-banking verification succeeded"),
    Column("customer_id", String(32), nullable=True, comment="the verified customer; NULL: none"),
    Index(None, "at"),
    Index(None, "call_id"),
    **MYSQL_OPTIONS,
)

#: Statements callers asked the IVR to fax (传真对账单); the account masked, never a secret.
fax_requests = Table(
    "fax_requests", metadata,
    _record_id(),
    Column("at", Timestamp, nullable=False, comment="UTC, the statement was requested"),
    Column("call_id", String(64), nullable=False, comment="the IVR channel's Uniqueid"),
    Column("customer_id", String(32), nullable=True, comment="the verified customer"),
    Column("account", String(24), nullable=False, comment="masked: **** **** **** 1234"),
    Column("fax_number", String(32), nullable=False, comment="the number the caller keyed in"),
    Column("since", String(10), nullable=False, comment="first day of the statement, YYYY-MM-DD"),
    Column("lines", SmallInteger(), nullable=False, comment="statement lines to fax"),
    Column("status", String(16), nullable=False, comment="requested: handed to the fax gateway with the statement"),
    Index(None, "at"),
    Index(None, "call_id"),
    **MYSQL_OPTIONS,
)

#: The record tables, by name: the ones :class:`~ctid.adapters.store.writer.RecordWriter` writes.
RECORD_TABLES = {table.name: table for table in (call_records, call_legs, agent_state_log, queue_events, all_busy_log,
                                                 recordings, voice_messages, trade_log, audit_log,
                                                 ivr_sessions, fax_requests)}
