"""The agent directory: agents, skill groups, agents' skills.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Names are wrapped in op.f(): final, whatever naming convention the live metadata has later.
_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    """Create ``agents``, ``skill_groups`` and ``agent_skills``."""
    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(32), nullable=False, comment="login id, usually the agent's number"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True,
                  comment="scrypt$n$r$p$salt$hash; NULL: no local password (LDAP only, or not set yet)"),
        sa.Column("roles", sa.String(100), nullable=False, server_default="agent",
                  comment="comma list of agent, supervisor, admin, leader"),
        sa.Column("manages", sa.String(255), nullable=False, server_default="",
                  comment="comma list of skill groups and cities a supervisor manages"),
        sa.Column("city", sa.String(64), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.text("1")),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp(),
                  comment="UTC"),
        sa.PrimaryKeyConstraint("agent_id", name=op.f("pk_agents")),
        **_MYSQL,
    )
    op.create_table(
        "skill_groups",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(255), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_skill_groups")),
        **_MYSQL,
    )
    op.create_table(
        "agent_skills",
        sa.Column("agent_id", sa.String(32), nullable=False),
        sa.Column("skill_group", sa.String(64), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "skill_group", name=op.f("pk_agent_skills")),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.agent_id"], ondelete="CASCADE",
                                name=op.f("fk_agent_skills_agent_id_agents")),
        sa.ForeignKeyConstraint(["skill_group"], ["skill_groups.name"],
                                name=op.f("fk_agent_skills_skill_group_skill_groups")),
        sa.CheckConstraint("level BETWEEN 1 AND 9", name=op.f("ck_agent_skills_level")),
        **_MYSQL,
    )
    op.create_index(op.f("ix_agent_skills_skill_group"), "agent_skills", ["skill_group"])


def downgrade() -> None:
    """Drop the directory tables (with their indexes: MySQL refuses to drop an index a foreign key uses)."""
    op.drop_table("agent_skills")
    op.drop_table("skill_groups")
    op.drop_table("agents")
