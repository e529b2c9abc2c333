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

# An ITIL problem: the cause behind recurring incidents (`rules.problems`). The engine owns
# `incident_count` and `updated_at`; status, root cause and workaround are edited through the API.
problems = Table(
    "problems",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),
    Column("rule", String(200), nullable=False),
    Column("title", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("opened_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("incident_count", Integer, nullable=False),
    Column("ci", Text),
    Column("root_cause", Text, nullable=False, server_default=""),
    Column("workaround", Text, nullable=False, server_default=""),
    Column("resolved_at", Timestamp),
    Index("ix_problems_status", "status"),
    # At most one active problem per key: incidents of the key link to it while it lasts.
    Index(
        "uq_problems_active_key",
        "key",
        unique=True,
        sqlite_where=text("status != 'resolved'"),
        postgresql_where=text("status != 'resolved'"),
    ),
)

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
    Column("priority", Integer, nullable=False, server_default="3"),
    Column("ci", Text),
    Column("service", Text),
    Column("problem_id", Id, ForeignKey("problems.id")),
    Column("seq", Integer, nullable=False, server_default="0"),
    Column("closed_at", Timestamp),
    Column("assignment_group", Text, nullable=False, server_default=""),
    Column("assignee", Text, nullable=False, server_default=""),
    # The opening alert's labels and source (what notification routes match on).
    Column("labels", JSON, nullable=False, server_default="{}"),
    Column("source", String(64), nullable=False, server_default=""),
    # SLA deadlines and when they were missed (`rules.sla`).
    Column("ack_due_at", Timestamp),
    Column("resolve_due_at", Timestamp),
    Column("ack_breached_at", Timestamp),
    Column("resolve_breached_at", Timestamp),
    Index("ix_incidents_key", "key"),
    Index("ix_incidents_status", "status"),
    Index("ix_incidents_ci_status", "ci", "status"),
    # One incident per key and generation: a correlate rule's `window` may leave an older
    # incident of the key active while the next generation opens, and two writers that decide
    # to open the same generation cannot both succeed.
    Index("uq_incidents_key_seq", "key", "seq", unique=True),
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
    Column("flap_reported", Boolean, nullable=False, server_default=false()),
    Column("maintenance", Boolean, nullable=False, server_default=false()),
    # Why a firing alert is not in an incident (`rules.model.Hold`) and which rule or window.
    Column("hold", String(16), nullable=False, server_default="none"),
    Column("held_by", Text, nullable=False, server_default=""),
    Column("incident_key", Text),
    Column("reason", String(16)),
    # Incidents joined besides `incident_id` (rules after one with `continue: true`).
    Column("also", JSON, nullable=False, server_default="[]"),
    Column("history", String(128), nullable=False, server_default=""),
    Column("changed_at", Timestamp),
    Index("uq_alerts_source_fingerprint", "source", "fingerprint", unique=True),
    Index("ix_alerts_incident", "incident_id"),
    Index("ix_alerts_status_expires", "status", "expires_at"),
    # The pending alerts of an incident key, when its group reaches `min_alerts`.
    Index("ix_alerts_incident_key_hold", "incident_key", "hold"),
    # The recheck job's held alerts.
    Index("ix_alerts_hold", "hold"),
)

# An incident's member list, append-only: which alert joined, by which rule, why and when.
incident_links = Table(
    "incident_links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=False),
    Column("source", String(64), nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("rule", String(200), nullable=False),
    Column("reason", String(16), nullable=False),
    Column("at", Timestamp, nullable=False),
    Index("ix_incident_links_incident", "incident_id", "id"),
)

# The firing source alerts of each inhibit rule, by the values of its `equal` labels.
inhibitors = Table(
    "inhibitors",
    metadata,
    Column("rule", String(200), primary_key=True),
    Column("key", Text, primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("fingerprint", Text, primary_key=True),
)

heartbeats = Table(
    "heartbeats",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("last_beat_at", Timestamp, nullable=False),
)

# Maintenance windows created through the API (rule-file windows live in the rule set). `spec`
# is the window as a rule file would write it: matchers, start/end or weekly or cron, timezone.
maintenance_windows = Table(
    "maintenance_windows",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("change_ref", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("deleted_at", Timestamp),
    Column("deleted_by", Text),
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
    Column("source", String(16), nullable=False, server_default="rule"),
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

# The transactional outbox: one row per notification, written in the transaction of the
# incident change that caused it; the dispatcher delivers it and records the outcome. `key` is
# the idempotency key sent to targets that support one, unique so that a notification is never
# queued twice (a replayed change, two replicas).
notifications = Table(
    "notifications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=False),
    Column("target", String(200), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("transition", String(16), nullable=False),
    Column("key", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    # pending -> sent | dead (after the attempts or age limit, or a refusal no retry helps)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", Timestamp, nullable=False),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("sent_at", Timestamp),
    Column("last_error", Text, nullable=False, server_default=""),
    Column("fallback_of", Id),
    Index("uq_notifications_key", "key", unique=True),
    Index("ix_notifications_status_next", "status", "next_attempt_at"),
    Index("ix_notifications_incident_target", "incident_id", "target", "id"),
)

# What the bridge told each target about an incident: the targets that must hear its end,
# and the target's own id for it (a ServiceNow sys_id, a Jira issue key, a Slack message).
incident_targets = Table(
    "incident_targets",
    metadata,
    Column("incident_id", Id, ForeignKey("incidents.id"), primary_key=True),
    Column("target", String(200), primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("external_id", Text),
    # The ticket's state as the bridge last knew it (`bridge.notify.base.ItsmState`): what it
    # set by a notification or last read back.
    Column("external_state", String(16)),
    Column("last_transition", String(16)),
    Column("told_at", Timestamp, nullable=False),
    Column("last_sent_at", Timestamp),
    Index("ix_incident_targets_external", "target", "external_id"),
)

# The escalation and repeat timers of incidents (`rules.notify.Paging`).
paging = Table(
    "paging",
    metadata,
    Column("incident_id", Id, ForeignKey("incidents.id"), primary_key=True),
    Column("routes", JSON, nullable=False),
    Column("escalation", String(200)),
    Column("started_at", Timestamp, nullable=False),
    Column("step", Integer, nullable=False),
    Column("round", Integer, nullable=False),
    Column("next_at", Timestamp),
    Column("repeat_at", Timestamp),
    Column("repeats", Integer, nullable=False),
    Column("due_at", Timestamp),
    Index("ix_paging_due", "due_at"),
)
