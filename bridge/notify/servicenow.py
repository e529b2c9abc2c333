"""ServiceNow channel: one ServiceNow incident per bridge incident, kept in step with it.

Follows the ServiceNow Table API `now/table` v1 (`/api/now/table/incident`) as documented for
Tokyo and later releases, with the default incident state model (1 New, 2 In Progress,
3 On Hold, 6 Resolved, 7 Closed, 8 Canceled) and the default priority lookup (impact x
urgency -> priority).

Outbound (`make(...).send`):
* A trigger (opened, reopened, repeat) without `external_id` first looks for an active
  incident whose `correlation_id` is `bridge-incident-<id>` (a crash between create and record
  must not make a second ticket), updates it with a work note when found, and otherwise POSTs a
  new incident. `Delivered.external_id` is the incident's `sys_id`.
* Any transition with `external_id` PATCHes that incident with a work note, and: acknowledged
  -> state 2 In Progress; reopened -> state 1 New (not In Progress, which the inbound side reads
  as "acknowledged"); resolved -> state 6 Resolved with `close_code` and `close_notes` (the
  message body). Closed only adds a work note: Closed (7) is reached by the instance's
  auto-close of resolved incidents, and the default ACLs let only admins set it. A 404
  (deleted record, or an ACL hiding it) is rejected. A Closed incident is read-only to
  non-admins, so a later reopen may be refused.
* A non-trigger transition without `external_id` and without a ticket found by the lookup
  sends nothing (the route never opened a ticket for this incident) and counts as delivered.
* `caller_id`, `assignment_group` and `cmdb_ci` are reference fields: give sys_ids, or names
  ServiceNow can match against the referenced table's display value. `assignment_group` is
  the target's option when set, else the incident's own. Empty values are left out.
* `close_code` defaults to "Solution provided", a choice of the `close_code` field in current
  releases (others: "Workaround provided", "Resolved by caller", "Resolved by change",
  "Resolved by problem", "Known error", "Duplicate", "No resolution provided"). Older
  instances used "Solved (Permanently)"; set whatever the instance's choice list holds.
* Errors go through `bridge.notify.http.classify`; ServiceNow's error body
  `{"error": {"message", "detail"}, "status": "failure"}` becomes the reason.
* The integration user needs the `itil` role (create, read and write incidents) or an
  equivalent; give the bridge a dedicated user so that the business rule (in
  `bridge.notify.servicenow_inbound`) can skip its updates.

Inbound: `bridge.notify.servicenow_inbound` reads a ticket's state back (from the business
rule that posts changes to the bridge, and by polling). `ticket_state` here is the state the
bridge's own deliveries leave a ticket in, so that a poll tells them from changes made there.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Self
from urllib.parse import quote, urlencode

import aiohttp
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from bridge.notify import ticket_api
from bridge.notify.base import Delivered, ItsmState, Message, Outcome, Rejected, Retry, Transition
from bridge.notify.http import Reply
from bridge.notify.http import authorization as authorization_header
from bridge.notify.ticket_api import EXCERPT
from bridge.notify.ticket_text import Fact, clip, correlation_id, description, note, text_of

TABLE = "/api/now/table/incident"
CORRELATION_DISPLAY = "alert-bridge"
SHORT_DESCRIPTION_MAX = 160
TEXT_MAX = 4000  # the default length of description, close_notes and journal input
# Not in a new incident's description: the assignment group is a field of its own.
LEFT_OUT_FACTS = frozenset({Fact.ASSIGNMENT_GROUP})
_FIELDS = "sys_id,number,state"
_SIGN_IN_PROBLEMS = {
    "not both": "give either username and password, or token, not both",
    "basic auth needs both": "basic auth needs both username and password",
    "none given": "give username and password, or token (OAuth bearer)",
}
_BaseUrl = Annotated[
    str,
    AfterValidator(
        ticket_api.base_url("must be the base URL, like https://dev1234.service-now.com")
    ),
]


class State(enum.IntEnum):
    """The incident `state` values of ServiceNow's default state model."""

    NEW = 1
    IN_PROGRESS = 2
    ON_HOLD = 3
    RESOLVED = 6
    CLOSED = 7
    CANCELED = 8


