"""ServiceNow tickets read back: a ticket's state in the bridge's terms (`ItsmUpdate`), from
the update a business rule posts to the bridge (`parse_update`) or from polling the tickets
(`poll`). `bridge.notify.itsm` applies the updates; `bridge.notify.servicenow` sends.

The business rule below POSTs this JSON object to the bridge:

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

from collections.abc import Mapping, Sequence
from typing import Annotated

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from bridge.notify.base import ItsmState, ItsmUpdate, Rejected, Retry
from bridge.notify.servicenow import Options, ServiceNowChannel, State, make

POLL_CHUNK = 100
_POLL_FIELDS = "sys_id,number,correlation_id,state,sys_updated_by,close_notes"

_ITSM_STATES: dict[int, ItsmState] = {
    State.NEW: ItsmState.OPEN,
    State.IN_PROGRESS: ItsmState.ACKNOWLEDGED,
    State.ON_HOLD: ItsmState.ACKNOWLEDGED,
    State.RESOLVED: ItsmState.RESOLVED,
    State.CLOSED: ItsmState.CLOSED,
    State.CANCELED: ItsmState.CLOSED,
}


async def poll(
    options: Options, session: aiohttp.ClientSession, sys_ids: Sequence[str]
) -> list[ItsmUpdate] | Retry | Rejected:
    """The state of the incidents `sys_ids` (one GET per `POLL_CHUNK` of them)."""
    channel = make(options, session)
    wanted = list(dict.fromkeys(sys_ids))
    updates: list[ItsmUpdate] = []
    for start in range(0, len(wanted), POLL_CHUNK):
        found = await _read(channel, wanted[start : start + POLL_CHUNK])
        if isinstance(found, Retry | Rejected):
            return found
        updates.extend(found)
    return updates


async def _read(
    channel: ServiceNowChannel, sys_ids: Sequence[str]
) -> list[ItsmUpdate] | Retry | Rejected:
    """The current state of up to `POLL_CHUNK` incidents."""
    query = {"sysparm_query": "sys_idIN" + ",".join(sys_ids), "sysparm_fields": _POLL_FIELDS}
    query |= {"sysparm_display_value": "false", "sysparm_limit": str(POLL_CHUNK)}
    records = await channel.records(query)
    if isinstance(records, Retry | Rejected):
        return records
    try:
        return [_as_update(_Record.model_validate(record)) for record in records]
    except ValidationError as exc:
        return Rejected(f"unexpected record in ServiceNow's answer: {_problems(exc)}")


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
