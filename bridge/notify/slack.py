"""Slack channel: an incident card in a channel, by incoming webhook or by the Web API.

Input: a `Message`. Output: an `Outcome`. Driven by a rule file's `targets` entry with
`channel: slack`; a target sets exactly one mode.

Slack's APIs are not versioned; this follows Slack's current documentation of:

* Incoming webhooks (`webhook_url`; docs.slack.dev "Sending messages using incoming
  webhooks"): POST `{"text", "blocks"}`, answered 200 `ok`. Errors are plain-text codes with
  a status (Slack changelog 2016-05-17): 400 `invalid_payload`, 403 `action_prohibited`, 404
  `channel_not_found` / `no_service`, 410 `channel_is_archived`, 429 with `Retry-After`,
  500 `rollup_error`; `bridge.notify.http.classify` maps them. A webhook cannot edit what it
  posted, so every notification, a resolution too, is a new message, and no external id is
  kept.
* Web API methods `chat.postMessage` and `chat.update` with a bot token (`token`, `channel`;
  scope `chat:write`), JSON bodies. Errors come as HTTP 200 `{"ok": false, "error": code}`:
  the transient codes in `_TRANSIENT` (`ratelimited`, `internal_error`, ...) are retried,
  every other code is rejected; rate limiting may also come as HTTP 429 with `Retry-After`.
  The first notification of an incident posts the card and returns `channel:ts` as the
  external id (the channel ID Slack answers with, which `chat.update` needs). Later ones
  update that card in place and post a threaded reply saying what happened; the reply is
  also broadcast to the channel for triggers and escalations, since an edit to an old card
  goes unseen. A card that can no longer be edited (deleted) is posted anew, and its new id
  returned.

Delivery is at least once: Slack takes no idempotency key, so a post whose answer was lost is
posted again on retry, and a retry after a successful update repeats the (harmless) update
before the reply.

The card (Block Kit): a header "<emoji> [P1] title" with the emoji per transition in `EMOJI`,
fields (priority, status, severity, service, CI, alerts, reason), the rendered body, and a
context line linking to the incident in the bridge and to the first alert's source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bridge.notify.base import Channel, Delivered, Message, Outcome, Rejected, Retry, Transition
from bridge.notify.http import Reply, classify, request, retry_after

API_URL = "https://slack.com/api"
# Web API error codes a later attempt may get past (Slack: "likely a transient issue").
_TRANSIENT = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)
# chat.update answers that mean the card cannot be edited any more: post a new one.
_CARD_GONE = frozenset(
    Rejected(f"chat.update: {error}") for error in ("message_not_found", "cant_update_message")
)
_HEADER_LIMIT = 150  # Block Kit: header text
_FIELD_LIMIT = 2000  # section field text
_TEXT_LIMIT = 3000  # section text; also used for message text
_JSON_UTF8 = "application/json; charset=utf-8"  # without the charset Slack warns

EMOJI: Mapping[Transition, str] = {
    Transition.OPENED: ":red_circle:",
    Transition.REOPENED: ":red_circle:",
    Transition.REPEAT: ":red_circle:",
    Transition.ACKNOWLEDGED: ":eyes:",
    Transition.ESCALATED: ":rotating_light:",
    Transition.SLA_BREACH: ":hourglass:",
    Transition.RESOLVED: ":white_check_mark:",
    Transition.CLOSED: ":lock:",
}
LABEL: Mapping[Transition, str] = {
    Transition.OPENED: "Opened",
    Transition.REOPENED: "Reopened",
    Transition.REPEAT: "Still firing",
    Transition.ACKNOWLEDGED: "Acknowledged",
    Transition.ESCALATED: "Escalated",
    Transition.SLA_BREACH: "SLA breached",
    Transition.RESOLVED: "Resolved",
    Transition.CLOSED: "Closed",
}
_BROADCAST = frozenset({Transition.ESCALATED, Transition.SLA_BREACH})


class Options(BaseModel):
    # Inputs stay out of validation errors: the webhook URL is itself the credential.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    webhook_url: SecretStr | None = None  # incoming webhook mode
    token: SecretStr | None = None  # Web API mode: a bot token (xoxb-...)
    channel: str | None = None  # Web API mode: channel ID (C0123ABC) or name
    api_url: str = API_URL
    timeout: float = Field(default=10.0, gt=0)

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _http_url(value.get_secret_value())
        return value

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        return _http_url(value).rstrip("/")

    @model_validator(mode="after")
    def _one_mode(self) -> Self:
        web_api = self.token is not None or self.channel is not None
        if self.webhook_url is not None and web_api:
            raise ValueError(
                "set webhook_url (incoming webhook) or token and channel (Web API), not both"
            )
        token = self.token.get_secret_value() if self.token is not None else ""
        if self.webhook_url is None and not (token and self.channel):
            raise ValueError(
                "set either webhook_url (incoming webhook) or both token and channel (Web API)"
            )
        return self


def _http_url(value: str) -> str:
    """`value` if it is an absolute http(s) URL; the error never repeats the URL."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