# The state a transition moves the ticket to; transitions not listed only add a work note.
_TARGET_STATES = {
    Transition.ACKNOWLEDGED: State.IN_PROGRESS,
    Transition.REOPENED: State.NEW,
    Transition.RESOLVED: State.RESOLVED,
}
# Bridge priority -> (impact, urgency); ServiceNow's priority lookup gives back P1..P5.
_IMPACT_URGENCY = {1: ("1", "1"), 2: ("1", "2"), 3: ("2", "2"), 4: ("2", "3"), 5: ("3", "3")}


class Options(BaseModel):
    """A ServiceNow target: instance, credentials (basic auth or an OAuth bearer token, exactly
    one) and the fields every new incident gets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_url: _BaseUrl  # https://dev1234.service-now.com
    username: str = Field(default="", pattern="^[^:]*$")  # RFC 7617: no colon
    password: SecretStr | None = None
    token: SecretStr | None = None
    caller_id: str = ""
    assignment_group: str = ""  # empty: the incident's own assignment group, when it has one
    category: str = ""
    close_code: str = "Solution provided"
    timeout: float = Field(default=10.0, gt=0, le=120)
    # The bearer token ServiceNow's business rule sends to the bridge's inbound endpoint
    # (`POST /api/v1/itsm/servicenow/<target>`); unset: the endpoint refuses every call.
    inbound_token: SecretStr | None = None

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> Self:
        ticket_api.check_sign_in(self.username, self.password, self.token, _SIGN_IN_PROBLEMS)
        return self


def authorization(options: Options) -> str:
    """The `Authorization` header: the bearer token, else basic auth (RFC 7617). Built here
    rather than with `aiohttp.BasicAuth`, which aiohttp 3.14 deprecates."""
    return authorization_header(options.username, options.password, options.token)


@dataclass(frozen=True, slots=True)
class ServiceNowChannel:
    options: Options
    session: aiohttp.ClientSession

    async def send(self, message: Message) -> Outcome:
        if message.external_id:
            return await self._update(message.external_id, message)
        found = await self._find(correlation_id(message))
        if isinstance(found, Retry | Rejected):
            return found
        if found is not None:
            return await self._update(found, message)
        if not message.transition.is_trigger:
            return Delivered(None, "no ServiceNow incident for this incident; nothing to update")
        return await self._create(message)

    async def _find(self, correlation: str) -> str | Retry | Rejected | None:
        """The sys_id of the active incident created for `correlation`, if there is one."""
        query = {"sysparm_query": f"correlation_id={correlation}^active=true"}
        records = await self.records(query | {"sysparm_fields": _FIELDS, "sysparm_limit": "1"})
        if isinstance(records, Retry | Rejected):
            return records
        sys_id = records[0].get("sys_id") if records else None
        return sys_id if isinstance(sys_id, str) and sys_id else None

    async def records(self, query: Mapping[str, str]) -> list[Mapping[str, Any]] | Retry | Rejected:
        """The records a Table API query (`sysparm_*` parameters) answers."""
        reply = await self._exchange("GET", f"{TABLE}?{urlencode(query)}")
        if isinstance(reply, Retry | Rejected):
            return reply
        result = _result(reply)
        if not isinstance(result, list) or not all(isinstance(r, Mapping) for r in result):
            return Retry(f"unexpected answer to a query: {reply.text[:EXCERPT].strip()!r}")
        return result

    async def _create(self, message: Message) -> Outcome:
        path = f"{TABLE}?{urlencode({'sysparm_fields': _FIELDS})}"
        reply = await self._exchange("POST", path, new_incident(message, self.options))
        if isinstance(reply, Retry | Rejected):
            return reply
        result = _result(reply)
        sys_id = result.get("sys_id") if isinstance(result, Mapping) else None
        if not isinstance(sys_id, str) or not sys_id:
            # The next attempt's correlation lookup finds the record if it was made after all.
            return Retry(f"HTTP {reply.status} without a sys_id: {reply.text[:EXCERPT].strip()!r}")
        return Delivered(sys_id, f"created {_number(result, sys_id)}")

    async def _update(self, sys_id: str, message: Message) -> Outcome:
        path = f"{TABLE}/{quote(sys_id, safe='')}?{urlencode({'sysparm_fields': _FIELDS})}"
        reply = await self._exchange("PATCH", path, changes(message, self.options))
        if isinstance(reply, Retry | Rejected):
            return reply
        return Delivered(sys_id, f"updated {_number(_result(reply), sys_id)}")

    async def _exchange(
        self, method: str, path: str, body: object = None
    ) -> Reply | Retry | Rejected:
        """One request; the reply when it is a 2xx, else the failure."""
        options = self.options
        api = ticket_api.Api(self.session, options.instance_url, authorization(options))
        return await api.exchange(method, path, body, options.timeout, error_message)


def make(options: Options, session: aiohttp.ClientSession) -> ServiceNowChannel:
    return ServiceNowChannel(options, session)


# --- what is sent -------------------------------------------------------------------------


def new_incident(message: Message, options: Options) -> dict[str, str]:
    incident = message.incident
    body = {
        "short_description": clip(message.title, SHORT_DESCRIPTION_MAX),
        "description": clip(description(message, LEFT_OUT_FACTS), TEXT_MAX),
        "correlation_id": correlation_id(message),
        "correlation_display": CORRELATION_DISPLAY,
        "caller_id": options.caller_id,
        "assignment_group": options.assignment_group or text_of(incident.get("assignment_group")),
        "category": options.category,
        "cmdb_ci": text_of(incident.get("ci")),
    }
    levels = impact_and_urgency(incident)
    if levels is not None:
        body["impact"], body["urgency"] = levels
    return {name: value for name, value in body.items() if value}


def changes(message: Message, options: Options) -> dict[str, str]:
    """The PATCH body for an existing incident: a work note, and the state the transition
    moves it to."""
    body = {"work_notes": clip(note(message), TEXT_MAX)}
    state = _TARGET_STATES.get(message.transition)
    if state is not None:
        body["state"] = str(state.value)
    if state is State.RESOLVED:
        body["close_code"] = options.close_code
        body["close_notes"] = clip(message.body.strip() or message.title, TEXT_MAX)
    return body


def impact_and_urgency(incident: Mapping[str, Any]) -> tuple[str, str] | None:
    """Impact and urgency for the incident's priority (1..5, or "P1".."P5"); None if unknown."""
    for value in (incident.get("priority_level"), incident.get("priority")):
        if isinstance(value, str) and value.upper().removeprefix("P").isdigit():
            value = int(value.upper().removeprefix("P"))
        if isinstance(value, int) and not isinstance(value, bool) and value in _IMPACT_URGENCY:
            return _IMPACT_URGENCY[value]
    return None


# --- what comes back ----------------------------------------------------------------------


def error_message(body: object) -> str:
    """`message: detail` of `{"error": {"message", "detail"}, "status": "failure"}`."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return ""
    parts = [error.get("message"), error.get("detail")]
    return ": ".join(str(part) for part in parts if part)[:EXCERPT]


def _result(reply: Reply) -> Any:
    body = reply.json()
    return body.get("result") if isinstance(body, Mapping) else None


def _number(result: object, fallback: str) -> str:
    number = result.get("number") if isinstance(result, Mapping) else None
    return number if isinstance(number, str) and number else fallback


_SET_BY = {
    Transition.OPENED: ItsmState.OPEN,
    Transition.REOPENED: ItsmState.OPEN,
    Transition.ACKNOWLEDGED: ItsmState.ACKNOWLEDGED,
    Transition.RESOLVED: ItsmState.RESOLVED,
}


def ticket_state(transition: Transition) -> ItsmState | None:
    """The ticket state a delivered notification leaves behind (what `send` sets), so that
    polling tells a change made in ServiceNow from the bridge's own."""
    return _SET_BY.get(transition)
