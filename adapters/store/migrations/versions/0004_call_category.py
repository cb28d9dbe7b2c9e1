"""The agent's wrap-up category of a call (call_records.category); trade_log.result_code widened to 32.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_CATEGORY_COMMENT = "the agent's wrap-up classification: consultation, complaint, …; NULL: not classified"
_RESULT_COMMENT = "the host's answer code, or timeout, error…"


def upgrade() -> None:
    """Add ``call_records.category``; widen ``trade_log.result_code`` (SQLite copies the table: batch mode)."""
    with op.batch_alter_table("call_records") as batch:
        batch.add_column(sa.Column("category", sa.String(16), nullable=True, comment=_CATEGORY_COMMENT))
    with op.batch_alter_table("trade_log") as batch:
        batch.alter_column("result_code", existing_type=sa.String(16), type_=sa.String(32), existing_nullable=False,
                           existing_comment=_RESULT_COMMENT)


def downgrade() -> None:
    """Drop the category; narrow result_code back to 16 (longer codes are cut to fit first)."""
    op.execute(sa.text("UPDATE trade_log SET result_code = SUBSTR(result_code, 1, 16) "
                       "WHERE LENGTH(result_code) > 16"))
    with op.batch_alter_table("trade_log") as batch:
        batch.alter_column("result_code", existing_type=sa.String(32), type_=sa.String(16), existing_nullable=False,
                           existing_comment=_RESULT_COMMENT)
    with op.batch_alter_table("call_records") as batch:
        batch.drop_column("category")
