"""The outbox through the API: notifications (filter by status, incident, target), dead
letters re-sent by hand, and the inbound endpoint an ITSM system calls when its ticket changes.

- `GET /api/v1/notifications?status=pending|sent|dead&incident_id=&target=&limit=`
- `GET /api/v1/notifications/{id}`
- `POST /api/v1/notifications/{id}/resend`: a dead letter goes back in the queue (409 if the
  notification is not a dead letter)
- `POST /api/v1/itsm/servicenow/{target}`: a ServiceNow business rule reports a ticket's new
  state (see `bridge.notify.servicenow_inbound` for the body and the script); 401, the same
  answer, for a wrong token and for a name that is no ServiceNow target (target names cannot be
  probed without a token)
"""

from __future__ import annotations

from aiohttp import web
from pydantic import SecretStr

from bridge.api.auth import same_secret
from bridge.api.params import BadRequest, choice, integer, json_object, record_id
from bridge.api.responses import error_response, json_response
from bridge.errors import Conflict, NotFound
from bridge.notify import channels, itsm, servicenow, servicenow_inbound
from bridge.runtime import RUNTIME
from bridge.store import outbox
from rules.ruleset import RuleSet

_STATUSES = {outbox.PENDING, outbox.SENT, outbox.DEAD}


def _limit(request: web.Request) -> int:
    try:
        limit = integer(request.query.get("limit", "100"))
    except ValueError:
        raise BadRequest("limit must be a whole number") from None
    if not 1 <= limit <= 1000:
        raise BadRequest("limit must be 1..1000")
    return limit


def _incident_filter(request: web.Request) -> int | None:
    value = request.query.get("incident_id")
    if value is None:
        return None
    try:
        return integer(value)
    except ValueError:
        raise BadRequest("incident_id must be a whole number") from None


async def list_notifications(request: web.Request) -> web.Response:
    try:
        status = choice(request, "status", _STATUSES)
        incident_id = _incident_filter(request)
        limit = _limit(request)
    except BadRequest as exc:
        return error_response(400, str(exc))
    target = request.query.get("target")
    async with request.app[RUNTIME].engine.connect() as conn:
        found = await outbox.listing(conn, status, incident_id, target, limit)
    return json_response({"notifications": found})


async def get_notification(request: web.Request) -> web.Response:
    notification_id = record_id(request, "notification_id", "notification")
    async with request.app[RUNTIME].engine.connect() as conn:
        found = await outbox.one(conn, notification_id)
    if found is None:
        raise NotFound(f"notification {notification_id} not found")
    return json_response(found)


async def resend(request: web.Request) -> web.Response:
    notification_id = record_id(request, "notification_id", "notification")
    runtime = request.app[RUNTIME]
    async with runtime.engine.begin() as conn:
        if await outbox.one(conn, notification_id) is None:
            raise NotFound(f"notification {notification_id} not found")
        if not await outbox.resend(conn, notification_id, runtime.clock.now()):
            raise Conflict(f"notification {notification_id} is not a dead letter")
        found = await outbox.one(conn, notification_id)
    runtime.dispatcher.wake()
    return json_response(found)


async def servicenow_update(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    name = request.match_info["target"]
    if not _token_matches(request, _inbound_token(runtime.rules, name)):
        return error_response(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
    try:
        body = await json_object(request)
    except BadRequest as exc:
        return error_response(400, str(exc))
    try:
        update = servicenow_inbound.parse_update(body)
    except ValueError as exc:
        return error_response(422, str(exc))
    result = await itsm.apply(runtime, name, update, "inbound")
    status = 404 if result is itsm.Result.UNKNOWN else 200
    return json_response({"status": "ok" if status == 200 else "error", "result": result}, status)


def _inbound_token(rules: RuleSet, name: str) -> SecretStr | None:
    """The `inbound_token` of the ServiceNow target `name`; None for any other name."""
    target = rules.target(name)
    if target is None or target.channel != "servicenow":
        return None
    options = channels.options(name, target.channel, target.options)
    assert isinstance(options, servicenow.Options)
    return options.inbound_token


def _token_matches(request: web.Request, expected: SecretStr | None) -> bool:
    if expected is None or not expected.get_secret_value():
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and same_secret(given.strip(), expected)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/notifications", list_notifications)
    app.router.add_get("/api/v1/notifications/{notification_id}", get_notification)
    app.router.add_post("/api/v1/notifications/{notification_id}/resend", resend)
    app.router.add_post("/api/v1/itsm/servicenow/{target}", servicenow_update)
