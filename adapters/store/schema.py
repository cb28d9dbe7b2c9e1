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

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    func,
    text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Table options for MySQL/MariaDB (ignored by SQLite).
MYSQL_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

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
