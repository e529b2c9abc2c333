"""Microsoft Teams channel: an Adaptive Card posted through a Teams workflow webhook.

Input: a `Message`. Output: an `Outcome` by `bridge.notify.http.classify`. Driven by a rule
file's `targets` entry with `channel: teams`.

Teams workflows (Power Automate, template "Post to a channel when a webhook request is
received") replace the retired Office 365 connector webhooks. The workflow takes a `message`
whose `attachments` are Adaptive Cards (schema version 1.4 here, which every Teams client
renders) and answers 202 Accepted once the flow run is queued (200 is accepted too). A card
the flow then fails to post shows only in the flow's run history. The URL carries the
workflow's signature (`sig=`), so it is a secret.

A workflow webhook cannot update a card it posted: each notification, a resolution included,
posts a new card, and no external id is kept.

The card says what the Slack card says (`bridge.notify.slack.headline`, `facts`, `links`):
the title in red ("attention") for triggers and escalations, green ("good") once resolved or
closed, a fact set, the rendered body, and buttons back to the incident and the alert's
source.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bridge.notify.base import Channel, Message, Outcome, Retry, Transition
from bridge.notify.http import classify, request
from bridge.notify.slack import facts, headline, links

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"
_URGENT = frozenset({Transition.ESCALATED, Transition.SLA_BREACH})


class Options(BaseModel):
    # Inputs stay out of validation errors: the workflow URL is itself the credential.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: SecretStr
    timeout: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value


def colour(transition: Transition) -> str:
    """The title's Adaptive Card colour."""
    if transition.is_end:
        return "good"
    if transition.is_trigger or transition in _URGENT:
        return "attention"
    return "default"


def card(message: Message) -> dict[str, Any]:
    """The Adaptive Card for the message."""
    title = {
        "type": "TextBlock",
        "text": headline(message),
        "weight": "bolder",
        "size": "medium",
        "color": colour(message.transition),
        "wrap": True,
    }
    fact_set = {
        "type": "FactSet",
        "facts": [{"title": name, "value": value} for name, value in facts(message)],
    }
    body: list[dict[str, Any]] = [title, fact_set]
    if message.body.strip():
        body.append({"type": "TextBlock", "text": message.body.strip(), "wrap": True})
    return {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "actions": [
            {"type": "Action.OpenUrl", "title": label, "url": url} for label, url in links(message)
        ],
    }


def payload(message: Message) -> dict[str, Any]:
    """The workflow's request body: a message with the card as its one attachment."""
    attachment = {"contentType": CARD_TYPE, "contentUrl": None, "content": card(message)}
    return {"type": "message", "attachments": [attachment]}


class Workflow:
    def __init__(self, options: Options, session: aiohttp.ClientSession) -> None:
        self._options = options
        self._session = session

    async def send(self, message: Message) -> Outcome:
        reply = await request(
            self._session,
            "POST",
            self._options.url.get_secret_value(),
            body=payload(message),
            timeout=self._options.timeout,
        )
        if isinstance(reply, Retry):
            return reply
        return classify(reply)


def make(options: Options, session: aiohttp.ClientSession) -> Channel:
    return Workflow(options, session)