# What the card says, from the incident as the API shows it.


def priority(incident: Mapping[str, Any]) -> str:
    """The priority label ("P1"), whether the incident carries the label (API shape) or the
    number."""
    value = incident.get("priority")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"P{value}"
    return str(value or "")


def headline(message: Message) -> str:
    """The title with its priority tag, unless the rendered title has it already (the
    default template writes "[RESOLVED] [P1] title")."""
    tag = f"[{priority(message.incident)}]"
    if tag == "[]" or tag in message.title:
        return message.title
    return f"{tag} {message.title}"


def status(message: Message) -> str:
    label = LABEL[message.transition]
    current = str(message.incident.get("status") or "")
    if current in ("", message.transition.value):
        return label
    return f"{label} (incident {current})"


def alert_count(incident: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]]) -> str:
    total = incident.get("alert_count", len(alerts))
    firing = incident.get("firing_alerts")
    return str(total) if firing is None else f"{total} ({firing} firing)"


def facts(message: Message) -> list[tuple[str, str]]:
    incident = message.incident
    found = [
        ("Priority", priority(incident)),
        ("Status", status(message)),
        ("Severity", str(incident.get("severity") or "")),
        ("Service", str(incident.get("service") or "")),
        ("CI", str(incident.get("ci") or "")),
        ("Alerts", alert_count(incident, message.alerts)),
    ]
    if message.reason:
        found.append(("Reason", message.reason))
    return [(name, value or "-") for name, value in found]


def source_url(message: Message) -> str:
    """The first alert's link to where it came from (a Prometheus graph), or ""."""
    first = message.alerts[0] if message.alerts else {}
    return str(first.get("generator_url") or "")


def links(message: Message) -> list[tuple[str, str]]:
    found = [("Open in bridge", message.url), ("Open source", source_url(message))]
    return [(label, url) for label, url in found if url]


# Slack's markup.


def _escape(text: str) -> str:
    """mrkdwn control characters as entities, so alert text cannot form links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, limit: int) -> str:
    escaped = _escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    if cut.rfind("&") > cut.rfind(";"):  # never end inside an entity
        cut = cut[: cut.rfind("&")]
    return cut + "…"


def _link(url: str, label: str) -> str:
    # Percent-encoding keeps the URL equivalent and the <url|label> syntax intact.
    safe = url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe}|{_escape(label)}>"


def card(message: Message) -> list[dict[str, Any]]:
    """The message's Block Kit blocks."""
    title = f"{EMOJI[message.transition]} {headline(message)}"
    if len(title) > _HEADER_LIMIT:
        title = title[: _HEADER_LIMIT - 1] + "…"
    fields = [
        {"type": "mrkdwn", "text": f"*{name}*\n{_mrkdwn(value, _FIELD_LIMIT - len(name) - 3)}"}
        for name, value in facts(message)
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {"type": "section", "fields": fields},
    ]
    if message.body.strip():
        text = _mrkdwn(message.body.strip(), _TEXT_LIMIT)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    linked = " · ".join(_link(url, label) for label, url in links(message))
    if linked:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": linked}]})
    return blocks


def fallback_text(message: Message) -> str:
    """The message text: notifications and clients that show no blocks."""
    line = f"{EMOJI[message.transition]} {LABEL[message.transition]}: {headline(message)}"
    return _mrkdwn(line, _TEXT_LIMIT)


def thread_text(message: Message) -> str:
    """The threaded reply under the card: what happened, and the rendered body."""
    line = f"{EMOJI[message.transition]} *{LABEL[message.transition]}*"
    if message.reason:
        line += f": {_mrkdwn(message.reason, _FIELD_LIMIT)}"
    if message.body.strip():
        line += "\n" + _mrkdwn(message.body.strip(), _TEXT_LIMIT)
    return line


