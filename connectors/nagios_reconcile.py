"""Nagios state (`status.dat`) compared with the bridge's alerts -> the events that were lost.

Nagios notifies once and never retries; a notification lost on the way (bridge down longer than
the sender's retries, a broken contact) would leave the bridge wrong until the next state change.
The reconciliation job (`bridge/jobs.py`) reads `status.dat` on an interval and feeds these
events through the normal pipeline.

Input: the objects of `connectors.nagios_status.parse_status`, the fingerprints of the alerts of
source "nagios" the bridge has firing, and `now`. Output: one STATE event per object whose state
the bridge has wrong:
* a host or service in a HARD problem state that the bridge does not have firing -> firing;
* an object in state OK/UP that the bridge has firing -> resolved.
Soft states are left alone (Nagios has not decided yet), and objects the bridge agrees with give
no event, so a poll that finds nothing wrong writes nothing. Fingerprints, alertname and the
severity table are the webhook's (`connectors.nagios`), so both paths name the same alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from datetime import datetime

from connectors.labels import label_name
from connectors.nagios import ANNOTATION_VARIABLES, HOST_ALERTNAME, SEVERITIES, SOURCE
from connectors.nagios_status import ObjectState, StateType
from rules.model import AlertStatus, Event


def reconcile(states: Iterable[ObjectState], firing: Collection[str], now: datetime) -> list[Event]:
    events: list[Event] = []
    for state in states:
        known = state.fingerprint in firing
        if state.is_problem and state.state_type is StateType.HARD and not known:
            events.append(_event(state, AlertStatus.FIRING, now))
        elif not state.is_problem and known:
            events.append(_event(state, AlertStatus.RESOLVED, now))
    return events


def _event(state: ObjectState, status: AlertStatus, now: datetime) -> Event:
    problem_id = state.current_problem_id or state.last_problem_id
    digest = hashlib.blake2b(
        f"status.dat|{state.fingerprint}|{status}|{state.state}|{problem_id}".encode(),
        digest_size=8,
    ).hexdigest()
    return Event(
        source=SOURCE,
        fingerprint=state.fingerprint,
        status=status,
        labels=_labels(state, problem_id),
        annotations=_annotations(state),
        severity=SEVERITIES[state.object_type].get(state.state, SEVERITIES["service"]["UNKNOWN"]),
        starts_at=state.last_state_change or now,
        ends_at=now if status is AlertStatus.RESOLVED else None,
        expires_at=None,
        generator_url="",
        group_key=None,
        receiver=None,
        digest=digest,
    )


def _annotations(state: ObjectState) -> dict[str, str]:
    found = {"summary": state.plugin_output, "state": state.state, "origin": "status.dat"}
    for variable, value in state.custom_variables.items():
        annotation = ANNOTATION_VARIABLES.get(label_name(variable))
        if annotation and value:
            found[annotation] = value
    return found


def _labels(state: ObjectState, problem_id: int) -> dict[str, str]:
    labels = {
        name: value
        for variable, value in state.custom_variables.items()
        if (name := label_name(variable)) and value and name not in ANNOTATION_VARIABLES
    }
    labels.update(
        alertname=state.service or HOST_ALERTNAME,
        host=state.host,
        nagios_object=state.object_type,
    )
    if state.service:
        labels["service"] = state.service
    if problem_id:
        labels["problem_id"] = str(problem_id)
    return labels
