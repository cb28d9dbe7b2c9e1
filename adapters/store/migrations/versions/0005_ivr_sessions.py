"""Where each IVR call left its flow (ivr_sessions) and the statements callers asked to have faxed (fax_requests).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Names are wrapped in op.f(): final, whatever naming convention the live metadata has later.
_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
#: UTC with microseconds on both backends.
_TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

_TABLES = ("ivr_sessions", "fax_requests")


def _create(name: str, *columns: sa.Column) -> None:
    """Create record table ``name``: ``record_id`` primary key, then ``columns``."""
    op.create_table(
        name,
        sa.Column("record_id", sa.String(32), nullable=False, comment="the writer's id; a replay is not doubled"),
        *columns,
        sa.PrimaryKeyConstraint("record_id", name=op.f(f"pk_{name}")),
        **_MYSQL,
    )


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def upgrade() -> None:
    """Create the two IVR record tables and their indexes."""
    _create(
        "ivr_sessions",
        sa.Column("at", _TIMESTAMP, nullable=False, comment="UTC, the call left the flow"),
        sa.Column("call_id", sa.String(64), nullable=False,
                  comment="the IVR channel's Uniqueid (the Linkedid of a call that began in the IVR)"),
        sa.Column("uniqueid", sa.String(64), nullable=False, comment="the IVR channel's Uniqueid"),
        sa.Column("channel", sa.String(128), nullable=False, comment="channel name, e.g. PJSIP/trunk-00000001"),
        sa.Column("flow", sa.String(64), nullable=False, comment="the flow the call ran"),
        sa.Column("node", sa.String(64), nullable=False, comment="the node it was at when it left"),
        sa.Column("reason", sa.String(16), nullable=False, comment="transfer, hangup, completed or error"),
        sa.Column("path", sa.String(255), nullable=False, server_default="",
                  comment="menu choices made, '>' between"),
        sa.Column("verified", sa.Boolean(), nullable=False, comment="1: a core-banking verification succeeded"),
        sa.Column("customer_id", sa.String(32), nullable=True, comment="the verified customer; NULL: none"),
    )
    _index("ivr_sessions", "at")
    _index("ivr_sessions", "call_id")

    _create(
        "fax_requests",
        sa.Column("at", _TIMESTAMP, nullable=False, comment="UTC, the statement was requested"),
        sa.Column("call_id", sa.String(64), nullable=False, comment="the IVR channel's Uniqueid"),
        sa.Column("customer_id", sa.String(32), nullable=True, comment="the verified customer"),
        sa.Column("account", sa.String(24), nullable=False, comment="masked: **** **** **** 1234"),
        sa.Column("fax_number", sa.String(32), nullable=False, comment="the number the caller keyed in"),
        sa.Column("since", sa.String(10), nullable=False, comment="first day of the statement, YYYY-MM-DD"),
        sa.Column("lines", sa.SmallInteger(), nullable=False, comment="statement lines to fax"),
        sa.Column("status", sa.String(16), nullable=False,
                  comment="requested: handed to the fax gateway with the statement"),
    )
    _index("fax_requests", "at")
    _index("fax_requests", "call_id")


def downgrade() -> None:
    """Drop the two tables (their indexes go with them)."""
    for name in reversed(_TABLES):
        op.drop_table(name)
