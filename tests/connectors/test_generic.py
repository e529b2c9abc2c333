"""The generic JSON webhook: shipped mappings -> expected events, bad input -> rejects, loader."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.generic import Mapping, MappingLoadError, load_mappings, parse
from connectors.labels import label_set_fingerprint
from connectors.parsed import BodyError, Parsed, RejectReason
from rules.model import AlertStatus, Severity
from tests.files import write

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "generic"
NOW = datetime(2026, 11, 23, 20, 0, 0, tzinfo=UTC)

GRAFANA_BODY: dict[str, Any] = {
    "receiver": "alert-bridge",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "High memory usage",
                "grafana_folder": "Infra",
                "severity": "critical",
                "instance": "db-01:9100",
                "app.kubernetes.io/name": "postgres",
            },
            "annotations": {
                "summary": "Memory above 90% on db-01",
                "runbook_url": "https://runbooks.example/memory",
            },
            "startsAt": "2026-11-23T19:51:03.157076+01:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://grafana.example/alerting/grafana/abc/view",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "https://grafana.example/alerting/silence/new?matcher=x",
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 93.2, "C": 1},
            "valueString": "[ var='B' labels={instance=db-01:9100} value=93.2 ]",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "High CPU usage", "instance": "web-02:9100"},
            "annotations": {"summary": "CPU above 80% on web-02"},
            "startsAt": "2026-11-23T18:00:00Z",
            "endsAt": "2026-11-23T19:30:00Z",
            "generatorURL": "https://grafana.example/alerting/grafana/def/view",
            "fingerprint": "bc97ff14869b13e3",
            "silenceURL": "https://grafana.example/alerting/silence/new?matcher=y",
            "dashboardURL": "https://grafana.example/d/cpu",
            "panelURL": "https://grafana.example/d/cpu?viewPanel=2",
            "values": {"B": 12.0},
            "valueString": "[ var='B' labels={instance=web-02:9100} value=12 ]",
        },
    ],
    "groupLabels": {"alertname": "High memory usage"},
    "commonLabels": {},
    "commonAnnotations": {},
    "externalURL": "https://grafana.example/",
    "version": "1",
    "groupKey": '{}/{}:{alertname="High memory usage"}',
    "truncatedAlerts": 0,
    "title": "[FIRING:1, RESOLVED:1]",
    "state": "alerting",
    "message": "...",
}


def solarwinds_body(status: str) -> dict[str, Any]:
    return {
        "status": status,
        "alert_object_id": "4711",
        "alert_name": "Volume almost full",
        "severity": "Serious",
        "object": "C:\\ Label:OS",
        "node": "fs-03",
        "message": "Volume C: on fs-03 is 96% full",
        "details_url": "https://orion.example/Orion/View.aspx?NetObject=AAT:4711",
    }


SCRIPT_MAPPING = """
    # A home-made backup check posting a list of results.
    fingerprint: [job, target.host]
    status: state
    status_map: {FAILED: firing, OK: resolved}
    severity: level
    alertname_value: BackupFailed
    host: target.host
    labels:
      job: job
      share: target."share.path"
    annotations:
      summary: text
    starts_at: at