def parse_external_id(external_id: str | None) -> tuple[str, str] | None:
    """`channel:ts` -> (channel, ts); None when there is none or it is not one of ours."""
    channel, _, ts = (external_id or "").partition(":")
    if not channel or not ts:
        return None
    return channel, ts


def api_result(method: str, reply: Reply) -> Mapping[str, Any] | Retry | Rejected:
    """A Web API answer: its fields when `ok`, else what the error means."""
    outcome = classify(reply)
    if not isinstance(outcome, Delivered):
        return outcome
    answer = reply.json()
    if not isinstance(answer, dict):
        return Rejected(f"{method}: not a Slack Web API answer: HTTP {reply.status}")
    if answer.get("ok") is True:
        return answer
    error = str(answer.get("error") or "unknown_error")
    if error in _TRANSIENT:
        return Retry(f"{method}: {error}", retry_after(reply.headers))
    return Rejected(f"{method}: {error}")


class IncomingWebhook:
    def __init__(self, url: SecretStr, timeout: float, session: aiohttp.ClientSession) -> None:
        self._url = url
        self._timeout = timeout
        self._session = session

    async def send(self, message: Message) -> Outcome:
        body = {"text": fallback_text(message), "blocks": card(message)}
        url = self._url.get_secret_value()
        reply = await request(self._session, "POST", url, body=body, timeout=self._timeout)
        if isinstance(reply, Retry):
            return reply
        return classify(reply)


class WebApi:
    def __init__(
        self,
        token: SecretStr,
        channel: str,
        api_url: str,
        timeout: float,
        session: aiohttp.ClientSession,
    ) -> None:
        self._token = token
        self._channel = channel
        self._api_url = api_url
        self._timeout = timeout
        self._session = session

    async def send(self, message: Message) -> Outcome:
        posted = parse_external_id(message.external_id)
        if posted is None:
            return await self._post(message)
        return await self._update(message, *posted)

    async def _post(self, message: Message) -> Outcome:
        fields = {"channel": self._channel, "text": fallback_text(message), "blocks": card(message)}
        answer = await self._call("chat.postMessage", fields)
        if not isinstance(answer, Mapping):
            return answer
        channel, ts = answer.get("channel"), answer.get("ts")
        if not (isinstance(channel, str) and isinstance(ts, str)):
            return Delivered(None, "chat.postMessage: posted, but the answer has no channel and ts")
        return Delivered(f"{channel}:{ts}", "chat.postMessage")

    async def _update(self, message: Message, channel: str, ts: str) -> Outcome:
        text, blocks = fallback_text(message), card(message)
        fields = {"channel": channel, "ts": ts, "text": text, "blocks": blocks}
        updated = await self._call("chat.update", fields)
        if isinstance(updated, Rejected) and updated in _CARD_GONE:
            return await self._post(message)
        if not isinstance(updated, Mapping):
            return updated
        broadcast = message.transition.is_trigger or message.transition in _BROADCAST
        reply = {
            "channel": channel,
            "thread_ts": ts,
            "text": thread_text(message),
            "reply_broadcast": broadcast,
        }
        replied = await self._call("chat.postMessage", reply)
        if not isinstance(replied, Mapping):
            return replied
        return Delivered(message.external_id, "chat.update and thread reply")

    async def _call(
        self, method: str, fields: Mapping[str, Any]
    ) -> Mapping[str, Any] | Retry | Rejected:
        headers = {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "Content-Type": _JSON_UTF8,
        }
        reply = await request(
            self._session,
            "POST",
            f"{self._api_url}/{method}",
            body=dict(fields),
            headers=headers,
            timeout=self._timeout,
        )
        if isinstance(reply, Retry):
            return reply
        return api_result(method, reply)


def make(options: Options, session: aiohttp.ClientSession) -> Channel:
    if options.webhook_url is not None:
        return IncomingWebhook(options.webhook_url, options.timeout, session)
    if options.token is None or options.channel is None:  # ruled out by Options
        raise ValueError("slack: set webhook_url, or token and channel")
    return WebApi(options.token, options.channel, options.api_url, options.timeout, session)
