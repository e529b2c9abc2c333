"""`/api/v1/problems`: ITIL problems opened by the `problems` rules, with their incidents.

`PATCH /api/v1/problems/{id}` edits what people learn about a problem: its `status` (open,
known_error, resolved), `root_cause` and `workaround` texts.
"""

from __future__ import annotations

from aiohttp import web

from bridge.api.params import BadRequest, choice, json_object, paging, record_id, text
from bridge.api.responses import error_response, json_response
from bridge.errors import NotFound
from bridge.runtime import RUNTIME
from bridge.store import admin, reads
from rules.model import ProblemStatus

_STATUSES = {s.value for s in ProblemStatus}
_FILTERS = {"active", *_STATUSES}
_EDITABLE = ("status", "root_cause", "workaround")


async def list_problems(request: web.Request) -> web.Response:
    try:
        status = choice(request, "status", _FILTERS)
        limit, offset = paging(request)
    except BadRequest as exc:
        return error_response(400, str(exc))
    async with request.app[RUNTIME].engine.connect() as conn:
        found = await reads.list_problems(conn, status, limit, offset)
    return json_response({"problems": found})


async def get_problem(request: web.Request) -> web.Response:
    problem_id = record_id(request, "problem_id", "problem")
    async with request.app[RUNTIME].engine.connect() as conn:
        found = await reads.get_problem(conn, problem_id)
    if found is None:
        raise NotFound(f"problem {problem_id} not found")
    return json_response(found)


async def patch_problem(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    problem_id = record_id(request, "problem_id", "problem")
    try:
        body = await json_object(request)
        unknown = sorted(set(body) - set(_EDITABLE))
        if unknown:
            raise BadRequest(f"{unknown[0]}: not editable (use {', '.join(_EDITABLE)})")
        status = _status(body)
        root_cause = text(body, "root_cause", limit=20000) if "root_cause" in body else None
        workaround = text(body, "workaround", limit=20000) if "workaround" in body else None
    except BadRequest as exc:
        return error_response(422, str(exc))
    async with runtime.engine.begin() as conn:
        updated = await admin.update_problem(
            conn, problem_id, status, root_cause, workaround, runtime.clock.now()
        )
    if updated is None:
        raise NotFound(f"problem {problem_id} not found")
    async with runtime.engine.connect() as conn:
        found = await reads.get_problem(conn, problem_id)
    return json_response(found)


def _status(body: dict[str, object]) -> ProblemStatus | None:
    if "status" not in body:
        return None
    value = body["status"]
    if not isinstance(value, str) or value not in _STATUSES:
        raise BadRequest(f"status: must be one of {', '.join(sorted(_STATUSES))}")
    return ProblemStatus(value)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/problems", list_problems)
    app.router.add_get("/api/v1/problems/{problem_id}", get_problem)
    app.router.add_patch("/api/v1/problems/{problem_id}", patch_problem)
