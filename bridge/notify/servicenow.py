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
  equivalent; give the bridge a dedicated user so the business rule below can skip its updates.

Inbound (`parse_update`, `state_of`, `poll`): a ServiceNow ticket's state in the bridge's terms
(`ItsmUpdate`). The business rule below POSTs this JSON object to the bridge:

    {"sys_id": "<32 hex>", "number": "INC0010001", "correlation_id": "bridge-incident-42",
     "state": "6", "sys_updated_by": "jdoe",
     "work_notes": "<latest work note, optional>", "close_notes": "<optional>"}

`state` is the numeric value, as a string or a number; `sys_updated_by` becomes the update's
actor, `close_notes` (else `work_notes`) its comment. `poll` reads the same fields but work
notes for up to 100 sys_ids per request; a deleted or unreadable record is absent from its
answer, so it yields no update.

Sample business rule (Incident table; When: after; Update; Advanced; the condition keeps it to
the bridge's tickets and skips the bridge's own changes). `executeAsync()` queues the call
through the ECC queue so a slow bridge never delays the person saving the form:

    // Name: alert-bridge state sync      Table: Incident [incident]
    // When: after    Update: true        Advanced: true
    // Condition:
    //   current.state.changes() && current.correlation_id.startsWith('bridge-incident-')
    //     && gs.getUserName() != 'alert.bridge'
    (function executeRule(current, previous) {
        var target = 'servicenow';  // the bridge's target name for this instance
        var request = new sn_ws.RESTMessageV2();
        request.setEndpoint('https://bridge.example.com/api/v1/itsm/servicenow/' + target);
        request.setHttpMethod('POST');
        request.setRequestHeader('Content-Type', 'application/json');
        request.setRequestHeader('Accept', 'application/json');
        // A system property only admins can read; never write the token into the script.
        request.setRequestHeader('Authorization',
            'Bearer ' + gs.getProperty('x_alert_bridge.token'));
        request.setRequestBody(JSON.stringify({
            sys_id: current.getUniqueValue(),
            number: current.getValue('number'),
            correlation_id: current.getValue('correlation_id'),
            state: current.getValue('state'),
            sys_updated_by: current.getValue('sys_updated_by'),
            work_notes: current.work_notes.getJournalEntry(1),
            close_notes: current.getValue('close_notes') || ''
        }));
        request.setHttpTimeout(10000);
        request.executeAsync();
    })(current, previous);
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Self
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge.notify.base import (
    Delivered,
    ItsmState,
    ItsmUpdate,
    Message,
    Outcome,
    Rejected,
    Retry,
    Transition,
)
from bridge.notify.http import Reply, classify, request, sign_in_problem
from bridge.notify.http import authorization as authorization_header

TABLE = "/api/now/table/incident"
CORRELATION_DISPLAY = "alert-bridge"
POLL_CHUNK = 100
SHORT_DESCRIPTION_MAX = 160
TEXT_MAX = 4000  # the default length of description, close_notes and journal input
_FIELDS = "sys_id,number,state"
_POLL_FIELDS = "sys_id,number,correlation_id,state,sys_updated_by,close_notes"
_SHOWN_ALERTS = 10
_EXCERPT = 300


class State(enum.IntEnum):
    """The incident `state` values of ServiceNow's default state model."""

    NEW = 1
    IN_PROGRESS = 2
    ON_HOLD = 3
    RESOLVED = 6
    CLOSED = 7
    CANCELED = 8


