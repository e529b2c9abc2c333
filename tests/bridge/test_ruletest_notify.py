"""`bridge rules test` with notification routing: the targets each incident would notify.

The runner keeps the outbox the daemon would fill (`bridge.ruletest.outbox`, over
`rules.notify`); tests expect it with `notify`, `notifications` and `counts.notifications`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.cli import main
from tests.files import write

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "rules-tests" / "notify.yaml"

RULES = """\
    correlate:
      - {name: host-down, match: {alertname: HostDown}, group_by: [host]}
    targets:
      - {name: pager, channel: webhook, options: {url: "http://127.0.0.1:9/pager"}}
      - {name: chat, channel: webhook, options: {url: "http://127.0.0.1:9/chat"}}
      - {name: lead, channel: webhook, options: {url: "http://127.0.0.1:9/lead"}}
    escalations:
      - name: oncall
        steps: [{after: 0s, targets: [pager]}, {after: 10m, targets: [lead]}]
        repeat: 1
        repeat_after: 30m
    routes:
      - {name: db, matchers: ['team="db"'], targets: [chat], escalation: oncall}
      - {name: rest, targets: [chat], repeat_interval: 1h}
    """

DB_DOWN = "{source: nagios, labels: {alertname: HostDown, host: db-1, team: db}}"


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    write(directory, "notify.yaml", RULES)
    return directory


def _test(tmp_path: Path, text: str) -> str:
    """A test file on the rules of `tmp_path/rules` (the key last, so lines are as written)."""
    return write(tmp_path, "t.yaml", textwrap.dedent(text) + "rules: rules\n")


def test_the_notify_fixture_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", str(FIXTURE)]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"ok {FIXTURE} (5 steps, 4 incidents, 17 notifications)\n", "")


def test_escalation_resolve_and_counts_pass(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _test(
        tmp_path,
        f"""\
        steps:
          - at: 0s
            alerts: [&db {DB_DOWN}]
            expect:
              incidents: [{{rule: host-down, notify: [pager, chat, chat]}}]
              decisions: [{{stage: notify, rule: db, decision: matched}}]
          - at: 15m
            expect:
              incidents:
                - {{rule: host-down, notifications: [chat:opened, pager:opened, lead:escalated]}}
              decisions: [{{stage: notify, rule: oncall, decision: escalated}}]
          - at: 20m
            alerts: [{{<<: *db, status: resolved}}]
        expect:
          incidents:
            - rule: host-down
              notify: [chat, lead, pager]
              notifications: [chat:opened, pager:opened, lead:escalated,
                              chat:resolved, lead:resolved, pager:resolved]
          counts: {{notifications: 6}}
        """,
    )
    assert main(["rules", "test", path]) == 0
    assert capsys.readouterr().out == f"ok {path} (3 steps, 1 incidents, 6 notifications)\n"


def test_a_mismatch_shows_expected_got_and_the_outbox(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _test(
        tmp_path,
        f"""\
        steps:
          - at: 0s
            alerts: [{DB_DOWN}]
          - at: 12m
            expect:
              incidents:
                - rule: host-down
                  notify: [pager]
                  notifications: [pager:opened, lead:escalated]
              counts: {{notifications: 2}}
              decisions: [{{stage: notify, rule: db, decision: matched}}]
        """,
    )
    assert main(["rules", "test", path]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"FAIL {path} (2 steps, 1 incidents, 3 notifications)",
        "  after step 2 at 12m (line 4):",
        "    incident #1 host-down{host='db-1'} (line 7):",
        "      notify: expected [pager], got [chat, lead, pager]",
        "      notifications: expected [pager:opened, lead:escalated],"
        " got [chat:opened, pager:opened, lead:escalated]",
        "    counts (line 10): notifications: expected 2, got 3",
        "    missing decision (line 11): notify db: matched",
        "      got: notify oncall: escalated",
        "  notifications queued:",
        "    0s #1 chat: opened",
        "    0s #1 pager: opened",
        "    10m #1 lead: escalated (not acknowledged after 10m)",
    ]


def test_an_acknowledgement_stops_the_escalation(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _test(
        tmp_path,
        f"""\
        steps:
          - {{at: 0s, alerts: [&db {DB_DOWN}]}}
          - {{at: 5m, alerts: [{{<<: *db, kind: acknowledge, actor: alice}}]}}
          - at: 3h
            expect:
              incidents:
                - rule: host-down
                  status: acknowledged
                  notifications: [chat:opened, pager:opened, chat:acknowledged, pager:acknowledged]
        """,
    )
    assert main(["rules", "test", path]) == 0, capsys.readouterr().out


def test_timers_run_at_the_instant_they_were_due(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One step 2h later: both escalation rounds (10m; 40m + 10m) and the hourly repeats of
    # the other route, as the escalation job would have run them meanwhile.
    path = _test(
        tmp_path,
        """\
        steps:
          - at: 0s
            alerts:
              - {source: nagios, labels: {alertname: HostDown, host: db-1, team: db}}
              - {source: nagios, labels: {alertname: HostDown, host: web-1}}
          - {at: 2h}
        expect: {counts: {notifications: 0}}
        """,
    )
    assert main(["rules", "test", path]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[lines.index("  notifications queued:") :] == [
        "  notifications queued:",
        "    0s #1 chat: opened",
        "    0s #1 pager: opened",
        "    0s #2 chat: opened",
        "    10m #1 lead: escalated (not acknowledged after 10m)",
        "    40m #1 pager: escalated (not acknowledged after 40m)",
        "    50m #1 lead: escalated (not acknowledged after 50m)",
        "    1h #2 chat: repeat (still not acknowledged)",
        "    2h #2 chat: repeat (still not acknowledged)",
    ]


def test_a_reopened_incident_tells_whoever_was_told(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _test(
        tmp_path,
        f"""\
        steps:
          - {{at: 0s, alerts: [&db {DB_DOWN}]}}
          - {{at: 1m, alerts: [{{<<: *db, status: resolved}}]}}
          - at: 2m
            alerts: [*db]
            expect:
              incidents:
                - rule: host-down
                  reopen_count: 1
                  notifications: [chat:opened, pager:opened, chat:resolved, pager:resolved,
                                  chat:reopened, pager:reopened]
        """,
    )
    assert main(["rules", "test", path]) == 0, capsys.readouterr().out


def test_verbose_shows_who_is_told_and_the_timers(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _test(
        tmp_path,
        f"""\
        steps:
          - {{at: 0s, alerts: [&db {DB_DOWN}]}}
          - {{at: 5m, alerts: [{{<<: *db, kind: acknowledge}}]}}
          - {{at: 6m, alerts: [{{<<: *db, kind: unacknowledge}}]}}
          - {{at: 7m, alerts: [{{<<: *db, kind: acknowledge}}]}}
          - {{at: 1h}}
        """,
    )
    assert main(["rules", "test", "-v", path]) == 0
    out = capsys.readouterr().out
    assert (
        "    incidents host-down: opened\n"
        "    correlate host-down: opened\n"
        "    notify #1 opened -> chat, pager\n"
        "    notify db: matched\n"
    ) in out
    # Acknowledged again after an unacknowledge: told again (the key carries the time).
    assert out.count("    notify #1 acknowledged -> chat, pager\n") == 2
    assert "timer" not in out  # acknowledged before 10m: no escalation
    path = _test(tmp_path, f"steps:\n  - {{at: 0s, alerts: [{DB_DOWN}]}}\n  - {{at: 15m}}\n")
    main(["rules", "test", "-v", path])
    assert capsys.readouterr().out.splitlines()[-4:-1] == [
        "step 2 at 15m (line 3):",
        "  timer 10m: notify #1 escalated -> lead (not acknowledged after 10m)",
        "             notify oncall: escalated",
    ]


def test_no_route_matched_shows_nobody(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "rules"
    directory.mkdir()
    write(
        directory,
        "r.yaml",
        RULES.replace("- {name: rest, targets: [chat], repeat_interval: 1h}", ""),
    )
    path = _test(
        tmp_path,
        """\
        steps:
          - at: 0s
            alerts: [{source: nagios, labels: {alertname: HostDown, host: web-1}}]
            expect: {incidents: [{rule: host-down, notify: [], notifications: []}]}
        """,
    )
    assert main(["rules", "test", "-v", path]) == 0
    assert "    notify #1 opened -> nobody\n" in capsys.readouterr().out


def test_rules_without_targets_show_no_notifications(capsys: pytest.CaptureFixture[str]) -> None:
    shipped = str(ROOT / "config" / "rules-tests" / "heartbeat.yaml")
    assert main(["rules", "test", shipped]) == 0
    assert capsys.readouterr().out == f"ok {shipped} (11 steps, 1 incidents)\n"


def test_bad_notification_expectations_are_invalid(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _test(
        tmp_path,
        """\
        steps:
          - at: 0s
            expect:
              incidents:
                - rule: host-down
                  notified: [pager]
                  notifications: [pager-opened, "pager:paged", ":opened"]
        """,
    )
    assert main(["rules", "test", path]) == 2
    choices = "opened, reopened, acknowledged, escalated, resolved, closed, sla_breach, repeat"
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}:6: steps[0].expect.incidents[0]: unknown key 'notified'",
        f"{path}:7: steps[0].expect.incidents[0].notifications[0]: expected"
        f" 'target:transition', transition one of {choices}; got 'pager-opened'",
        f"{path}:7: steps[0].expect.incidents[0].notifications[1]: expected"
        f" 'target:transition', transition one of {choices}; got 'pager:paged'",
        f"{path}:7: steps[0].expect.incidents[0].notifications[2]: expected"
        f" 'target:transition', transition one of {choices}; got ':opened'",
    ]


def test_targets_the_rules_do_not_have_are_invalid(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _test(
        tmp_path,
        """\
        steps:
          - at: 0s
            expect:
              incidents: [{rule: host-down, notify: [pagr], notifications: ["chat:opened"]}]
        expect:
          incidents:
            - rule: host-down
              notifications: [chat:opened, leda:escalated]
        """,
    )
    assert main(["rules", "test", path]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:4: steps[0].expect.incidents[0].notify: no target 'pagr' in the rules"
        " (targets: chat, lead, pager)",
        f"{path}:8: expect.incidents[0].notifications[1]: no target 'leda' in the rules"
        " (targets: chat, lead, pager)",
    ]
    shipped = write(
        tmp_path,
        "shipped.yaml",
        "steps:\n  - {at: 0s, expect: {incidents: [{rule: host-down, notify: [pager]}]}}\n",
    )
    assert main(["rules", "test", shipped]) == 2
    assert capsys.readouterr().err == (
        f"{shipped}:2: steps[0].expect.incidents[0].notify: no target 'pager':"
        " the rules have no targets section\n"
    )


def test_a_raised_priority_tells_the_targets_it_now_reaches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "rules"
    directory.mkdir()
    write(
        directory,
        "r.yaml",
        """\
        correlate:
          - {name: by-host, group_by: [host]}
        targets:
          - {name: pager, channel: webhook, options: {url: "http://127.0.0.1:9/pager"}}
          - {name: chat, channel: webhook, options: {url: "http://127.0.0.1:9/chat"}}
        routes:
          - {name: urgent, priority: [1, 2], targets: [pager]}
          - {name: rest, targets: [chat]}
        """,
    )
    path = _test(
        tmp_path,
        """\
        steps:
          - at: 0s
            alerts: [{labels: {alertname: DiskFull, host: db-1}, severity: warning}]
            expect: {incidents: [{rule: by-host, priority: P3, notify: [chat]}]}
          - at: 1m
            alerts: [{labels: {alertname: HostDown, host: db-1}, severity: critical}]
            expect:
              incidents:
                - {rule: by-host, priority: P2, notifications: [chat:opened, pager:opened]}
        """,
    )
    assert main(["rules", "test", "-v", path]) == 0
    out = capsys.readouterr().out
    assert "    notify #1 opened -> pager (priority P3 -> P2)\n" in out
