"""The bridge's own metrics, on a registry built once per app (never the global one).

Label values are bounded: source names, reasons, outcomes and rule names from enums and rule
files; never fingerprints, hosts or incident keys.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_DELIVERY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class Metrics:
    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("bridge_build", "Version of the running bridge.", registry=r).info(
            {"version": version}
        )
        self.events_received = Counter(
            "bridge_events_received_total",
            "Events decoded from requests, by source.",
            ["source"],
            registry=r,
        )
        self.events_rejected = Counter(
            "bridge_events_rejected_total",
            "Items refused, by source and reason.",
            ["source", "reason"],
            registry=r,
        )
        self.alerts_truncated = Counter(
            "bridge_alerts_truncated_total",
            "Alerts a sender left out of its notifications (Alertmanager `max_alerts`).",
            ["source"],
            registry=r,
        )
        self.requests_rejected = Counter(
            "bridge_requests_rejected_total",
            "Whole requests refused, by source and reason.",
            ["source", "reason"],
            registry=r,
        )
        self.dedup_outcomes = Counter(
            "bridge_dedup_outcomes_total",
            "What the dedup stage decided per event, by source and outcome.",
            ["source", "outcome"],
            registry=r,
        )
        self.incident_actions = Counter(
            "bridge_incident_actions_total",
            "What the incidents stage did per alert, by rule and action.",
            ["rule", "action"],
            registry=r,
        )
        self.incidents_opened = Counter(
            "bridge_incidents_opened_total", "Incidents opened, by rule.", ["rule"], registry=r
        )
        self.incidents_resolved = Counter(
            "bridge_incidents_resolved_total",
            "Incidents resolved, by rule and by whom (alerts or operator).",
            ["rule", "by"],
            registry=r,
        )
        self.incidents_reopened = Counter(
            "bridge_incidents_reopened_total", "Incidents reopened, by rule.", ["rule"], registry=r
        )
        self.incidents = Gauge(
            "bridge_incidents", "Incidents in the database, by status.", ["status"], registry=r
        )
        self.ingest_latency = Histogram(
            "bridge_ingest_duration_seconds",
            "From request received to its events committed, by source.",
            ["source"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_events = Histogram(
            "bridge_commit_events",
            "Events written per group commit.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.commit_duration = Histogram(
            "bridge_commit_duration_seconds",
            "Time to load, evaluate and commit one group commit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.database_errors = Counter(
            "bridge_database_errors_total",
            "Database operations that failed, by operation.",
            ["operation"],
            registry=r,
        )
        self.internal_errors = Counter(
            "bridge_internal_errors_total",
            "Unexpected errors caught at a boundary (HTTP, writer, jobs).",
            ["boundary"],
            registry=r,
        )
        self.last_event = Gauge(
            "bridge_last_event_timestamp_seconds",
            "Unix time of the last accepted event, by source.",
            ["source"],
            registry=r,
        )
        self.job_runs = Counter(
            "bridge_job_runs_total",
            "Scheduled job runs, by job and result.",
            ["job", "result"],
            registry=r,
        )
        self.alerts_expired = Counter(
            "bridge_alerts_expired_total",
            "Level-triggered alerts resolved because their endsAt passed without a re-send.",
            ["source"],
            registry=r,
        )
        self.rule_decisions = Counter(
            "bridge_rule_decisions_total",
            "What the rule stages decided, by stage (rule-file section), rule and decision: "
            "e.g. correlate/opened|grouped|symptom|pending, inhibit/inhibited, "
            "maintenance/suppressed, flapping/started, heartbeats/missed, problems/opened.",
            ["stage", "rule", "decision"],
            registry=r,
        )
        self.rules_reloads = Counter(
            "bridge_rules_reloads_total",
            "Rule reloads (SIGHUP, POST /-/reload) that took effect.",
            registry=r,
        )
        self.rules_reload_failures = Counter(
            "bridge_rules_reload_failures_total",
            "Rule reloads refused because a file was invalid (nothing changed).",
            registry=r,
        )
        self.rules_last_reload = Gauge(
            "bridge_rules_last_reload_success_timestamp_seconds",
            "Unix time the active rule set was loaded.",
            registry=r,
        )
        self.rules_loaded = Gauge(
            "bridge_rules_loaded",
            "Rules in the active rule set, by section.",
            ["section"],
            registry=r,
        )
        self._notify_metrics(r)
        self._retention_metrics(r)

    def _notify_metrics(self, r: CollectorRegistry) -> None:
        self.notifications_queued = Counter(
            "bridge_notifications_queued_total",
            "Notifications put in the outbox, by channel and transition.",
            ["channel", "transition"],
            registry=r,
        )
        self.notifications = Counter(
            "bridge_notifications_total",
            "Delivery attempts by channel and outcome (delivered, retried, rejected, dead).",
            ["channel", "outcome"],
            registry=r,
        )
        self.notification_latency = Histogram(
            "bridge_notification_latency_seconds",
            "From the incident change to the target accepting the notification, by channel.",
            ["channel"],
            buckets=_DELIVERY_BUCKETS,
            registry=r,
        )
        self.outbox_pending = Gauge(
            "bridge_outbox_pending",
            "Notifications waiting in the outbox (queued or retrying).",
            registry=r,
        )
        self.outbox_oldest = Gauge(
            "bridge_outbox_oldest_pending_age_seconds",
            "Age of the oldest notification waiting in the outbox (0 when empty).",
            registry=r,
        )
        self.dead_letters = Gauge(
            "bridge_outbox_dead_letters",
            "Notifications given up on (dead letters), until re-sent through the API.",
            registry=r,
        )
        self.sla_breaches = Counter(
            "bridge_sla_breaches_total",
            "SLA deadlines missed, by incident priority and kind (acknowledge, resolve).",
            ["priority", "kind"],
            registry=r,
        )
        self.itsm_updates = Counter(
            "bridge_itsm_updates_total",
            "Ticket changes read back from ITSM systems, by target, how they came (inbound, "
            "poll) and what they did (applied, unchanged, unknown, refused).",
            ["target", "via", "result"],
            registry=r,
        )

    def _retention_metrics(self, r: CollectorRegistry) -> None:
        self.retention_deleted = Counter(
            "bridge_retention_deleted_total",
            "Rows the retention job deleted, by kind (incidents, alerts, notifications, events).",
            ["kind"],
            registry=r,
        )
