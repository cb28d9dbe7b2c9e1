"""Customers for the screen pop: customers, their phones, masked accounts and recent contacts.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Names are wrapped in op.f(): final, whatever naming convention the live metadata has later.
_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _customer_fk(table: str) -> sa.ForeignKeyConstraint:
    """``table.customer_id`` → ``customers.customer_id``, deleted with the customer."""
    return sa.ForeignKeyConstraint(["customer_id"], ["customers.customer_id"], ondelete="CASCADE",
                                   name=op.f(f"fk_{table}_customer_id_customers"))


def upgrade() -> None:
    """Create ``customers``, ``customer_phones``, ``customer_accounts`` and ``customer_contacts``."""
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(32), nullable=False, comment="the bank's customer number"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("segment", sa.String(16), nullable=False, server_default="retail",
                  comment="vip, private, corporate, retail…"),
        sa.Column("city", sa.String(64), nullable=True),
        sa.Column("language", sa.String(16), nullable=False, server_default="zh",
                  comment="preferred language: zh, en, yue…"),
        sa.Column("notes", sa.String(1000), nullable=False, server_default="",
                  comment="free text for agents; long digit runs are masked before storing"),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp(),
                  comment="UTC"),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customers")),
        **_MYSQL,
    )
    op.create_table(
        "customer_phones",
        sa.Column("number", sa.String(24), nullable=False,
                  comment="national form: 13800138000, 02112345678; +<digits> abroad"),
        sa.Column("customer_id", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("number", "customer_id", name=op.f("pk_customer_phones")),
        _customer_fk("customer_phones"),
        **_MYSQL,
    )
    op.create_index(op.f("ix_customer_phones_customer_id"), "customer_phones", ["customer_id"])
    op.create_table(
        "customer_accounts",
        sa.Column("number_hmac", sa.String(64), nullable=False,
                  comment="hex HMAC-SHA256 of the full number's digits under ctid's account key"),
        sa.Column("customer_id", sa.String(32), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False, comment="the only digits of the number ever stored"),
        sa.Column("kind", sa.String(16), nullable=False, server_default="card", comment="card, passbook, corporate"),
        sa.PrimaryKeyConstraint("number_hmac", name=op.f("pk_customer_accounts")),
        _customer_fk("customer_accounts"),
        sa.CheckConstraint("kind IN ('card', 'passbook', 'corporate')", name=op.f("ck_customer_accounts_kind")),
        sa.CheckConstraint("LENGTH(last4) = 4", name=op.f("ck_customer_accounts_last4")),
        **_MYSQL,
    )
    op.create_index(op.f("ix_customer_accounts_customer_id_last4"), "customer_accounts", ["customer_id", "last4"])
    op.create_table(
        "customer_contacts",
        sa.Column("contact_id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("customer_id", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.Column("channel", sa.String(16), nullable=False, comment="phone, branch, app, web, sms, wechat…"),
        sa.Column("summary", sa.String(255), nullable=False, server_default="",
                  comment="long digit runs are masked before storing"),
        sa.Column("agent_id", sa.String(32), nullable=True, comment="who served; no foreign key: agents come and go"),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_customer_contacts")),
        _customer_fk("customer_contacts"),
        **_MYSQL,
    )
    op.create_index(op.f("ix_customer_contacts_customer_id_at"), "customer_contacts", ["customer_id", "at"])


def downgrade() -> None:
    """Drop the customer tables, children first (with their indexes: MySQL keeps foreign keys' indexes)."""
    op.drop_table("customer_contacts")
    op.drop_table("customer_accounts")
    op.drop_table("customer_phones")
    op.drop_table("customers")
