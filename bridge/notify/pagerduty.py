"""PagerDuty channel: one PagerDuty Events API v2 event (`POST /v2/enqueue`) per notification.

Input: a `Message`. Output: an `Outcome`, as the Events API documents its replies: 202 accepted
(delivered, with the event's `dedup_key` as the external id); 400 invalid event (rejected, the
reason carries PagerDuty's `errors`); 429 and 5xx retried (PagerDuty sends no `Retry-After`, so
the dispatcher's own backoff applies unless one is present); no answer retried. Driven by a rule
file's `targets` entry with `channel: pagerduty`.

Every event of one incident carries the same `dedup_key`, `bridge-incident-<id>`, so that the
acknowledge and the resolve reach the alert the trigger opened, and a later trigger (repeat,
escalation, SLA breach) adds to that alert instead of opening a second one. PagerDuty scopes a
dedup key to its routing key. Acknowledge and resolve events carry only `routing_key`,
`event_action` and `dedup_key`, as the API defines them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bridge.notify.base import Channel, Delivered, Message, Outcome, Rejected, Retry, Transition
from bridge.notify.http import Reply, classify, request

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
CLIENT = "alert-bridge"
_SUMMARY_MAX = 1024
_DEDUP_KEY_MAX = 255
_REASON_MAX = 300

Action = Literal["trigger", "acknowledge", "resolve"]

ACTIONS: Mapping[Transition, Action] = {
    Transition.OPENED: "trigger",
    Transition.REOPENED: "trigger",
    Transition.REPEAT: "trigger",
    # A trigger on an open alert only adds to its log; on an acknowledged one it notifies
    # nobody. Either way the alert shows that the incident was escalated or breached its SLA.
    Transition.ESCALATED: "trigger",
    Transition.SLA_BREACH: "trigger",
    Transition.ACKNOWLEDGED: "acknowledge",
    Transition.RESOLVED: "resolve",
    Transition.CLOSED: "resolve",
}

# The bridge's severities (rules.model.Severity) onto PagerDuty's four.
SEVERITIES: Mapping[str, str] = {
    "critical": "critical",
    "major": "error",
    "minor": "warning",
    "warning": "warning",
    "info": "info",
}
# An unknown severity still pages: "error" gets high urgency under severity-based urgency.
_DEFAULT_SEVERITY = "error"


class Options(BaseModel):
    # Inputs stay out of validation errors: the URL may carry a credential.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # The 32-character integration key of an Events API v2 integration (or a ruleset).
    routing_key: SecretStr = Field(min_length=32, max_length=32)
    url: str = EVENTS_URL
    timeout: float = Field(default=10.0, gt=0)
    # The event's `source` when the incident names no CI and has no `host` label.
    source: str = Field(default=CLIENT, min_length=1)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value


def dedup_key(message: Message) -> str:
    return f"bridge-incident-{message.incident['id']}"[:_DEDUP_KEY_MAX]


def severity(name: object) -> str:
    return SEVERITIES.get(str(name).lower(), _DEFAULT_SEVERITY)


def event(message: Message, options: Options) -> dict[str, Any]:
    """The Events API v2 request body for `message`."""
    action = ACTIONS[message.transition]
    body: dict[str, Any] = {
        "routing_key": options.routing_key.get_secret_value(),
        "event_action": action,
        "dedup_key": dedup_key(message),
    }
    if action == "trigger":
        body["payload"] = _payload(message, options)
        body["links"] = _links(message)
        body["client"] = CLIENT
        body["client_url"] = message.url
    return body


def _payload(message: Message, options: Options) -> dict[str, Any]:
    incident = message.incident
    labels = incident.get("labels") or {}
    payload: dict[str, Any] = {
        "summary": (message.title or str(incident.get("title") or dedup_key(message)))[
            :_SUMMARY_MAX
        ],
        "source": str(incident.get("ci") or labels.get("host") or options.source),
        "severity": severity(incident.get("severity")),
        "timestamp": incident.get("opened_at") or message.created_at.isoformat(),
    }
    for name, field in (("component", "ci"), ("group", "service"), ("class", "rule")):
        if incident.get(field):
            payload[name] = str(incident[field])
    payload["custom_details"] = _details(message)
    return payload


def _details(message: Message) -> dict[str, Any]:
    incident = message.incident
    details: dict[str, Any] = {
        "transition": message.transition.value,
        "priority": incident.get("priority"),
        "status": incident.get("status"),
        "labels": dict(incident.get("labels") or {}),
        "alerts": incident.get("alert_count", len(message.alerts)),
        "body": message.body,
    }
    if message.reason:
        details["reason"] = message.reason
    return details


def _links(message: Message) -> list[dict[str, str]]:
    links = [{"href": message.url, "text": "Incident in the bridge"}]
    # The most recent alert that names where it came from (a Prometheus graph, say).
    source = next((a["generator_url"] for a in message.alerts if a.get("generator_url")), None)
    if source:
        links.append({"href": str(source), "text": "Alert source"})
    return links


def outcome(reply: Reply, sent_key: str) -> Outcome:
    """What PagerDuty's reply means for the notification."""
    body = reply.json()
    fields: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    if 200 <= reply.status < 300:
        echoed = fields.get("dedup_key")
        return Delivered(echoed if isinstance(echoed, str) else sent_key, f"HTTP {reply.status}")
    if reply.status == 400 and fields:
        return Rejected(_invalid_event(fields)[:_REASON_MAX])
    return classify(reply)


def _invalid_event(fields: Mapping[str, Any]) -> str:
    errors = fields.get("errors")
    listed = "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
    message = str(fields.get("message") or "invalid event")
    return f"HTTP 400: {message}: {listed}" if listed else f"HTTP 400: {message}"


class PagerDuty:
    def __init__(self, options: Options, session: aiohttp.ClientSession) -> None:
        self._options = options
        self._session = session

    async def send(self, message: Message) -> Outcome:
        body = event(message, self._options)
        reply = await request(
            self._session, "POST", self._options.url, body=body, timeout=self._options.timeout
        )
        if isinstance(reply, Retry):
            return reply
        return outcome(reply, body["dedup_key"])


def make(options: Options, session: aiohttp.ClientSession) -> Channel:
    return PagerDuty(options, session)
