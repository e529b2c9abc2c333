"""Stage `heartbeats`: expectations that an event arrives at least every so often.

Input: an event's match labels (which heartbeats it beats), or a heartbeat rule, its last beat
and `now` (whether it is missed). Output: the names of the heartbeats an event beats, and the
synthetic events that stand for a missed heartbeat (firing) and its recovery (resolved). These
go through the whole pipeline like any alert, from source `heartbeat` with the heartbeat's
name as fingerprint, so a missed heartbeat opens an incident by the usual rules (the default
groups it by alertname and instance: one incident per heartbeat) and its next event resolves it.

The events that beat a heartbeat (e.g. Prometheus' always-firing Watchdog) are stored as alerts
held as `heartbeat`: they open no incident themselves.

Rule section: `heartbeats` (`name`, `matchers`/`match`, `every`, `severity`, `labels`,
`summary`). The check runs as a scheduled job in the daemon (`bridge/jobs.py`); a heartbeat
starts counting when the daemon first sees its rule. Metric:
`bridge_rule_decisions_total{stage="heartbeats",decision="missed"|"recovered"}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from rules.model import AlertStatus, Event
from rules.ruleset import HeartbeatRule, RuleSet, all_match

SOURCE = "heartbeat"
ALERTNAME = "HeartbeatMissed"


def beaten(ruleset: RuleSet, labels: Mapping[str, str]) -> list[str]:
    if labels.get("__source__") == SOURCE:
        return []
    candidates = ruleset.heartbeat_index.candidates(labels)
    return [rule.name for rule in candidates if all_match(rule.matchers, labels)]


def missed(rule: HeartbeatRule, last_beat: datetime, now: datetime) -> bool:
    return now - last_beat > rule.every


def missed_event(rule: HeartbeatRule, last_beat: datetime, now: datetime) -> Event:
    return _event(rule, AlertStatus.FIRING, last_beat, now)


def recovered_event(rule: HeartbeatRule, last_beat: datetime, now: datetime) -> Event:
    return _event(rule, AlertStatus.RESOLVED, last_beat, now)


def _event(rule: HeartbeatRule, status: AlertStatus, last_beat: datetime, now: datetime) -> Event:
    labels = {"alertname": ALERTNAME, "heartbeat": rule.name, "instance": rule.name}
    labels.update(rule.labels)
    summary = (
        rule.summary or f"no event matching heartbeat {rule.name!r} for more than {rule.every}"
    )
    return Event(
        source=SOURCE,
        fingerprint=rule.name,
        status=status,
        labels=labels,
        annotations={"summary": summary, "last_beat": last_beat.isoformat()},
        severity=rule.severity,
        starts_at=last_beat + rule.every,
        ends_at=now if status is AlertStatus.RESOLVED else None,
        expires_at=None,
        generator_url="",
        group_key=None,
        receiver=None,
        digest=f"heartbeat:{rule.name}:{status}:{now.isoformat()}",
    )
