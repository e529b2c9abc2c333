"""How the writer tells a database outage (wait and retry: 503) from a refusal of what it sent
(a bug or bad data: the request at fault fails alone), and how it names an error without the
statement and its parameters (they hold alert data)."""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

# SQLSTATE classes where waiting and retrying helps: connection exception, transaction
# rollback (deadlock, serialization), invalid catalog (database gone), insufficient resources,
# operator intervention (shutdown, "cannot connect now"), system error.
_TRANSIENT_SQLSTATE = ("08", "40", "3D", "53", "57", "58")


class Unreachable(Exception):
    """The database is away (connection, disk, lock): the whole batch waits for a retry."""


UNREACHABLE = (Unreachable, OSError, asyncio.TimeoutError)


def is_transient(exc: SQLAlchemyError) -> bool:
    """Whether waiting helps: the database is away, not refusing what we sent."""
    if isinstance(exc, PoolTimeout | DisconnectionError):
        return True
    if not isinstance(exc, DBAPIError):
        return False  # compile or usage errors: a bug, not an outage
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATE)


def describe(exc: BaseException) -> str:
    """The driver's message without the statement and its parameters (they hold alert data)."""
    if isinstance(exc, Unreachable) and exc.__cause__ is not None:
        exc = exc.__cause__
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    first = str(original).splitlines()[0] if str(original) else ""
    sqlstate = getattr(original, "sqlstate", None)  # PostgreSQL's error code, e.g. 53100
    code = f" [SQLSTATE {sqlstate}]" if isinstance(sqlstate, str) else ""
    return f"{type(original).__name__}{code}: {first}"
