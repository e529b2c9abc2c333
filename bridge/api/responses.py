"""JSON responses (orjson) and the error body every non-2xx answer shares."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bridge.runtime import Runtime


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload, option=orjson.OPT_NAIVE_UTC),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return json_response({"status": "error", "error": message, **extra}, status, headers)


def store_unavailable(runtime: Runtime) -> web.Response:
    seconds = max(1, int(runtime.settings.retry_after.total_seconds()))
    return error_response(
        503, "the database is unavailable; retry later", {"Retry-After": str(seconds)}
    )
