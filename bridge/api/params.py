"""Query parameters and JSON bodies of the read and action API, checked the same way
everywhere: a bad value is a `BadRequest` whose message names the parameter."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bridge.errors import NotFound

MAX_LIMIT = 1000
# The largest whole number the databases store (SQLite INTEGER, PostgreSQL BIGINT): an id or
# offset past it would make the query fail, not just find nothing.
MAX_INTEGER = 2**63 - 1


class BadRequest(Exception):
    """A query parameter or body field is invalid; the message says which and why."""


def integer(text: str) -> int:
    """`text` as a whole number a query can take; ValueError when it is none or too big."""
    number = int(text)
    if abs(number) > MAX_INTEGER:
        raise ValueError(f"{number} is out of range")
    return number


def paging(request: web.Request) -> tuple[int, int]:
    try:
        limit = integer(request.query.get("limit", "100"))
        offset = integer(request.query.get("offset", "0"))
    except ValueError:
        raise BadRequest("limit and offset must be whole numbers") from None
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise BadRequest(f"limit must be 1..{MAX_LIMIT} and offset >= 0")
    return limit, offset


def choice(request: web.Request, name: str, allowed: set[str]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(sorted(allowed))}")
    return value


def record_id(request: web.Request, name: str, what: str) -> int:
    try:
        return integer(request.match_info[name])
    except ValueError:
        raise NotFound(f"{what} {request.match_info[name]!r} not found") from None


async def json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def text(body: dict[str, Any], name: str, *, required: bool = False, limit: int = 4000) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be a string")
    if "\x00" in value:
        raise BadRequest(f"{name}: must not contain a NUL character")
    if required and not value.strip():
        raise BadRequest(f"{name}: required")
    return value.strip()[:limit]
