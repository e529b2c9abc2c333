"""engine world state: holds and links on alerts, incident generations and priority, problems,
incident links, inhibitors, heartbeats, API maintenance windows

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

The incidents table is altered in place on SQLite (no batch copy): alerts and timeline
reference it, and copying a referenced table with foreign keys on would fail. Existing
incidents get `seq` numbered per key in id order before `uq_incidents_key_seq` replaces the
one-active-incident-per-key index, so that the engine's next generation (latest seq + 1) is
free.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

import bridge.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ACTIVE = sa.text("status != 'resolved'")


def _id_column() -> sa.Column[int]:
    return sa.Column("id", _ID, autoincrement=True, nullable=False)


def _timestamp(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, bridge.store.types.UtcDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    _create_problems()
    _alter_incidents()
    _alter_alerts()
    _create_links_and_state()


def _create_problems() -> None:
    op.create_table(
        "problems",
        _id_column(),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _timestamp("opened_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        sa.Column("incident_count", sa.Integer(), nullable=False),
        sa.Column("ci", sa.Text(), nullable=True),
        sa.Column("root_cause", sa.Text(), server_default="", nullable=False),
        sa.Column("workaround", sa.Text(), server_default="", nullable=False),
        _timestamp("resolved_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("problems", schema=None) as batch_op:
        batch_op.create_index("ix_problems_status", ["status"], unique=False)
        batch_op.create_index(
            "uq_problems_active_key",
            ["key"],
            unique=True,
            sqlite_where=_ACTIVE,
            postgresql_where=_ACTIVE,
        )


def _alter_incidents() -> None:
    # String server defaults and index changes only: SQLite alters the table in place.
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), server_default="3", nullable=False))
        batch_op.add_column(sa.Column("ci", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("service", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.drop_index(
            "uq_incidents_active_key", sqlite_where=_ACTIVE, postgresql_where=_ACTIVE
        )
    if op.get_bind().dialect.name == "sqlite":
        # Batch mode would copy the table to add the foreign key; SQLite adds a column with a
        # REFERENCES clause in place.
        op.execute("ALTER TABLE incidents ADD COLUMN problem_id INTEGER REFERENCES problems (id)")
    else:
        op.add_column(
            "incidents", sa.Column("problem_id", _ID, sa.ForeignKey("problems.id"), nullable=True)
        )
    op.execute(
        "UPDATE incidents SET seq = (SELECT count(*) FROM incidents AS earlier"
        " WHERE earlier.key = incidents.key AND earlier.id < incidents.id)"
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index("uq_incidents_key_seq", ["key", "seq"], unique=True)
        batch_op.create_index("ix_incidents_ci_status", ["ci", "status"], unique=False)


def _alter_alerts() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("hold", sa.String(length=16), server_default="none", nullable=False)
        )
        batch_op.add_column(sa.Column("held_by", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("incident_key", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("also", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(
            sa.Column("history", sa.String(length=128), server_default="", nullable=False)
        )
        batch_op.add_column(_timestamp("changed_at", nullable=True))
        batch_op.add_column(
            sa.Column("flap_reported", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index("ix_alerts_incident_key_hold", ["incident_key", "hold"], unique=False)
        batch_op.create_index("ix_alerts_hold", ["hold"], unique=False)


def _create_links_and_state() -> None:
    op.create_table(
        "incident_links",
        _id_column(),
        sa.Column("incident_id", _ID, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        _timestamp("at", nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("incident_links", schema=None) as batch_op:
        batch_op.create_index("ix_incident_links_incident", ["incident_id", "id"], unique=False)

    op.create_table(
        "inhibitors",
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "key", "source", "fingerprint"),
    )
    op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(length=200), nullable=False),
        _timestamp("last_beat_at", nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "maintenance_windows",
        _id_column(),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("change_ref", sa.Text(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("deleted_at", nullable=True),
        sa.Column("deleted_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("maintenance_windows")
    op.drop_table("heartbeats")
    op.drop_table("inhibitors")
    with op.batch_alter_table("incident_links", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_links_incident")
    op.drop_table("incident_links")

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_hold")
        batch_op.drop_index("ix_alerts_incident_key_hold")
        for name in ("flap_reported", "changed_at", "history", "also", "reason", "incident_key",
                     "held_by", "hold"):  # fmt: skip
            batch_op.drop_column(name)

    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index("ix_incidents_ci_status")
        batch_op.drop_index("uq_incidents_key_seq")
    # Dropped in place (SQLite >= 3.35), for the same reason the upgrade adds them in place.
    for name in ("problem_id", "seq", "service", "ci", "priority"):
        op.execute(f"ALTER TABLE incidents DROP COLUMN {name}")
    # Fails if two incidents of one key are active, which the new schema allowed.
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index(
            "uq_incidents_active_key",
            ["key"],
            unique=True,
            sqlite_where=_ACTIVE,
            postgresql_where=_ACTIVE,
        )

    with op.batch_alter_table("problems", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_problems_active_key", sqlite_where=_ACTIVE, postgresql_where=_ACTIVE
        )
        batch_op.drop_index("ix_problems_status")
    op.drop_table("problems")
