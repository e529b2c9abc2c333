"""notifications: the outbox, what each target was told, escalation timers; incidents: route
labels and source, SLA deadlines and breaches

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bridge.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TIMES = ("ack_due_at", "resolve_due_at", "ack_breached_at", "resolve_breached_at")


def _time() -> bridge.store.types.UtcDateTime:
    return bridge.store.types.UtcDateTime(timezone=True)


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("incidents", sa.Column("labels", sa.JSON(), server_default="{}", nullable=False))
    op.add_column(
        "incidents", sa.Column("source", sa.String(length=64), server_default="", nullable=False)
    )
    for name in _TIMES:
        op.add_column("incidents", sa.Column(name, _time(), nullable=True))
    op.create_table(
        "notifications",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("incident_id", _id(), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("transition", sa.String(length=16), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("next_attempt_at", _time(), nullable=False),
        sa.Column("sent_at", _time(), nullable=True),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("fallback_of", _id(), nullable=True),
    )
    op.create_index("uq_notifications_key", "notifications", ["key"], unique=True)
    op.create_index("ix_notifications_status_next", "notifications", ["status", "next_attempt_at"])
    op.create_index(
        "ix_notifications_incident_target", "notifications", ["incident_id", "target", "id"]
    )
    op.create_table(
        "incident_targets",
        sa.Column("incident_id", _id(), sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("target", sa.String(length=200), primary_key=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("last_transition", sa.String(length=16), nullable=True),
        sa.Column("told_at", _time(), nullable=False),
        sa.Column("last_sent_at", _time(), nullable=True),
    )
    op.create_index("ix_incident_targets_external", "incident_targets", ["target", "external_id"])
    op.create_table(
        "paging",
        sa.Column("incident_id", _id(), sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("routes", sa.JSON(), nullable=False),
        sa.Column("escalation", sa.String(length=200), nullable=True),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("next_at", _time(), nullable=True),
        sa.Column("repeat_at", _time(), nullable=True),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("due_at", _time(), nullable=True),
    )
    op.create_index("ix_paging_due", "paging", ["due_at"])


def downgrade() -> None:
    op.drop_table("paging")
    op.drop_table("incident_targets")
    op.drop_table("notifications")
    for name in (*_TIMES, "source", "labels"):
        op.drop_column("incidents", name)