_ITSM_STATES: dict[int, ItsmState] = {
    State.NEW: ItsmState.OPEN,
    State.IN_PROGRESS: ItsmState.ACKNOWLEDGED,
    State.ON_HOLD: ItsmState.ACKNOWLEDGED,
    State.RESOLVED: ItsmState.RESOLVED,
    State.CLOSED: ItsmState.CLOSED,
    State.CANCELED: ItsmState.CLOSED,
}
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

    instance_url: str  # https://dev1234.service-now.com
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

    @field_validator("instance_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
            raise ValueError("must be the base URL, like https://dev1234.service-now.com")
        return value

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> Self:
        problem = sign_in_problem(self.username, self.password, self.token)
        messages = {
            "not both": "give either username and password, or token, not both",
            "basic auth needs both": "basic auth needs both username and password",
            "none given": "give username and password, or token (OAuth bearer)",
        }
        if problem is not None:
            raise ValueError(messages[problem])
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

    async def read(self, sys_ids: Sequence[str]) -> list[ItsmUpdate] | Retry | Rejected:
        """The current state of up to `POLL_CHUNK` incidents."""
        query = {"sysparm_query": "sys_idIN" + ",".join(sys_ids), "sysparm_fields": _POLL_FIELDS}
        query |= {"sysparm_display_value": "false", "sysparm_limit": str(POLL_CHUNK)}
        records = await self._records(query)
        if isinstance(records, Retry | Rejected):
            return records
        try:
            return [_as_update(_Record.model_validate(record)) for record in records]
        except ValidationError as exc:
            return Rejected(f"unexpected record in ServiceNow's answer: {_problems(exc)}")

    async def _find(self, correlation: str) -> str | Retry | Rejected | None:
        """The sys_id of the active incident created for `correlation`, if there is one."""
        query = {"sysparm_query": f"correlation_id={correlation}^active=true"}
        records = await self._records(query | {"sysparm_fields": _FIELDS, "sysparm_limit": "1"})
        if isinstance(records, Retry | Rejected):
            return records
        sys_id = records[0].get("sys_id") if records else None
        return sys_id if isinstance(sys_id, str) and sys_id else None

    async def _records(
        self, query: Mapping[str, str]
    ) -> list[Mapping[str, Any]] | Retry | Rejected:
        reply = await self._exchange("GET", f"{TABLE}?{urlencode(query)}")
        if isinstance(reply, Retry | Rejected):
            return reply
        result = _result(reply)
        if not isinstance(result, list) or not all(isinstance(r, Mapping) for r in result):
            return Retry(f"unexpected answer to a query: {reply.text[:_EXCERPT].strip()!r}")
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
            return Retry(f"HTTP {reply.status} without a sys_id: {reply.text[:_EXCERPT].strip()!r}")
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
        headers = {"Accept": "application/json", "Authorization": authorization(options)}
        url, timeout = options.instance_url + path, options.timeout
        reply = await request(
            self.session, method, url, body=body, headers=headers, timeout=timeout
        )
        if isinstance(reply, Retry):
            return reply
        return failure(reply) or reply


def make(options: Options, session: aiohttp.ClientSession) -> ServiceNowChannel:
    return ServiceNowChannel(options, session)


async def poll(
    options: Options, session: aiohttp.ClientSession, sys_ids: Sequence[str]
) -> list[ItsmUpdate] | Retry | Rejected:
    """The state of the incidents `sys_ids` (one GET per `POLL_CHUNK` of them)."""
    channel = make(options, session)
    wanted = list(dict.fromkeys(sys_ids))
    updates: list[ItsmUpdate] = []
    for start in range(0, len(wanted), POLL_CHUNK):
        found = await channel.read(wanted[start : start + POLL_CHUNK])
        if isinstance(found, Retry | Rejected):
            return found
        updates.extend(found)
    return updates


# --- what is sent -------------------------------------------------------------------------


def correlation_id(message: Message) -> str:
    """`bridge-incident-<id>`: the incident part of the notification key."""
    incident_id = message.incident.get("id")
    if incident_id is None:
        return message.key.partition(":")[0]
    return f"bridge-incident-{incident_id}"


def new_incident(message: Message, options: Options) -> dict[str, str]:
    incident = message.incident
    body = {
        "short_description": _clip(message.title, SHORT_DESCRIPTION_MAX),
        "description": _clip(description(message), TEXT_MAX),
        "correlation_id": correlation_id(message),
        "correlation_display": CORRELATION_DISPLAY,
        "caller_id": options.caller_id,
        "assignment_group": options.assignment_group or _text(incident.get("assignment_group")),
        "category": options.category,
        "cmdb_ci": _text(incident.get("ci")),
    }
    levels = impact_and_urgency(incident)
    if levels is not None:
        body["impact"], body["urgency"] = levels
    return {name: value for name, value in body.items() if value}


def changes(message: Message, options: Options) -> dict[str, str]:
    """The PATCH body for an existing incident: a work note, and the state the transition
    moves it to."""
    body = {"work_notes": _clip(work_note(message), TEXT_MAX)}
    state = _TARGET_STATES.get(message.transition)
    if state is not None:
        body["state"] = str(state.value)
    if state is State.RESOLVED:
        body["close_code"] = options.close_code
        body["close_notes"] = _clip(message.body.strip() or message.title, TEXT_MAX)
    return body


def impact_and_urgency(incident: Mapping[str, Any]) -> tuple[str, str] | None:
    """Impact and urgency for the incident's priority (1..5, or "P1".."P5"); None if unknown."""
    for value in (incident.get("priority_level"), incident.get("priority")):
        if isinstance(value, str) and value.upper().removeprefix("P").isdigit():
            value = int(value.upper().removeprefix("P"))
        if isinstance(value, int) and not isinstance(value, bool) and value in _IMPACT_URGENCY:
            return _IMPACT_URGENCY[value]
    return None


def description(message: Message) -> str:
    parts = (message.body.strip(), facts(message), f"Incident in alert-bridge: {message.url}")
    return "\n\n".join(part for part in parts if part)


def facts(message: Message) -> str:
    incident = message.incident
    priority = incident.get("priority")
    rows = (
        ("Incident", f"{incident.get('id')} ({correlation_id(message)})"),
        ("Priority", f"P{priority}" if isinstance(priority, int) else _text(priority)),
        ("Severity", _text(incident.get("severity"))),
        ("Service", _text(incident.get("service"))),
        ("CI", _text(incident.get("ci"))),
        ("Opened at", _text(incident.get("opened_at"))),
        ("Alerts", _alert_counts(incident)),
    )
    lines = [f"{name}: {value}" for name, value in rows if value]
    lines.extend(_alert_line(alert) for alert in message.alerts[:_SHOWN_ALERTS])
    return "\n".join(lines)


def work_note(message: Message) -> str:
    incident = message.incident
    lines = [f"alert-bridge: {message.transition.value.replace('_', ' ')} - {message.title}"]
    if message.reason:
        lines.append(f"Reason: {message.reason}")
    for key, label in (("acknowledged_by", "Acknowledged by"), ("assignee", "Assignee")):
        if incident.get(key):
            lines.append(f"{label}: {incident[key]}")
    if message.body.strip():
        lines += ["", message.body.strip()]
    lines += ["", f"Incident in alert-bridge: {message.url}"]
    return "\n".join(lines)


def _alert_counts(incident: Mapping[str, Any]) -> str:
    return f"{incident.get('firing_alerts', '?')} firing of {incident.get('alert_count', '?')}"


def _alert_line(alert: Mapping[str, Any]) -> str:
    labels = alert.get("labels") or {}
    annotations = alert.get("annotations") or {}
    name = labels.get("alertname", "alert")
    where = f" on {labels['host']}" if labels.get("host") else ""
    summary = annotations.get("summary", "")
    status = alert.get("status", "")
    line = f"- [{status}] {alert.get('source', '')}: {name}{where}"
    return f"{line}: {summary}" if summary else line


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: object) -> str:
    return "" if value is None else str(value)


