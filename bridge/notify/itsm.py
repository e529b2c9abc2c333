"""Ticket changes made in an ITSM system flow back into the bridge's incidents.

Input: an `ItsmUpdate` (from the inbound endpoint a ServiceNow business rule calls, or from
polling the tickets of open incidents) and the target it belongs to. Output: an operator
action on the incident the ticket was made for (acknowledge, resolve, resolve and close) with
the timeline source `itsm`, and no notification back to that same target (it knows already).
A ticket state with no bridge transition (new, or one the mapping does not know) changes
nothing. Counted in `bridge_itsm_updates_total{target,via,result}`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from datetime import datetime

from bridge.errors import Conflict, NotFound
from bridge.ingest import OperatorAction
from bridge.notify.base import ItsmState, ItsmUpdate
from bridge.runtime import Runtime
from bridge.store import outbox
from rules import incidents as incident_stage
from rules.incidents import Refusal, Transition
from rules.model import IncidentState, IncidentStatus, TimelineSource

_REF = re.compile(r"bridge-incident-(\d+)")


class Result(enum.StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"  # the incident is in that state already, or the state maps to none
    UNKNOWN = "unknown"  # no incident of the bridge's for this ticket
    REFUSED = "refused"  # the incident's state does not allow it (closed)


async def incident_of(runtime: Runtime, target: str, update: ItsmUpdate) -> int | None:
    found = _REF.fullmatch(update.correlation_id or "")
    if found is not None:
        return int(found.group(1))
    if update.external_id:
        async with runtime.engine.connect() as conn:
            return await outbox.incident_for_external(conn, target, update.external_id)
    return None


async def apply(
    runtime: Runtime, target: str, update: ItsmUpdate, via: str, known: str | None = None
) -> Result:
    """Apply a ticket's state. A poll passes the state the bridge last knew for the ticket
    (`known`): the same state again is no news (and must not undo a change the bridge made
    that the ticket was not told about, such as an unacknowledge)."""
    if via == "poll" and known == update.state:
        result = Result.UNCHANGED
    else:
        result = await _apply(runtime, target, update)
        if update.external_id and result is not Result.UNKNOWN:
            async with runtime.engine.begin() as conn:
                await outbox.set_ticket_state(conn, target, update.external_id, update.state)
    runtime.metrics.itsm_updates.labels(target, via, result).inc()
    return result


async def _apply(runtime: Runtime, target: str, update: ItsmUpdate) -> Result:
    if update.state is ItsmState.OPEN:
        return Result.UNCHANGED
    incident_id = await incident_of(runtime, target, update)
    if incident_id is None:
        return Result.UNKNOWN
    actor = f"{target}:{update.actor}" if update.actor else target
    changed: list[bool] = []
    step = _STEPS[update.state]

    def change(incident: IncidentState, now: datetime) -> Transition:
        decided = step(incident, actor, _comment(update), now)
        if not isinstance(decided, Refusal) and decided[1] is not None:
            changed.append(True)
        return decided

    action = OperatorAction(
        incident_id, str(update.state), change, TimelineSource.ITSM, quiet_target=target
    )
    try:
        await runtime.pipeline.act(action)
    except NotFound:
        return Result.UNKNOWN
    except Conflict:
        return Result.REFUSED
    return Result.APPLIED if changed else Result.UNCHANGED


def _comment(update: ItsmUpdate) -> str:
    ticket = update.number or update.external_id
    text = f"{ticket}: {update.comment}" if update.comment else ticket
    return text[:2000]


Step = Callable[[IncidentState, str, str, datetime], Transition]


def _acknowledge(incident: IncidentState, actor: str, comment: str, now: datetime) -> Transition:
    if incident.status is not IncidentStatus.NEW:
        return incident, None  # acknowledged already, or resolved: nothing to do
    return incident_stage.acknowledge(incident, actor, comment, now)


def _resolve(incident: IncidentState, actor: str, comment: str, now: datetime) -> Transition:
    if not incident.status.is_active:
        return incident, None
    return incident_stage.resolve(incident, actor, comment, now)


def _close(incident: IncidentState, actor: str, comment: str, now: datetime) -> Transition:
    """Closed there: an active incident resolves here (the bridge's auto-close closes it
    later, so that an alert firing again meanwhile reopens it); a resolved one closes."""
    if incident.status.is_active:
        return incident_stage.resolve(incident, actor, comment, now)
    if incident.status is IncidentStatus.RESOLVED:
        return incident_stage.close(incident, actor, comment, now)
    return incident, None


_STEPS: dict[ItsmState, Step] = {
    ItsmState.ACKNOWLEDGED: _acknowledge,
    ItsmState.RESOLVED: _resolve,
    ItsmState.CLOSED: _close,
}
