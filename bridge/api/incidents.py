"""Read API for incidents and alerts, and the operator actions on an incident: acknowledge,
unacknowledge, resolve, close, comment, assign, priority (each `POST .../{id}/{action}` with
`actor`; 409 when the incident's state does not allow it: nothing changes a closed incident,
and only a resolved one can be closed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from bridge.api.params import BadRequest, choice, json_object, paging, record_id, text
from bridge.api.responses import error_response, json_response
from bridge.errors import NotFound
from bridge.ingest import OperatorAction
from bridge.runtime import RUNTIME
from bridge.store import outbox, reads
from rules import incidents as incident_stage
from rules.model import AlertStatus, Hold, IncidentState, IncidentStatus

_INCIDENT_FILTERS = {"open", *(s.value for s in IncidentStatus)}
_ALERT_FILTERS = {s.value for s in AlertStatus}
_HOLD_FILTERS = {h.value for h in Hold}


def _incident_id(request: web.Request) -> int:
    return record_id(request, "incident_id", "incident")


async def list_incidents(request: web.Request) -> web.Response:
    try:
        status = choice(request, "status", _INCIDENT_FILTERS)
        limit, offset = paging(request)
    except BadRequest as exc:
        return error_response(400, str(exc))
    async with request.app[RUNTIME].engine.connect() as conn:
        found = await reads.list_incidents(conn, status, limit, offset)
    return json_response({"incidents": found})


async def get_incident(request: web.Request) -> web.Response:
    incident_id = _incident_id(request)
    async with request.app[RUNTIME].engine.connect() as conn:
        found = await reads.get_incident(conn, incident_id)
        if found is None:
            raise NotFound(f"incident {incident_id} not found")
        # Who was told about it, and every notification queued for it.
        found["targets"] = await outbox.targets_of(conn, incident_id)
        found["notifications"] = await outbox.listing(conn, None, incident_id, None, 1000)
    return json_response(found)


async def list_alerts(request: web.Request) -> web.Response:
    try:
        status = choice(request, "status", _ALERT_FILTERS)
        limit, offset = paging(request)
        hold = choice(request, "hold", _HOLD_FILTERS)
    except BadRequest as exc:
        return error_response(400, str(exc))
    source = request.query.get("source")
    async with request.app[RUNTIME].engine.connect() as conn:
        found = await reads.list_alerts(conn, status, source, limit, offset, hold=hold)
    return json_response({"alerts": found})


Transition = incident_stage.Transition
# Each action: the body fields it reads (besides `actor`) -> the transition it applies.
Build = Callable[[str, dict[str, Any]], Callable[[IncidentState, datetime], Transition]]


def _note(verb: Callable[..., Transition]) -> Build:
    """acknowledge, unacknowledge, resolve, close: an actor and an optional comment."""

    def build(actor: str, body: dict[str, Any]) -> Callable[[IncidentState, datetime], Transition]:
        note = text(body, "comment")
        return lambda incident, now: verb(incident, actor, note, now)

    return build


def _comment(actor: str, body: dict[str, Any]) -> Callable[[IncidentState, datetime], Transition]:
    note = text(body, "comment", required=True)
    return lambda incident, now: incident_stage.comment(incident, actor, note, now)


def _assign(actor: str, body: dict[str, Any]) -> Callable[[IncidentState, datetime], Transition]:
    if "assignment_group" not in body and "assignee" not in body:
        raise BadRequest("give assignment_group, assignee or both (empty unassigns)")
    group = text(body, "assignment_group", limit=200)
    assignee = text(body, "assignee", limit=200)
    return lambda incident, now: incident_stage.assign(incident, actor, group, assignee, now)


def _priority(actor: str, body: dict[str, Any]) -> Callable[[IncidentState, datetime], Transition]:
    value = body.get("priority")
    number = value[1:] if isinstance(value, str) and value[:1] in "Pp" else value
    if isinstance(number, str) and number.isdigit():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 5:
        raise BadRequest("priority: required, 1 to 5 (or P1 to P5)")
    why = text(body, "comment")
    return lambda incident, now: incident_stage.set_priority(incident, actor, number, why, now)


ACTIONS: dict[str, Build] = {
    "acknowledge": _note(incident_stage.acknowledge),
    "unacknowledge": _note(incident_stage.unacknowledge),
    "resolve": _note(incident_stage.resolve),
    "close": _note(incident_stage.close),
    "comment": _comment,
    "assign": _assign,
    "priority": _priority,
}


def _action(verb: str) -> Any:
    build = ACTIONS[verb]

    async def handle(request: web.Request) -> web.Response:
        incident_id = _incident_id(request)
        try:
            body = await json_object(request)
            actor = text(body, "actor", required=True, limit=200)
            apply = build(actor, body)
        except BadRequest as exc:
            return error_response(422, str(exc))
        action = OperatorAction(incident_id, verb, apply)
        updated = await request.app[RUNTIME].pipeline.act(action)
        return json_response(
            {"id": updated.id, "status": updated.status.value,
             "priority": f"P{updated.priority}", "assignment_group": updated.assignment_group,
             "assignee": updated.assignee, "acknowledged_at": updated.acknowledged_at,
             "resolved_at": updated.resolved_at, "closed_at": updated.closed_at}
        )  # fmt: skip

    return handle


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_get("/api/v1/incidents/{incident_id}", get_incident)
    for verb in ACTIONS:
        app.router.add_post(f"/api/v1/incidents/{{incident_id}}/{verb}", _action(verb))
    app.router.add_get("/api/v1/alerts", list_alerts)
