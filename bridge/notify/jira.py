"""Jira Service Management channel: one customer request per bridge incident, then internal
comments and workflow transitions on it.

Follows the Jira Service Management Cloud REST API (`/rest/servicedeskapi`, the non-experimental
request, comment and customer-transition resources); Data Center serves the same resources
with a personal access token.

* A trigger (opened, reopened, repeat) without `external_id` creates a request:
  `POST /rest/servicedeskapi/request` with `serviceDeskId`, `requestTypeId` and
  `requestFieldValues` {`summary` (the title on one line, at most 255 characters),
  `description` (body, incident facts and link)}; the answer's `issueKey` (`OPS-12`) is
  `Delivered.external_id`. The request type must have no other required field.
* With `external_id`: resolved runs `resolve_transition_id`, and reopened runs
  `reopen_transition_id` when set (`POST .../request/{key}/transition` {`id`,
  `additionalComment`}, 204 No Content); everything else, and reopened without a reopen
  transition, adds an internal comment (`POST .../request/{key}/comment` {`body`,
  `public`: false}), which needs an agent account. Closed only comments: the resolve
  transition already ended the request.
* These are *customer* transitions: the IDs must be ones `GET .../request/{key}/transition`
  lists for the bridge's account; an agent-only workflow transition answers 400 (rejected).
* A non-trigger transition without `external_id` sends nothing and counts as delivered.
* Errors go through `bridge.notify.http.classify`; Jira's error bodies
  (`{"errorMessage"}` from servicedeskapi, `{"errorMessages": [...], "errors": {field: msg}}`
  from the platform) become the reason.

Delivery is at least once: this API has no field to search a request by the bridge's key,
so a crash (or a lost answer) between creating a request and recording its key makes a
second request on the next attempt. A search before create is left out on purpose: Jira
Cloud removed `/rest/api/2/search` (its `/rest/api/3/search/jql` successor is eventually
consistent, so it can miss the request just made), labels are not on most request forms,
and the summary is free text. The description carries `bridge-incident-<id>` so that a
duplicate is easy to find (`text ~ "bridge-incident-42"`) and close.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Self
from urllib.parse import quote

import aiohttp
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from bridge.notify import ticket_api
from bridge.notify.base import Delivered, Message, Outcome, Rejected, Retry, Transition
from bridge.notify.http import Reply
from bridge.notify.http import authorization as authorization_header
from bridge.notify.ticket_api import EXCERPT
from bridge.notify.ticket_text import Fact, clip, description, note

API = "/rest/servicedeskapi"
SUMMARY_MAX = 255
DESCRIPTION_MAX = 32_000  # Jira's text fields hold 32,767 characters
# The facts a new request's description leaves out. The assignment group stays: a request
# has no field for it.
LEFT_OUT_FACTS = frozenset({Fact.ALERTS})
_SIGN_IN_PROBLEMS = {
    "not both": "give either email and api_token, or token, not both",
    "basic auth needs both": "basic auth needs both email and api_token",
    "none given": "give email and api_token (Cloud), or token (Data Center PAT)",
}
_BaseUrl = Annotated[
    str,
    AfterValidator(
        ticket_api.base_url("must be the site's base URL, like https://example.atlassian.net")
    ),
]


class Options(BaseModel):
    """A Jira Service Management target: site, credentials (Cloud: account email and API
    token; Data Center: a personal access token; exactly one), where requests go and the
    workflow transitions to run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: _BaseUrl  # https://example.atlassian.net
    email: str = Field(default="", pattern="^[^:]*$")  # RFC 7617: no colon
    api_token: SecretStr | None = None
    token: SecretStr | None = None  # bearer personal access token (Data Center)
    service_desk_id: str = Field(min_length=1)
    request_type_id: str = Field(min_length=1)
    resolve_transition_id: str = Field(min_length=1)
    reopen_transition_id: str = ""  # empty: a reopen is a comment
    timeout: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> Self:
        ticket_api.check_sign_in(self.email, self.api_token, self.token, _SIGN_IN_PROBLEMS)
        return self


