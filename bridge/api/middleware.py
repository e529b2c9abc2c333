"""The HTTP boundary: maps the error tree to statuses; the last resort for anything else."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bridge.api.responses import error_response, store_unavailable
from bridge.errors import Conflict, NotFound, StoreRefused, StoreUnavailable
from bridge.runtime import RUNTIME

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)
    except NotFound as exc:
        return error_response(404, str(exc))
    except Conflict as exc:
        return error_response(409, str(exc))
    except StoreRefused as exc:
        log.error("write refused on %s %s: %s", request.method, request.path, exc)
        request.app[RUNTIME].metrics.internal_errors.labels("writer").inc()
        return error_response(500, "the database refused the write")
    except StoreUnavailable:
        return store_unavailable(request.app[RUNTIME])
    except (SQLAlchemyError, OSError) as exc:
        log.warning("database error on %s %s: %s", request.method, request.path, exc)
        request.app[RUNTIME].metrics.database_errors.labels("read").inc()
        return store_unavailable(request.app[RUNTIME])
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        request.app[RUNTIME].metrics.internal_errors.labels("http").inc()
        return error_response(500, "internal error")
