"""Nagios notifications -> events, proven by the captured request bodies."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors import nagios
from connectors.labels import LABEL_NAME_PATTERN
from connectors.parsed import BodyError, RejectReason
from rules.model import AlertStatus, Event, EventKind, Severity

NAGIOS = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "captured" / "nagios"
FILES = sorted(path.name for path in NAGIOS.glob("nagios-*.json"))
NOW = datetime(2026, 11, 23, 20, 5, 0, tzinfo=UTC)

DB_PROBLEM = "nagios-01-service-problem-e2e-db-01-postgresql-critical.json"
DISK_PROBLEM = "nagios-02-service-problem-e2e-web-01-disk-var-warning.json"
HTTP_PROBLEM = "nagios-03-service-problem-e2e-web-01-http-critical.json"
HTTP_ACK = "nagios-04-service-acknowledgement-e2e-web-01-http-critical.json"
DB_CUSTOM = "nagios-05-service-custom-e2e-db-01-postgresql-critical.json"
DB_DOWNTIME = "nagios-06-service-downtimestart-e2e-db-01-postgresql-critical.json"
QUEUE_PROBLEM = "nagios-07-service-problem-e2e-web-01-queue-consumer-critical.json"
QUEUE_RECOVERY = "nagios-08-service-recovery-e2e-web-01-queue-consumer-ok-n2.json"
QUEUE_PROBLEM_AGAIN = "nagios-09-service-problem-e2e-web-01-queue-consumer-critical.json"
QUEUE_FLAPPING = "nagios-10-service-flappingstart-e2e-web-01-queue-consumer-ok.json"
APP_UNREACHABLE = "nagios-11-host-problem-e2e-app-01-unreachable.json"
DB_HOST_DOWN = "nagios-12-host-problem-e2e-db-01-down.json"
DB_HOST_ACK = "nagios-13-host-acknowledgement-e2e-db-01-down.json"
APP_RECOVERY = "nagios-14-host-recovery-e2e-app-01-up-n2.json"
DB_HOST_RECOVERY = "nagios-15-host-recovery-e2e-db-01-up-n2.json"
HTTP_RECOVERY = "nagios-16-service-recovery-e2e-web-01-http-ok-n2.json"
DISK_REPEAT = "nagios-17-service-problem-e2e-web-01-disk-var-warning-n2.json"
DB_DOWNTIME_END = "nagios-18-service-downtimeend-e2e-db-01-postgresql-critical.json"
DISK_RECOVERY = "nagios-19-service-recovery-e2e-web-01-disk-var-ok-n3.json"
DB_RECOVERY = "nagios-20-service-recovery-e2e-db-01-postgresql-ok-n2.json"
QUEUE_FLAPPING_STOP = "nagios-21-service-flappingstop-e2e-web-01-queue-consumer-ok-n0.json"
ENV_DISK_PROBLEM = "nagios-envmode-01-service-problem-e2e-web-01-disk-var-warning.json"
ENV_HTTP_ACK = "nagios-envmode-04-service-acknowledgement-e2e-web-01-http-critical.json"
ENV_DISK_REPEAT = "nagios-envmode-13-service-problem-e2e-web-01-disk-var-warning-n2.json"
ENV_DB_DOWNTIME_END = "nagios-envmode-14-service-downtimeend-e2e-db-01-postgresql-ok-n0.json"

FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED


def load(name: str) -> Any:
    return json.loads((NAGIOS / name).read_text())


def events(name: str) -> list[Event]:
    return nagios.parse(load(name), NOW).events


def only(name: str) -> Event:
    [event] = events(name)
    return event


def test_the_captures_are_there() -> None:
    assert len(FILES) == 25


# What every capture becomes: (kind, status, severity, fingerprint, problem_id) per event.
DB, DISK, HTTP = (
    "service:e2e-db-01/PostgreSQL",
    "service:e2e-web-01/Disk /var",
    "service:e2e-web-01/HTTP",
)
QUEUE, APP, DB_HOST = "service:e2e-web-01/Queue consumer", "host:e2e-app-01", "host:e2e-db-01"
K, S = EventKind, Severity
EXPECTED: dict[str, list[tuple[EventKind, AlertStatus, Severity, str, str]]] = {
    DB_PROBLEM: [(K.STATE, FIRING, S.CRITICAL, DB, "3")],
    DISK_PROBLEM: [(K.STATE, FIRING, S.WARNING, DISK, "1")],
    HTTP_PROBLEM: [(K.STATE, FIRING, S.CRITICAL, HTTP, "2")],
    HTTP_ACK: [(K.ACKNOWLEDGE, FIRING, S.CRITICAL, HTTP, "2")],
    DB_CUSTOM: [(K.COMMENT, FIRING, S.CRITICAL, DB, "3")],
    DB_DOWNTIME: [(K.MAINTENANCE_START, FIRING, S.CRITICAL, DB, "3")],
    QUEUE_PROBLEM: [(K.STATE, FIRING, S.CRITICAL, QUEUE, "4")],
    QUEUE_RECOVERY: [(K.STATE, RESOLVED, S.INFO, QUEUE, "4")],
    QUEUE_PROBLEM_AGAIN: [(K.STATE, FIRING, S.CRITICAL, QUEUE, "5")],
    QUEUE_FLAPPING: [(K.FLAPPING_START, RESOLVED, S.INFO, QUEUE, "5")],  # last check was OK
    APP_UNREACHABLE: [(K.STATE, FIRING, S.MAJOR, APP, "7")],
    DB_HOST_DOWN: [(K.STATE, FIRING, S.CRITICAL, DB_HOST, "6")],
    DB_HOST_ACK: [(K.ACKNOWLEDGE, FIRING, S.CRITICAL, DB_HOST, "6")],
    APP_RECOVERY: [(K.STATE, RESOLVED, S.INFO, APP, "7")],
    DB_HOST_RECOVERY: [(K.STATE, RESOLVED, S.INFO, DB_HOST, "6")],
    HTTP_RECOVERY: [(K.STATE, RESOLVED, S.INFO, HTTP, "2")],
    DISK_REPEAT: [(K.STATE, FIRING, S.WARNING, DISK, "1")],
    DB_DOWNTIME_END: [(K.MAINTENANCE_END, FIRING, S.CRITICAL, DB, "3")],
    DISK_RECOVERY: [(K.STATE, RESOLVED, S.INFO, DISK, "1")],
    DB_RECOVERY: [(K.STATE, RESOLVED, S.INFO, DB, "3")],
    QUEUE_FLAPPING_STOP: [
        (K.FLAPPING_STOP, RESOLVED, S.INFO, QUEUE, "5"),
        (K.STATE, RESOLVED, S.INFO, QUEUE, "5"),  # its RECOVERY was suppressed while flapping
    ],
    ENV_DISK_PROBLEM: [(K.STATE, FIRING, S.WARNING, DISK, "1")],
    ENV_HTTP_ACK: [(K.ACKNOWLEDGE, FIRING, S.CRITICAL, HTTP, "2")],
    ENV_DISK_REPEAT: [(K.STATE, FIRING, S.WARNING, DISK, "1")],
    ENV_DB_DOWNTIME_END: [
        (K.MAINTENANCE_END, RESOLVED, S.INFO, DB, "3"),
        (K.STATE, RESOLVED, S.INFO, DB, "3"),  # recovered inside the downtime
    ],
}


def test_every_capture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == FILES


@pytest.mark.parametrize("name", FILES)
def test_every_capture_parses_to_the_expected_events(name: str) -> None:
    parsed = nagios.parse(load(name), NOW)
    assert parsed.rejects == []
    assert parsed.items == 1
    assert [
        (e.kind, e.status, e.severity, e.fingerprint, e.labels["problem_id"]) for e in parsed.events
    ] == EXPECTED[name]


@pytest.mark.parametrize("name", FILES)
def test_every_event_has_valid_labels_and_consistent_times(name: str) -> None:
    body = load(name)
    for event in events(name):
        assert event.source == "nagios"
        assert all(re.match(LABEL_NAME_PATTERN, label) for label in event.labels)
        assert all(event.labels.values())
        assert all(event.annotations.values())
        assert event.labels["host"] == body["HOSTNAME"]
        assert event.labels["nagios_object"] == body["object_type"]
        assert event.expires_at is None
        assert event.group_key is None
        assert event.receiver is None
        assert event.ends_at == (NOW if event.status is RESOLVED else None)
        assert event.starts_at <= NOW


def test_a_service_problem() -> None:
    event = only(DB_PROBLEM)
    assert event.labels == {
        "alertname": "PostgreSQL",
        "host": "e2e-db-01",
        "service": "PostgreSQL",
        "nagios_object": "service",
        "hostgroups": "e2e-db,e2e-all",
        "servicegroups": "e2e-storage,e2e-customer-facing",
        "problem_id": "3",
        "team": "dba",
    }
    assert event.annotations == {
        "summary": "CRITICAL - could not connect to server: Connection refused",
        "description": "Is the server running on host 127.0.0.1 and accepting TCP/IP connections"
        " on port 5433?\nlast successful connection: 4 minutes ago",
        "display_name": "PostgreSQL",
        "state": "CRITICAL",
        "state_type": "HARD",
        "check_command": "e2e-state!svc-db-pgsql",
        "address": "127.0.0.1",
        "runbook_url": "https://runbooks.e2e.example/nagios",
    }
    assert event.starts_at == NOW  # SERVICEDURATIONSEC 0
    assert event.generator_url == ""
    assert (event.actor, event.message) == ("", "")


def test_perfdata_and_urls_are_annotations() -> None:
    disk = only(DISK_PROBLEM)
    assert disk.annotations["perfdata"] == "/var=9188MB;9000;9500;0;10000"
    # Nagios turned the plugin's ";" into ":" before the macro was expanded.
    assert disk.annotations["summary"] == "DISK WARNING - free space: /var 812 MB (8% inode=91%):"
    http = only(HTTP_PROBLEM)
    assert http.generator_url == "https://grafana.e2e.example/d/http"
    assert http.annotations["action_url"] == "https://grafana.e2e.example/d/http"
    assert http.annotations["notes_url"] == "https://wiki.e2e.example/http"
    assert http.annotations["display_name"] == "HTTP on :80"


def test_a_host_problem() -> None:
    event = only(APP_UNREACHABLE)
    assert event.labels == {
        "alertname": "HostDown",
        "host": "e2e-app-01",
        "nagios_object": "host",
        "hostgroups": "e2e-all",
        "problem_id": "7",
        "team": "infra",
    }
    assert event.annotations["state"] == "UNREACHABLE"
    assert event.annotations["check_command"] == "e2e-state!host-$HOSTNAME$"
    assert "runbook_url" not in event.annotations  # a host has no service variables


def test_host_problem_and_recovery_share_alertname_and_problem_id() -> None:
    for problem, recovery in ((APP_UNREACHABLE, APP_RECOVERY), (DB_HOST_DOWN, DB_HOST_RECOVERY)):
        before, after = only(problem), only(recovery)
        assert load(recovery)["HOSTPROBLEMID"] == "0"  # the id moved to LASTHOSTPROBLEMID
        assert before.labels == after.labels
        assert before.fingerprint == after.fingerprint


@pytest.mark.parametrize(
    ("name", "actor", "message"),
    [
        (
            HTTP_ACK,
            "alice",
            "Investigating: web-01 refuses connections on :80 (its the load balancer)",
        ),
        (ENV_HTTP_ACK, "alice", 'It\'s the "lb-02" pool & <eu-west>; cost $0 | see ~ops'),
        (DB_HOST_ACK, "carol", "PSU replaced, host is rebooting"),
        (DB_CUSTOM, "dave", "Heads-up: failover to db-02 is being prepared"),
        (DB_DOWNTIME, "bob", "Planned maintenance: PostgreSQL minor upgrade"),
        (DB_DOWNTIME_END, "bob", "Planned maintenance: PostgreSQL minor upgrade"),
    ],
)
def test_actions_carry_author_and_comment(name: str, actor: str, message: str) -> None:
    event = events(name)[0]
    assert (event.actor, event.message) == (actor, message)


def test_an_acknowledgement_falls_back_to_the_ack_macros() -> None:
    body = load(DB_HOST_ACK)
    body["NOTIFICATIONAUTHOR"] = body["NOTIFICATIONCOMMENT"] = ""
    [event] = nagios.parse(body, NOW).events
    assert (event.actor, event.message) == ("carol", "PSU replaced, host is rebooting")


def test_a_recovery_inside_downtime_resolves_the_alert() -> None:
    end, state = events(ENV_DB_DOWNTIME_END)
    assert (end.kind, state.kind) == (EventKind.MAINTENANCE_END, EventKind.STATE)
    assert state.status is RESOLVED
    assert state.ends_at == NOW
    assert (state.actor, state.message) == ("", "")  # the resolution is nobody's action
    assert end.digest != state.digest
    assert state.fingerprint == only(DB_PROBLEM).fingerprint


def test_a_cancelled_downtime_on_a_healthy_host_resolves_too() -> None:
    body = load(DB_HOST_RECOVERY) | {"NOTIFICATIONTYPE": "DOWNTIMECANCELLED"}
    kinds = [(e.kind, e.status) for e in nagios.parse(body, NOW).events]
    assert kinds == [(EventKind.MAINTENANCE_END, RESOLVED), (EventKind.STATE, RESOLVED)]


@pytest.mark.parametrize(
    ("notification_type", "kind"),
    [
        ("FLAPPINGDISABLED", EventKind.FLAPPING_STOP),
        ("DOWNTIMECANCELLED", EventKind.MAINTENANCE_END),
        ("CUSTOM", EventKind.COMMENT),
    ],
)
def test_types_without_a_capture(notification_type: str, kind: EventKind) -> None:
    body = load(DB_PROBLEM) | {"NOTIFICATIONTYPE": notification_type}
    assert [(e.kind, e.status) for e in nagios.parse(body, NOW).events] == [(kind, FIRING)]


@pytest.mark.parametrize(
    ("object_type", "state", "severity"),
    [
        ("host", "UP", Severity.INFO),
        ("host", "DOWN", Severity.CRITICAL),
        ("host", "UNREACHABLE", Severity.MAJOR),
        ("service", "OK", Severity.INFO),
        ("service", "WARNING", Severity.WARNING),
        ("service", "CRITICAL", Severity.CRITICAL),
        ("service", "UNKNOWN", Severity.MINOR),
    ],
)
def test_severity_table(object_type: str, state: str, severity: Severity) -> None:
    name, key = (
        (DB_HOST_DOWN, "HOSTSTATE") if object_type == "host" else (DB_PROBLEM, "SERVICESTATE")
    )
    body = load(name) | {key: state}
    assert only_event(body).severity is severity


def only_event(body: dict[str, Any]) -> Event:
    [event] = nagios.parse(body, NOW).events
    return event


def test_starts_at_is_now_minus_the_state_duration() -> None:
    assert only(DISK_REPEAT).starts_at == NOW - timedelta(seconds=20)
    body = load(DISK_REPEAT) | {"SERVICEDURATIONSEC": "soon"}
    assert only_event(body).starts_at == NOW


def test_digest_tells_a_retry_from_a_repeat() -> None:
    first = only(DISK_PROBLEM)
    assert nagios.parse(load(DISK_PROBLEM), NOW + timedelta(seconds=3)).events[0].digest == (
        first.digest
    )  # a retried POST of the same notification
    assert only(DISK_REPEAT).digest != first.digest  # NOTIFICATIONNUMBER 2
    assert only(DISK_REPEAT).fingerprint == first.fingerprint
    assert only(QUEUE_PROBLEM_AGAIN).digest != only(QUEUE_PROBLEM).digest  # a new problem id
    digests = [event.digest for name in FILES for event in events(name)]
    assert len(set(digests)) == len(digests) - 1  # only argument/env mode 02 == envmode-01


def test_a_repeat_notification_looks_like_its_first() -> None:
    first, repeat = only(DISK_PROBLEM), only(DISK_REPEAT)
    assert repeat.labels == first.labels
    assert repeat.annotations == first.annotations
    assert (repeat.kind, repeat.status, repeat.severity) == (
        first.kind,
        first.status,
        first.severity,
    )


@pytest.mark.parametrize(
    ("argument_mode", "environment_mode"),
    [
        (DISK_PROBLEM, ENV_DISK_PROBLEM),
        (DISK_REPEAT, ENV_DISK_REPEAT),
        (HTTP_ACK, ENV_HTTP_ACK),
    ],
)
def test_both_modes_give_the_same_events(argument_mode: str, environment_mode: str) -> None:
    a, e = only(argument_mode), only(environment_mode)
    comparable = ("fingerprint", "status", "labels", "annotations", "severity", "kind", "actor")
    assert {f: getattr(a, f) for f in comparable} == {f: getattr(e, f) for f in comparable}


def test_environment_mode_keeps_the_characters_argument_mode_strips() -> None:
    assert only(ENV_HTTP_ACK).message == 'It\'s the "lb-02" pool & <eu-west>; cost $0 | see ~ops'
    assert "'" not in only(HTTP_ACK).message


@pytest.mark.parametrize(
    ("variable", "label"),
    [
        ("_HOSTTEAM", "team"),
        ("_HOSTCOST-CENTER", "cost_center"),
        ("_HOSTRACK.ROW", "rack_row"),
        ("_HOST_OWNER", "owner"),
        ("_HOST9LIVES", "_9lives"),
        ("_SERVICETIER", "tier"),
    ],
)
def test_custom_variables_become_valid_labels(variable: str, label: str) -> None:
    event = only_event(load(DB_PROBLEM) | {variable: "x"})
    assert event.labels[label] == "x"
    assert re.match(LABEL_NAME_PATTERN, label)


def test_custom_variable_precedence() -> None:
    body = load(DB_PROBLEM) | {"_SERVICETEAM": "storage", "_HOSTHOST": "spoof", "_HOSTEMPTY": ""}
    labels = only_event(body).labels
    assert labels["team"] == "storage"  # the service's own variable wins over the host's
    assert labels["host"] == "e2e-db-01"  # built-in labels win over variables
    assert "empty" not in labels
    assert "" not in labels
    host = only_event(load(DB_HOST_DOWN) | {"_SERVICETIER": "gold", "_HOST": "x"})
    assert "tier" not in host.labels
    assert "" not in host.labels


def test_escaped_long_output_is_unescaped() -> None:
    body = load(DB_PROBLEM) | {"LONGSERVICEOUTPUT": r"C:\\new\nline two"}
    assert only_event(body).annotations["description"] == "C:\\new\nline two"


def _without(key: str) -> dict[str, Any]:
    body = load(DB_PROBLEM)
    del body[key]
    return dict(body)


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (None, "body", "got null"),
        ([], "body", "got array"),
        ("PROBLEM", "body", "got string"),
        ({}, "object_type", "'host' or 'service'"),
        (load(DB_PROBLEM) | {"object_type": "contact"}, "object_type", "'contact'"),
        (load(DB_PROBLEM) | {"object_type": "SERVICE"}, "object_type", "'host' or 'service'"),
        (load(DB_PROBLEM) | {"SERVICESTATEID": 2}, "SERVICESTATEID", "string, got number"),
        (load(DB_PROBLEM) | {"HOSTNAME": None}, "HOSTNAME", "string, got null"),
        (load(DB_PROBLEM) | {"_HOSTTEAM": ["dba"]}, "_HOSTTEAM", "string, got array"),
        (_without("NOTIFICATIONTYPE"), "NOTIFICATIONTYPE", "required"),
        (load(DB_PROBLEM) | {"NOTIFICATIONTYPE": "EXPLODED"}, "NOTIFICATIONTYPE", "'EXPLODED'"),
        (_without("HOSTNAME"), "HOSTNAME", "required"),
        (load(DB_PROBLEM) | {"HOSTNAME": ""}, "HOSTNAME", "must not be empty"),
        (_without("SERVICEDESC"), "SERVICEDESC", "required in a service notification"),
        (_without("SERVICESTATE"), "SERVICESTATE", "required"),
        (load(DB_PROBLEM) | {"SERVICESTATE": "DOWN"}, "SERVICESTATE", "OK, WARNING"),
        (load(DB_HOST_DOWN) | {"HOSTSTATE": "CRITICAL"}, "HOSTSTATE", "UP, DOWN, UNREACHABLE"),
    ],
)
def test_an_unusable_body_is_a_body_error(body: object, field: str, says: str) -> None:
    with pytest.raises(BodyError) as caught:
        nagios.parse(body, NOW)
    reject = caught.value.reject
    assert (reject.index, reject.field, reject.reason) == (None, field, RejectReason.INVALID_BODY)
    assert says in reject.message


def test_only_the_keys_the_bridge_needs_are_required() -> None:
    body = {
        "object_type": "host",
        "NOTIFICATIONTYPE": "PROBLEM",
        "HOSTNAME": "h1",
        "HOSTSTATE": "DOWN",
    }
    event = only_event(body)
    assert event.labels == {"alertname": "HostDown", "host": "h1", "nagios_object": "host"}
    assert event.annotations == {"state": "DOWN"}
    assert event.starts_at == NOW