# --- what comes back ----------------------------------------------------------------------


def failure(reply: Reply) -> Retry | Rejected | None:
    """None for a 2xx; otherwise what `classify` decides, with ServiceNow's own error message
    as the reason when the body has one."""
    outcome = classify(reply)
    if isinstance(outcome, Delivered):
        return None
    message = error_message(reply.json())
    if not message:
        return outcome
    reason = f"HTTP {reply.status}: {message}"
    return Retry(reason, outcome.after) if isinstance(outcome, Retry) else Rejected(reason)


def error_message(body: object) -> str:
    """`message: detail` of `{"error": {"message", "detail"}, "status": "failure"}`."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return ""
    parts = [error.get("message"), error.get("detail")]
    return ": ".join(str(part) for part in parts if part)[:_EXCERPT]


def _result(reply: Reply) -> Any:
    body = reply.json()
    return body.get("result") if isinstance(body, Mapping) else None


def _number(result: object, fallback: str) -> str:
    number = result.get("number") if isinstance(result, Mapping) else None
    return number if isinstance(number, str) and number else fallback


def state_of(value: object) -> ItsmState:
    """ServiceNow's numeric incident state (int or numeric string) in the bridge's terms:
    1 New -> open; 2 In Progress, 3 On Hold -> acknowledged; 6 Resolved -> resolved;
    7 Closed, 8 Canceled -> closed; any other number (a custom state) -> open."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, int) and not isinstance(text, bool):
        number = text
    elif isinstance(text, str) and text.isdigit():
        number = int(text)
    else:
        raise ValueError(f"expected the numeric state value (1 New ... 8 Canceled), got {value!r}")
    return _ITSM_STATES.get(number, ItsmState.OPEN)


_State = Annotated[ItsmState, PlainValidator(state_of)]


class _Record(BaseModel):
    """An incident as a poll reads it (and as the business rule sends it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sys_id: Annotated[str, Field(min_length=1)]
    number: str = ""
    correlation_id: str = ""
    state: _State
    sys_updated_by: str = ""
    work_notes: str = ""
    close_notes: str = ""


class _Inbound(_Record):
    correlation_id: Annotated[str, Field(min_length=1)]


def parse_update(body: object) -> ItsmUpdate:
    """The update a ServiceNow business rule posts (shape in the module docstring).

    Raises ValueError naming every bad field."""
    if not isinstance(body, Mapping):
        raise ValueError(f"ServiceNow update: expected a JSON object, got {type(body).__name__}")
    try:
        record = _Inbound.model_validate(body)
    except ValidationError as exc:
        raise ValueError(f"ServiceNow update: {_problems(exc)}") from None
    return _as_update(record)


def _as_update(record: _Record) -> ItsmUpdate:
    return ItsmUpdate(
        external_id=record.sys_id,
        correlation_id=record.correlation_id,
        state=record.state,
        actor=record.sys_updated_by,
        comment=record.close_notes or record.work_notes,
        number=record.number,
    )


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


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
