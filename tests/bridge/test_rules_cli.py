"""The offline rule tools: `bridge rules check`, `bridge rules test` and `bridge replay`.

They run in-process through `bridge.cli.main`, with no database and no network.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.replay import Progress
from tests.files import write

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RULES = ROOT / "config" / "rules"
SHIPPED_TESTS = sorted((ROOT / "config" / "rules-tests").glob("*.yaml"))
FIXTURE_TESTS = sorted((ROOT / "tests" / "fixtures" / "rules-tests").glob("*.yaml"))
CAPTURED = ROOT / ".." / "shared" / "fixtures" / "captured"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRIDGE_CONFIG", "BRIDGE_RULES_DIR", "BRIDGE_GENERIC_DIR"):
        monkeypatch.delenv(name, raising=False)


# bridge rules test


def test_there_are_examples_for_every_story() -> None:
    names = {path.stem for path in SHIPPED_TESTS}
    assert {"host-outage", "flapping-check", "maintenance-window", "recurring-problem"} <= names
    assert "heartbeat" in names
    assert {"correlate-options", "captured-alertmanager"} <= {p.stem for p in FIXTURE_TESTS}


@pytest.mark.parametrize("path", SHIPPED_TESTS + FIXTURE_TESTS, ids=lambda p: p.name)
def test_example_passes(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["rules", "test", str(path)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), out
    assert out.startswith(f"ok {path} (")


def test_a_directory_stands_for_its_test_files(capsys: pytest.CaptureFixture[str]) -> None:
    main(["rules", "test", str(ROOT / "tests" / "fixtures" / "rules-tests")])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"ok {path} ({line.split(' (', 1)[1]}" for path, line in zip(
        FIXTURE_TESTS, lines, strict=True
    )]  # fmt: skip


def test_several_files_print_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(p) for p in SHIPPED_TESTS if p.stem in ("host-outage", "heartbeat")]
    assert main(["rules", "test", *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"ok {paths[0]} (11 steps, 1 incidents)",  # heartbeat
        f"ok {paths[1]} (10 steps, 2 incidents)",  # host-outage
    ]


FAILING = """\
    steps:
      - at: 0s
        alerts:
          - {source: nagios, labels: {alertname: HostDown, host: core-switch-1}, severity: critical}
      - at: 30s
        alerts:
          - {source: nagios, labels: {alertname: HostDown, host: web-1}, severity: critical}
          - {labels: {alertname: DiskFull, instance: "ci-runner-1:9100"}}
        expect:
          incidents:
            - rule: host-down
              key: {host: core-switch-1}
              status: resolved
              alert_count: 2
              members: [{labels: {host: web-1}, reason: opened}]
            - {rule: per-alert, title: Disk full}
    expect:
      counts: {incidents: 1, alerts: 2}
      held: [{labels: {host: web-1}}]
