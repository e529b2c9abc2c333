"""incident_targets: the state of the target's ticket as the bridge last knew it

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

Polling an ITSM system applies a ticket's state only when it differs from this one, so that a
stale ticket state (the bridge unacknowledged its incident; nothing told the ticket) does not
undo the bridge's own change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "incident_targets", sa.Column("external_state", sa.String(length=16), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("incident_targets", "external_state")
