"""The text the ticket channels (`servicenow`, `jira`) write into a ticket: the description of
a new one (body, incident facts, link back to the bridge), the note each later change adds (a
ServiceNow work note, a Jira internal comment), and `bridge-incident-<id>`, the key a ticket is
found again by.

Which fact rows a channel leaves out, and how long its fields may be, is the channel's own
choice: it tells `description` the rows to leave out and clips with its API's limits.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Any

from bridge.notify.base import Message

SHOWN_ALERTS = 10


class Fact(enum.StrEnum):
    """A row of the incident facts, in the order they are shown; the value is its label."""

    INCIDENT = "Incident"
    PRIORITY = "Priority"
    SEVERITY = "Severity"
    SERVICE = "Service"
    CI = "CI"
    ASSIGNMENT_GROUP = "Assignment group"
    OPENED_AT = "Opened at"
    ALERTS = "Alerts"


def correlation_id(message: Message) -> str:
    """`bridge-incident-<id>`: the incident part of the notification key."""
    incident_id = message.incident.get("id")
    if incident_id is None:
        return message.key.partition(":")[0]
    return f"bridge-incident-{incident_id}"


def description(message: Message, leave_out: Collection[Fact] = ()) -> str:
    """The body, the facts (but `leave_out`) and the alerts, and the link to the incident."""
    parts = (message.body.strip(), facts(message, leave_out), _link(message))
    return "\n\n".join(part for part in parts if part)


def facts(message: Message, leave_out: Collection[Fact] = ()) -> str:
    """`Label: value` for each fact that has a value (but `leave_out`), then one line for each
    of the first `SHOWN_ALERTS` alerts."""
    values = _fact_values(message)
    lines = [f"{row}: {values[row]}" for row in Fact if values[row] and row not in leave_out]
    lines.extend(_alert_line(alert) for alert in message.alerts[:SHOWN_ALERTS])
    return "\n".join(lines)


def note(message: Message) -> str:
    """What a change to the incident adds to its ticket."""
    incident = message.incident
    lines = [f"alert-bridge: {message.transition.value.replace('_', ' ')} - {message.title}"]
    if message.reason:
        lines.append(f"Reason: {message.reason}")
    for key, label in (("acknowledged_by", "Acknowledged by"), ("assignee", "Assignee")):
        if incident.get(key):
            lines.append(f"{label}: {incident[key]}")
    if message.body.strip():
        lines += ["", message.body.strip()]
    lines += ["", _link(message)]
    return "\n".join(lines)


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, the last one an ellipsis when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def text_of(value: object) -> str:
    """A field's value as text; empty for None."""
    return "" if value is None else str(value)


def _link(message: Message) -> str:
    return f"Incident in alert-bridge: {message.url}"


def _fact_values(message: Message) -> dict[Fact, str]:
    incident = message.incident
    priority = incident.get("priority")
    return {
        Fact.INCIDENT: f"{incident.get('id')} ({correlation_id(message)})",
        Fact.PRIORITY: f"P{priority}" if isinstance(priority, int) else text_of(priority),
        Fact.SEVERITY: text_of(incident.get("severity")),
        Fact.SERVICE: text_of(incident.get("service")),
        Fact.CI: text_of(incident.get("ci")),
        Fact.ASSIGNMENT_GROUP: text_of(incident.get("assignment_group")),
        Fact.OPENED_AT: text_of(incident.get("opened_at")),
        Fact.ALERTS: f"{incident.get('firing_alerts', '?')} firing of "
        f"{incident.get('alert_count', '?')}",
    }


def _alert_line(alert: Mapping[str, Any]) -> str:
    labels = alert.get("labels") or {}
    name = labels.get("alertname", "alert")
    where = f" on {labels['host']}" if labels.get("host") else ""
    summary = (alert.get("annotations") or {}).get("summary", "")
    line = f"- [{alert.get('status', '')}] {alert.get('source', '')}: {name}{where}"
    return f"{line}: {summary}" if summary else line