"""
SCRIPT_BODY: list[Any] = [
    {
        "job": "nightly",
        "state": "FAILED",
        "level": "high",
        "target": {"host": "nas-1", "share.path": "/backup"},
        "text": "rsync exit 23",
        "at": 1795464000,
    },
    {"job": "weekly", "state": "OK", "target": {"host": "nas-1"}, "at": 1795464000123},
]


@pytest.fixture(scope="module")
def shipped() -> dict[str, Mapping]:
    return load_mappings(SHIPPED)


@pytest.fixture
def mapping_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "generic"
    directory.mkdir()
    return directory


def script_mapping(directory: Path) -> Mapping:
    write(directory, "backup.yaml", SCRIPT_MAPPING)
    return load_mappings(directory)["backup"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_shipped_mappings_load(shipped: dict[str, Mapping]) -> None:
    assert sorted(shipped) == ["grafana", "solarwinds"]


def test_grafana_body_with_one_firing_and_one_resolved_alert(shipped: dict[str, Mapping]) -> None:
    parsed = parse(shipped["grafana"], "grafana", GRAFANA_BODY, NOW)
    assert parsed.rejects == []
    assert parsed.items == 2
    firing, resolved = parsed.events
    assert firing.source == "grafana"
    assert firing.fingerprint == "c6eadffa33fcdf37"
    assert firing.status is AlertStatus.FIRING
    assert firing.labels == {
        "alertname": "High memory usage",
        "grafana_folder": "Infra",
        "severity": "critical",
        "instance": "db-01:9100",
        "app_kubernetes_io_name": "postgres",
    }
    assert firing.annotations == {
        "summary": "Memory above 90% on db-01",
        "runbook_url": "https://runbooks.example/memory",
        "values": "[ var='B' labels={instance=db-01:9100} value=93.2 ]",
        "silence_url": "https://grafana.example/alerting/silence/new?matcher=x",
    }
    assert firing.severity is Severity.CRITICAL
    assert firing.starts_at == at("2026-11-23T18:51:03.157076+00:00")
    assert firing.ends_at is None  # Go's zero time
    assert firing.expires_at is None
    assert firing.generator_url == "https://grafana.example/alerting/grafana/abc/view"
    assert firing.group_key == '{}/{}:{alertname="High memory usage"}'
    assert resolved.status is AlertStatus.RESOLVED
    assert resolved.fingerprint == "bc97ff14869b13e3"
    assert resolved.severity is Severity.WARNING  # no severity label
    assert resolved.starts_at == at("2026-11-23T18:00:00+00:00")
    assert resolved.ends_at == at("2026-11-23T19:30:00+00:00")
    assert resolved.annotations["dashboard_url"] == "https://grafana.example/d/cpu"


def test_solarwinds_trigger_then_reset(shipped: dict[str, Mapping]) -> None:
    mapping = shipped["solarwinds"]
    trigger = parse(mapping, "solarwinds", solarwinds_body("triggered"), NOW)
    reset = parse(mapping, "solarwinds", solarwinds_body("reset"), NOW)
    assert trigger.rejects == reset.rejects == []
    (fired,) = trigger.events
    (ended,) = reset.events
    assert fired.source == "solarwinds"
    assert fired.fingerprint == ended.fingerprint == "4711"
    assert (fired.status, ended.status) == (AlertStatus.FIRING, AlertStatus.RESOLVED)
    assert fired.labels == {
        "alertname": "Volume almost full",
        "host": "fs-03",
        "object": "C:\\ Label:OS",
    }
    assert fired.annotations == {"summary": "Volume C: on fs-03 is 96% full"}
    assert fired.severity is Severity.MAJOR  # "Serious" through severity_map
    assert fired.starts_at == ended.starts_at == NOW
    assert fired.ends_at is None
    assert fired.generator_url.endswith("NetObject=AAT:4711")
    assert fired.group_key is None
    assert fired.digest != ended.digest


@pytest.mark.parametrize(
    ("orion", "severity"),
    [
        ("Critical", Severity.CRITICAL),
        ("Serious", Severity.MAJOR),
        ("Warning", Severity.WARNING),
        ("Notice", Severity.INFO),
        ("Informational", Severity.INFO),
        ("something new", Severity.WARNING),
    ],
)
def test_solarwinds_severities(shipped: dict[str, Mapping], orion: str, severity: Severity) -> None:
    body = solarwinds_body("triggered") | {"severity": orion}
    (event,) = parse(shipped["solarwinds"], "solarwinds", body, NOW).events
    assert event.severity is severity


def test_home_made_script_body(mapping_dir: Path) -> None:
    parsed = parse(script_mapping(mapping_dir), "backup", SCRIPT_BODY, NOW)
    assert parsed.rejects == []
    failed, ok = parsed.events
    assert failed.source == "backup"
    assert failed.fingerprint == label_set_fingerprint({"job": "nightly", "target.host": "nas-1"})
    assert failed.status is AlertStatus.FIRING
    assert failed.severity is Severity.MAJOR  # "high" through the shared table
    assert failed.labels == {
        "alertname": "BackupFailed",
        "host": "nas-1",
        "job": "nightly",
        "share": "/backup",
    }
    assert failed.annotations == {"summary": "rsync exit 23"}
    assert failed.starts_at == datetime.fromtimestamp(1795464000, tz=UTC)
    assert ok.status is AlertStatus.RESOLVED
    assert ok.severity is Severity.WARNING
    assert ok.labels == {"alertname": "BackupFailed", "host": "nas-1", "job": "weekly"}
    assert ok.starts_at == datetime.fromtimestamp(1795464000.123, tz=UTC)  # milliseconds


def test_the_same_body_twice_gives_the_same_fingerprints_and_digests(
    shipped: dict[str, Mapping], mapping_dir: Path
) -> None:
    cases = [
        (shipped["grafana"], "grafana", GRAFANA_BODY),
        (shipped["solarwinds"], "solarwinds", solarwinds_body("triggered")),
        (script_mapping(mapping_dir), "backup", SCRIPT_BODY),
    ]
    for mapping, name, body in cases:
        first = parse(mapping, name, copy.deepcopy(body), NOW)
        again = parse(mapping, name, copy.deepcopy(body), datetime(2026, 11, 24, tzinfo=UTC))
        assert [e.fingerprint for e in first.events] == [e.fingerprint for e in again.events]
        assert [e.digest for e in first.events] == [e.digest for e in again.events]


def test_a_changed_annotation_changes_the_digest_only(shipped: dict[str, Mapping]) -> None:
    body = copy.deepcopy(GRAFANA_BODY)
    body["alerts"][0]["annotations"]["summary"] = "Memory above 95% on db-01"
    before = parse(shipped["grafana"], "grafana", GRAFANA_BODY, NOW).events[0]
    after = parse(shipped["grafana"], "grafana", body, NOW).events[0]
    assert before.fingerprint == after.fingerprint
    assert before.digest != after.digest


def grafana_with(index: int, key: str, value: object) -> dict[str, Any]:
    body = copy.deepcopy(GRAFANA_BODY)
    if value is None:
        del body["alerts"][index][key]
    else:
        body["alerts"][index][key] = value
    return body


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (grafana_with(1, "fingerprint", None), "alerts[1].fingerprint", "missing or empty"),
        (grafana_with(1, "fingerprint", ""), "alerts[1].fingerprint", "missing or empty"),
        (grafana_with(1, "status", None), "alerts[1].status", "missing or empty"),
        (grafana_with(1, "status", "pending"), "alerts[1].status", "'pending' is not in"),
        (grafana_with(1, "status", {"a": 1}), "alerts[1].status", "got object"),
        (grafana_with(1, "labels", ["x"]), "alerts[1].labels", "must be a JSON object, got array"),
        (grafana_with(1, "startsAt", "yesterday"), "alerts[1].startsAt", "'yesterday' is not"),
        (grafana_with(1, "startsAt", True), "alerts[1].startsAt", "got boolean"),
        (grafana_with(1, "endsAt", 1e300), "alerts[1].endsAt", "out of range"),
        (grafana_with(1, "generatorURL", [1]), "alerts[1].generatorURL", "got array"),
    ],
)
def test_a_bad_item_is_rejected_and_its_neighbour_kept(
    shipped: dict[str, Mapping], body: dict[str, Any], field: str, message: str
) -> None:
    parsed = parse(shipped["grafana"], "grafana", body, NOW)
    assert [e.fingerprint for e in parsed.events] == ["c6eadffa33fcdf37"]
    (reject,) = parsed.rejects
    assert (reject.index, reject.field, reject.reason) == (1, field, RejectReason.INVALID_ITEM)
    assert message in reject.message
    assert parsed.items == 2


def test_unmapped_status_names_the_value_and_the_known_ones(shipped: dict[str, Mapping]) -> None:
    parsed = parse(shipped["solarwinds"], "solarwinds", solarwinds_body("acknowledged"), NOW)
    (reject,) = parsed.rejects
    assert (reject.index, reject.field) == (0, "status")
    assert reject.message == "'acknowledged' is not in status_map (known: reset, triggered)"


def test_an_item_that_is_not_an_object(mapping_dir: Path) -> None:
    parsed = parse(script_mapping(mapping_dir), "backup", [SCRIPT_BODY[0], "oops"], NOW)
    assert len(parsed.events) == 1
    (reject,) = parsed.rejects
    assert (reject.index, reject.field) == (1, "[1]")
    assert reject.message == "must be a JSON object, got string"


def test_a_missing_fingerprint_part_names_its_path(mapping_dir: Path) -> None:
    item = copy.deepcopy(SCRIPT_BODY[0])
    del item["target"]["host"]
    (reject,) = parse(script_mapping(mapping_dir), "backup", [item], NOW).rejects
    assert (reject.index, reject.field) == (0, "[0].target.host")


@pytest.mark.parametrize(
    ("name", "body", "field", "message"),
    [
        ("grafana", [], "body", "must be a JSON object, got array"),
        ("grafana", {"alerts": {"a": 1}}, "alerts", "must be a JSON array of items, got object"),
        ("grafana", {"receiver": "x"}, "alerts", "must be a JSON array of items, got nothing"),
        ("solarwinds", "triggered", "body", "must be a JSON object or array, got string"),
        ("solarwinds", None, "body", "must be a JSON object or array, got null"),
    ],
)
def test_a_body_of_the_wrong_shape_is_a_body_error(
    shipped: dict[str, Mapping], name: str, body: object, field: str, message: str
) -> None:
    with pytest.raises(BodyError) as info:
        parse(shipped[name], name, body, NOW)
    reject = info.value.reject
    assert (reject.index, reject.field, reject.message) == (None, field, message)
    assert reject.reason is RejectReason.INVALID_BODY


def test_an_empty_items_array_gives_nothing(shipped: dict[str, Mapping]) -> None:
    assert parse(shipped["grafana"], "grafana", {"alerts": []}, NOW) == Parsed()


def load_errors(directory: Path) -> list[str]:
    with pytest.raises(MappingLoadError) as info:
        load_mappings(directory)
    assert str(info.value).splitlines()[1:] == info.value.errors
    return info.value.errors


def test_loader_reports_every_problem_at_its_line(mapping_dir: Path) -> None:
    first = write(
        mapping_dir,
        "a.yaml",
        """
        fingerprint_path: id
        status: state
        status_map: {up: resolved}
        severity: level
        severity_map:
          p1: critical
          p2: sev2
        colour: red
        """,
    )
    second = write(
        mapping_dir,
        "b.yaml",
        """
        fingerprint_path: id
        status: state
        status_map: {down: firing}
        labels:
          ok_name: x
          bad-name: y
        annotations:
          summary: a..b
        """,
    )
    assert load_errors(mapping_dir) == [
        f"{first}:7: severity_map.p2: Input should be 'critical', 'major', 'minor', 'warning'"
        " or 'info'",
        f"{first}:8: unknown key 'colour'",
        f"{second}:6: labels: invalid label name 'bad-name': must match ^[a-zA-Z_][a-zA-Z0-9_]*$",
        f"{second}:8: annotations.summary: invalid path 'a..b' at character 2: write"
        ' keys.with.dots, [N] indexes and "quoted keys" for keys that hold dots, brackets or'
        " blanks",
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("status: s\nstatus_map: {a: firing}\n", 1, "give exactly one of fingerprint"),
        ("fingerprint: [a]\nfingerprint_path: b\nstatus: s\nstatus_map: {a: firing}\n", 2, "one"),
        ("fingerprint_path: i\nstatus_map: {a: firing}\n", 1, "missing required key 'status'"),
        ("fingerprint_path: i\nstatus: s\nstatus_map: {a: on}\n", 3, "status_map.a: Input"),
        ("fingerprint_path: i\nstatus: s\nstatus_map: {}\n", 3, "at least 1 item"),
        ("fingerprint: []\nstatus: s\nstatus_map: {a: firing}\n", 1, "at least 1 item"),
        ("fingerprint_path: 3\nstatus: s\nstatus_map: {a: firing}\n", 1, "must be a string"),
        (
            "fingerprint_path: i\nstatus: s\nstatus_map: {a: firing}\nseverity_map: {a: info}\n",
            4,
            "4: severity_map needs a severity path",
        ),
        (
            "fingerprint_path: i\nstatus: s\nstatus_map: {a: firing}\nalertname: n\n"
            "alertname_value: N\n",
            5,
            "5: give at most one of alertname, alertname_value",
        ),
        ("- a\n- b\n", 1, "the top level must be a mapping of options"),
        ("status: [\n", 2, "invalid YAML"),
        ("status: s\nstatus: t\n", 2, "duplicate key 'status'"),
    ],
)
def test_loader_decision_table(mapping_dir: Path, text: str, line: int, message: str) -> None:
    path = mapping_dir / "feed.yaml"
    path.write_text(text)
    (error,) = load_errors(mapping_dir)
    assert error.startswith(f"{path}:{line}: ")
    assert message in error


VALID = "fingerprint_path: i\nstatus: s\nstatus_map: {a: firing}\n"


@pytest.mark.parametrize(
    ("file_name", "message"),
    [
        ("Grafana.yaml", "invalid mapping name 'Grafana' (the file name)"),
        ("9lives.yaml", "invalid mapping name '9lives'"),
        ("a" * 33 + ".yml", "invalid mapping name"),
        ("zabbix.yaml", "mapping name 'zabbix' is a built-in source"),
        ("alertmanager.yml", "mapping name 'alertmanager' is a built-in source"),
        ("unknown.yaml", "mapping name 'unknown' is reserved"),
        ("api.yaml", "mapping name 'api' is reserved"),
    ],
)
def test_invalid_mapping_names(mapping_dir: Path, file_name: str, message: str) -> None:
    (mapping_dir / file_name).write_text(VALID)
    (error,) = load_errors(mapping_dir)
    assert error.startswith(f"{mapping_dir / file_name}:1: {message}")


def test_the_same_name_twice(mapping_dir: Path) -> None:
    (mapping_dir / "feed.yaml").write_text(VALID)
    (mapping_dir / "feed.yml").write_text(VALID)
    assert load_errors(mapping_dir) == [
        f"{mapping_dir / 'feed.yml'}:1: duplicate mapping name 'feed' (also "
        f"{mapping_dir / 'feed.yaml'})"
    ]


def test_a_missing_directory(tmp_path: Path) -> None:
    assert load_errors(tmp_path / "nope") == [
        f"{tmp_path / 'nope'}:1: mapping directory does not exist"
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a", "x"),
        ("b[1]", 2),
        ("b[5]", None),
        ('c."d.e"', "y"),
        ("c.missing", None),
        ("a.deeper", None),
        ("$.top", "t"),
    ],
)
def test_paths(mapping_dir: Path, path: str, expected: object) -> None:
    write(
        mapping_dir,
        "p.yaml",
        f"""
        items: list
        fingerprint_path: id
        status: s
        status_map: {{a: firing}}
        labels:
          v: '{path}'
        """,
    )
    item = {"id": "1", "s": "a", "a": "x", "b": [1, 2], "c": {"d.e": "y"}}
    parsed = parse(load_mappings(mapping_dir)["p"], "p", {"list": [item], "top": "t"}, NOW)
    (event,) = parsed.events
    assert event.labels.get("v") == (None if expected is None else str(expected))


def test_a_severity_change_alone_is_not_a_redelivery(shipped: dict[str, Mapping]) -> None:
    before = parse(shipped["solarwinds"], "solarwinds", solarwinds_body("triggered"), NOW)
    raised = solarwinds_body("triggered") | {"severity": "Critical"}
    after = parse(shipped["solarwinds"], "solarwinds", raised, NOW)
    assert before.events[0].fingerprint == after.events[0].fingerprint
    assert before.events[0].digest != after.events[0].digest