def authorization(options: Options) -> str:
    """The `Authorization` header: the bearer token, else basic auth with email and API token
    (built here: `aiohttp.BasicAuth` is deprecated since aiohttp 3.14)."""
    return authorization_header(options.email, options.api_token, options.token)


@dataclass(frozen=True, slots=True)
class JiraChannel:
    options: Options
    session: aiohttp.ClientSession

    async def send(self, message: Message) -> Outcome:
        key = message.external_id
        if not key:
            if not message.transition.is_trigger:
                return Delivered(None, "no Jira request for this incident; nothing to update")
            return await self._create(message)
        transition = transition_for(message.transition, self.options)
        if transition:
            return await self._transition(key, transition, message)
        return await self._comment(key, message)

    async def _create(self, message: Message) -> Outcome:
        reply = await self._post(f"{API}/request", new_request(message, self.options))
        if isinstance(reply, Retry | Rejected):
            return reply
        body = reply.json()
        key = body.get("issueKey") if isinstance(body, Mapping) else None
        if not isinstance(key, str) or not key:
            # Not retried: the request may well exist, and a retry would make a second one.
            excerpt = reply.text[:EXCERPT].strip()
            return Rejected(f"HTTP {reply.status} without an issueKey; check the desk: {excerpt!r}")
        return Delivered(key, f"created {key}")

    async def _comment(self, key: str, message: Message) -> Outcome:
        body = {"body": clip(note(message), DESCRIPTION_MAX), "public": False}
        reply = await self._post(f"{API}/request/{quote(key, safe='')}/comment", body)
        if isinstance(reply, Retry | Rejected):
            return reply
        return Delivered(key, f"commented on {key}")

    async def _transition(self, key: str, transition: str, message: Message) -> Outcome:
        body = {
            "id": transition,
            "additionalComment": {"body": clip(note(message), DESCRIPTION_MAX)},
        }
        reply = await self._post(f"{API}/request/{quote(key, safe='')}/transition", body)
        if isinstance(reply, Retry | Rejected):
            return reply
        return Delivered(key, f"ran transition {transition} on {key}")

    async def _post(self, path: str, body: object) -> Reply | Retry | Rejected:
        """One POST; the reply when it is a 2xx, else the failure."""
        options = self.options
        api = ticket_api.Api(self.session, options.base_url, authorization(options))
        return await api.exchange("POST", path, body, options.timeout, error_message)


def make(options: Options, session: aiohttp.ClientSession) -> JiraChannel:
    return JiraChannel(options, session)


# --- what is sent -------------------------------------------------------------------------


def transition_for(transition: Transition, options: Options) -> str:
    """The workflow transition to run for `transition`; empty for a comment."""
    if transition is Transition.RESOLVED:
        return options.resolve_transition_id
    if transition is Transition.REOPENED:
        return options.reopen_transition_id
    return ""


def new_request(message: Message, options: Options) -> dict[str, Any]:
    summary = " ".join(message.title.split())
    return {
        "serviceDeskId": options.service_desk_id,
        "requestTypeId": options.request_type_id,
        "requestFieldValues": {
            "summary": clip(summary, SUMMARY_MAX),
            "description": clip(description(message, LEFT_OUT_FACTS), DESCRIPTION_MAX),
        },
    }


# --- what comes back ----------------------------------------------------------------------


def error_message(body: object) -> str:
    """The messages of `{"errorMessage"}` (servicedeskapi) or `{"errorMessages": [...],
    "errors": {field: message}}` (platform), joined with "; "."""
    if not isinstance(body, Mapping):
        return ""
    parts: list[str] = []
    if isinstance(body.get("errorMessage"), str):
        parts.append(body["errorMessage"])
    if isinstance(body.get("errorMessages"), list):
        parts.extend(str(text) for text in body["errorMessages"])
    if isinstance(body.get("errors"), Mapping):
        parts.extend(f"{field}: {text}" for field, text in body["errors"].items())
    return "; ".join(part for part in parts if part)[:EXCERPT]
