"""The writes people make through the API, outside the pipeline: maintenance windows (create,
soft delete, list) and problem edits (status, root cause, workaround).

The pipeline never writes these columns (see `repository._update_problems`), so an edit here
and a batch in flight do not overwrite each other. `list_windows` also hands the API windows
to the engine, at start-up and in the `refresh_windows` job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store import reads
from bridge.store.tables import Timestamp, maintenance_windows, problems
from rules.model import ProblemStatus


async def update_problem(
    conn: AsyncConnection,
    problem_id: int,
    status: str | None,
    root_cause: str | None,
    workaround: str | None,
    now: datetime,
) -> dict[str, Any] | None:
    """Edit a problem (fields given as None stay; `status` is a `ProblemStatus` value); returns
    it as `reads.get_problem` does, or None if there is no such problem. Resolving keeps the
    first `resolved_at`; any other status clears it. Reopening while another problem of the key
    is active raises `IntegrityError`."""
    values: dict[str, Any] = {"updated_at": now}
    if status is not None:
        values["status"] = ProblemStatus(status)
        values["resolved_at"] = (
            func.coalesce(problems.c.resolved_at, literal(now, Timestamp))
            if values["status"] is ProblemStatus.RESOLVED
            else None
        )
    if root_cause is not None:
        values["root_cause"] = root_cause
    if workaround is not None:
        values["workaround"] = workaround
    result = await conn.execute(update(problems).where(problems.c.id == problem_id).values(values))
    if result.rowcount == 0:
        return None
    return await reads.get_problem(conn, problem_id)


async def insert_window(
    conn: AsyncConnection,
    name: str,
    spec: dict[str, Any],
    created_by: str,
    reason: str,
    change_ref: str,
    now: datetime,
) -> int:
    row = {
        "name": name,
        "spec": spec,
        "created_by": created_by,
        "reason": reason,
        "change_ref": change_ref,
        "created_at": now,
    }
    statement = maintenance_windows.insert().returning(maintenance_windows.c.id)
    result = await conn.execute(statement, row)
    return int(result.scalar_one())


async def delete_window(conn: AsyncConnection, window_id: int, by: str, now: datetime) -> bool:
    """Soft delete (kept for the audit trail); False if there is no such live window."""
    statement = (
        update(maintenance_windows)
        .where(maintenance_windows.c.id == window_id, maintenance_windows.c.deleted_at.is_(None))
        .values(deleted_at=now, deleted_by=by)
    )
    return (await conn.execute(statement)).rowcount > 0


async def list_windows(conn: AsyncConnection, include_deleted: bool) -> list[dict[str, Any]]:
    query = select(maintenance_windows).order_by(maintenance_windows.c.id)
    if not include_deleted:
        query = query.where(maintenance_windows.c.deleted_at.is_(None))
    return [{str(k): v for k, v in row._mapping.items()} for row in await conn.execute(query)]
