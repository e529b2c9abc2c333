"""Database tables (SQLAlchemy Core). Changes here need an Alembic revision in `migrations/`."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)

from bridge.store.types import UtcDateTime

metadata = MetaData()

# SQLite wants INTEGER PRIMARY KEY for its rowid alias; PostgreSQL gets BIGINT identities.
Id = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = UtcDateTime()

incidents = Table(
    "incidents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),
    Column("rule", String(200), nullable=False),
    Column("title", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("opened_at", Timestamp, nullable=False),
    Column("acknowledged_at", Timestamp),
    Column("resolved_at", Timestamp),
    Column("first_alert_at", Timestamp, nullable=False),
    Column("last_alert_at", Timestamp, nullable=False),
    Column("firing_alerts", Integer, nullable=False),
    Column("alert_count", Integer, nullable=False),
    Column("reopen_count", Integer, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Index("ix_incidents_key", "key"),
    Index("ix_incidents_status", "status"),
    # At most one active incident per key: the database enforces what the engine decides.
    Index(
        "uq_incidents_active_key",
        "key",
        unique=True,
        sqlite_where=text("status != 'resolved'"),
        postgresql_where=text("status != 'resolved'"),
    ),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("starts_at", Timestamp, nullable=False),
    Column("ends_at", Timestamp),
    Column("expires_at", Timestamp),
    Column("generator_url", Text, nullable=False),
    Column("group_key", Text),
    Column("first_seen", Timestamp, nullable=False),
    Column("last_seen", Timestamp, nullable=False),
    Column("count", Integer, nullable=False),
    Column("digest", Text, nullable=False),
    Column("incident_id", Id, ForeignKey("incidents.id")),
    Column("rule", String(200)),
    Column("flapping", Boolean, nullable=False, server_default=false()),
    Column("maintenance", Boolean, nullable=False, server_default=false()),
    Index("uq_alerts_source_fingerprint", "source", "fingerprint", unique=True),
    Index("ix_alerts_incident", "incident_id"),
    Index("ix_alerts_status_expires", "status", "expires_at"),
)

timeline = Table(
    "timeline",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=False),
    Column("at", Timestamp, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("message", Text, nullable=False),
    Column("fingerprint", Text),
    Index("ix_timeline_incident", "incident_id", "id"),
)

# The event log: one row per accepted event that was not a duplicate delivery, with what the
# pipeline decided about it (duplicates change nothing and are only counted in the metrics).
events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", Timestamp, nullable=False),
    Column("source", String(64), nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("incident_id", Id),
    Column("digest", Text, nullable=False),
    Index("ix_events_received", "received_at"),
)