"""


def test_a_failing_file_shows_expected_and_got(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "failing.yaml", FAILING)
    assert main(["rules", "test", "--rules", str(SHIPPED_RULES), path]) == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"FAIL {path} (2 steps, 2 incidents)",
        "  after step 2 at 30s (line 5):",
        "    incident #1 host-down{host='core-switch-1'} (line 11):",
        "      status: expected resolved, got new",
        "      member {host: web-1} (opened): not found",
        "        got: nagios HostDown{host=core-switch-1} (opened)",
        "        got: nagios HostDown{host=web-1} (symptom)",
        '    missing incident (line 16): rule per-alert, title "Disk full"',
        "      got: #2: rule per-alert, key per-alert{alertname='DiskFull',"
        "instance='ci-runner-1:9100',host='ci-runner-1'}, new, P3, 1 alerts, DiskFull",
        "    unexpected incident #2: rule per-alert, key per-alert{alertname='DiskFull',"
        "instance='ci-runner-1:9100',host='ci-runner-1'}, new, P3, 1 alerts, DiskFull",
        "  at the end (line 17):",
        "    held alert nagios HostDown{host=web-1} (line 19):",
        "      hold: expected held, got none (firing)",
        "    counts (line 18): incidents: expected 1, got 2",
        "    counts (line 18): alerts: expected 2, got 3",
    ]


def test_verbose_shows_every_decision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "failing.yaml", FAILING)
    main(["rules", "test", "-v", "--rules", str(SHIPPED_RULES), path])
    out = capsys.readouterr().out
    assert (
        "step 1 at 0s (line 2):\n  nagios HostDown{host=core-switch-1} firing -> incident #1\n"
        in out
    )
    assert "    dedup default: new\n" in out
    assert "  nagios HostDown{host=web-1} firing -> incident #1\n" in out
    assert "    correlate topology: symptom\n    incidents host-down: attached\n" in out


def test_a_missing_decision_lists_the_decisions_of_its_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "decisions.yaml",
        """\
        steps:
          - at: 0s
            alerts: [{labels: {alertname: DiskFull, instance: "db-1:9100"}}]
            expect:
              decisions: [{stage: dedup, decision: repeat}, {stage: correlate, decision: opened}]
        """,
    )
    assert main(["rules", "test", "--rules", str(SHIPPED_RULES), path]) == 1
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  after step 1 at 0s (line 2):",
        "    missing decision (line 5): dedup: repeat",
        "      got: dedup prometheus-values: new",
    ]


def test_an_invalid_file_exits_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "invalid.yaml",
        """\
        steps:
          - at: 5m
            alerts:
              - {labels: {alertname: X}, colour: red}
          - at: 1m
            expect: {incidents: [{title: x}]}
          - at: soon
        """,
    )
    assert main(["rules", "test", path]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}:4: steps[0].alerts[0]: unknown key 'colour'",
        f"{path}:6: steps[1].expect.incidents[0]: missing required key 'rule'",
        f"{path}:7: steps[2].at: invalid duration 'soon': use e.g. '30s', '5m', '1h30m'",
    ]


def test_steps_out_of_order_and_missing_payloads_are_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "invalid.yaml",
        """\
        steps:
          - {at: 5m, alerts: [{labels: {alertname: X}}]}
          - {at: 1m, payload: nowhere.json}
        """,
    )
    assert main(["rules", "test", path]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:3: steps[1].at: steps must be in time order",
        f"{path}:3: steps[1].payload: payload file '{tmp_path / 'nowhere.json'}' does not exist",
    ]


def test_a_body_no_connector_takes_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "odd.json").write_text('{"hello": 1}')
    path = write(tmp_path, "t.yaml", "steps:\n  - {at: 0s, payload: odd.json, source: nagios}\n")
    assert main(["rules", "test", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:2: steps[0].payload: {tmp_path / 'odd.json'}: not a nagios")


def test_invalid_rules_make_the_test_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    bad = write(rules, "bad.yaml", "correlate:\n  - name: x\n    group_by: []\n")
    path = write(tmp_path, "t.yaml", "rules: rules\nsteps: [{at: 0s}]\n")
    assert main(["rules", "test", path]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{path}: invalid rules:"
    assert err[1].startswith(f"{bad}:3: correlate[0].group_by: ")


def test_the_worst_result_decides_the_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = write(tmp_path, "failing.yaml", FAILING)
    invalid = write(tmp_path, "invalid.yaml", "steps: []\n")
    passing = str(ROOT / "config" / "rules-tests" / "heartbeat.yaml")
    assert main(["rules", "test", passing, failing]) == 1
    assert main(["rules", "test", failing, invalid, passing]) == 2
    out = capsys.readouterr().out
    assert out.count("FAIL ") == 2
    assert out.count("ok ") == 2


# bridge rules check


def test_check_summarises_the_shipped_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(SHIPPED_RULES)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"{SHIPPED_RULES}: 3 rule files ok",
        "normalize: 3 rules",
        "dedup: 1 rule",
        "maintenance: 2 windows",
        "inhibit: 1 rule",
        "correlate: 3 rules",
        f"topology: 18 configuration items (CMDB {ROOT / 'config' / 'cmdb.yaml'}, bind label host)",
        "heartbeats: 1 rule",
        "problems: 2 rules",
        "targets: 0 targets",
        "escalations: 0 policies",
        "routes: 0 routes",
    ]


def test_check_defaults_to_the_configured_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "one.yaml", "correlate:\n  - {name: all, group_by: [alertname]}\n")
    monkeypatch.setenv("BRIDGE_RULES_DIR", str(tmp_path))
    assert main(["rules", "check"]) == 0
    assert "correlate: 1 rule\n" in capsys.readouterr().out


def test_check_reports_every_error_as_file_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "rules"
    directory.mkdir()
    rules = write(directory, "10-correlate.yaml", """\
        correlate:
          - name: a
            group_by: [alertname]
            colour: red
        """)  # fmt: skip
    write(directory, "20-topology.yaml", "topology:\n  cmdb: ../cmdb.yaml\n")
    cmdb = write(tmp_path, "cmdb.yaml", "items:\n  web-1: {type: vm, parent: hv-9}\n")
    assert main(["rules", "check", str(directory)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{rules}:4: correlate[0]: unknown key 'colour'",
        f"{cmdb}:2: items.web-1.parent: unknown configuration item 'hv-9'",
    ]


def test_check_warns_about_rules_that_cannot_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = write(
        tmp_path,
        "rules.yaml",
        """\
        correlate:
          - {name: everything, group_by: [alertname]}
          - {name: never, match: {team: db}, group_by: [alertname]}
        problems:
          - {name: shared, by: ci, count: 2, within: 1h, rules: [evrything]}
        """,
    )
    assert main(["rules", "check", str(tmp_path)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"{rules}:3: warning: correlate rule 'never' is never reached: 'everything' before it"
        " takes every alert",
        f"{rules}:5: warning: problem rule 'shared': no correlate rule 'evrything'",
        f"{rules}:5: warning: problem rule 'shared' is by CI, but no topology section binds"
        " alerts to CIs",
    ]


def test_check_warns_about_root_rules_naming_no_correlate_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A typo in root_rules silently turns topology off: no incident is a root any more.
    write(tmp_path, "cmdb.yaml", "items:\n  core: {type: switch}\n")
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    rules = write(
        rules_dir,
        "rules.yaml",
        """\
        topology: {cmdb: ../cmdb.yaml, root_rules: [hostdown, default]}
        correlate:
          - {name: host-down, match: {alertname: HostDown}, group_by: [host]}
        problems:
          - {name: recurring, by: key, count: 2, within: 1h, rules: [default-group-key]}
        """,
    )
    assert main(["rules", "check", str(rules_dir)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"{rules}:1: warning: topology root_rules: no correlate rule 'hostdown'",
    ]


# bridge replay


def test_replay_of_captured_alertmanager_traffic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(CAPTURED / "alertmanager")]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # no progress bar: stderr is no terminal
    lines = out.splitlines()
    assert lines[0].split() == ["#", "rule", "status", "prio", "alerts", "title"]
    assert lines[1].split() == ["1", "host-down", "resolved", "P2", "1", "HostDown", "on", "web-01"]
    assert lines[-2] == "files: 14, events: 25, rejected items: 0, skipped files: 0"
    assert lines[-1] == "alerts: 7, incidents: 4, ratio: 1.75"


def test_replay_guesses_the_source_and_skips_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("am-01-firing-bridge-critical-hostdown-1alerts.json",
                 "am-05-resolved-bridge-critical-hostdown-1alerts.json"):  # fmt: skip
        shutil.copy(CAPTURED / "alertmanager" / name, tmp_path / name)
    (tmp_path / "zz-notes.json").write_text('{"note": "not a payload"}')
    assert main(["replay", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    notes = tmp_path / "zz-notes.json"
    assert err == f"skipped {notes}: cannot tell which sender this body is from; name it\n"
    assert out.splitlines()[-1] == "alerts: 1, incidents: 1, ratio: 1.00"
    assert main(["replay", "--source", "prometheus", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert err.count("not a prometheus payload") == 3
    assert out.splitlines()[-1] == "alerts: 0, incidents: 0, ratio: -"


def test_replay_of_an_empty_directory_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"{tmp_path}: no *.json payload files\n"


def test_progress_bar_redraws_in_place() -> None:
    stream = io.StringIO()
    progress = Progress(200, stream)
    for done in range(1, 201):
        progress.update(done)
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r") == 101  # once per percent, 0 to 100
    assert text.endswith(f"\r[{'#' * 30}] 200/200 files\n")
