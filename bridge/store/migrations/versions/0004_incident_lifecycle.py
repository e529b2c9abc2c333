"""incidents: closed state, assignment group and assignee; timeline: where a change came from

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Plain column adds (no batch copy on SQLite: alerts, timeline and links point at incidents).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bridge.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "incidents",
        sa.Column("closed_at", bridge.store.types.UtcDateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "incidents",
        sa.Column("assignment_group", sa.Text(), server_default="", nullable=False),
    )
    op.add_column("incidents", sa.Column("assignee", sa.Text(), server_default="", nullable=False))
    op.add_column(
        "timeline", sa.Column("source", sa.String(length=16), server_default="rule", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("timeline", "source")
    for name in ("assignee", "assignment_group", "closed_at"):
        op.drop_column("incidents", name)
