"""`rules.loader`: every problem is reported as `file:line: message`, at the offending line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rules.flapping import FlappingPolicy
from rules.loader import RuleLoadError, load_rules
from rules.match import LabelMatcher, MatchOp
from rules.model import GROUP_KEY_LABEL, SOURCE_LABEL, Severity
from rules.priority import Level
from rules.ruleset import Origin, ProblemBy, ResolveOn, RuleSet
from tests.files import write

SHIPPED_RULES = Path(__file__).resolve().parents[2] / "config" / "rules"


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    return directory


def load_errors(directory: Path) -> list[str]:
    with pytest.raises(RuleLoadError) as info:
        load_rules(directory)
    assert str(info.value).splitlines()[1:] == info.value.errors
    return info.value.errors


def test_yaml_syntax_error_reports_its_line(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        correlate:
          - name: a
            group_by: [instance
          - name: b
        """,
    )
    [error] = load_errors(rules_dir)
    assert error.startswith(f"{path}:4: invalid YAML: expected ',' or ']'")
    assert "(while parsing a flow sequence at line 3)" in error


def test_duplicate_yaml_key_is_an_error(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        correlate:
          - name: a
            group_by: [instance]
            title: first
            title: second
        """,
    )
    assert load_errors(rules_dir) == [
        f"{path}:5: invalid YAML: duplicate key 'title' (first at line 4)"
    ]


def test_unknown_key_points_at_the_key(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        correlate:
          - name: a
            group_by: [instance]
          - name: b
            group_by: [instance]

            grouping: [alertname]
        incidents: {}
        """,
    )
    assert load_errors(rules_dir) == [
        f"{path}:7: correlate[1]: unknown key 'grouping'",
        f"{path}:8: unknown key 'incidents'",
    ]


def test_bad_matcher_points_at_its_list_item(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        correlate:
          - name: a
            matchers:
              - 'alertname="HostDown"'
              - 'severity'
              - 'instance=~"("'
            group_by: [instance]
        """,
    )
    errors = load_errors(rules_dir)
    assert [error.split(" '")[0] for error in errors] == [
        f"{path}:5: correlate[0].matchers[1]: invalid matcher",
        f"{path}:6: correlate[0].matchers[2]: invalid matcher",
    ]
    assert "invalid regular expression '('" in errors[1]


def test_empty_group_by_points_at_the_key(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        correlate:
          - name: a
            title: x
            group_by: []
        """,
    )
    assert load_errors(rules_dir) == [
        f"{path}:4: correlate[0].group_by: group_by must name at least one label"
    ]


def test_group_by_items_are_checked_one_by_one(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        correlate:
          - name: bad-label
            group_by:
              - instance
              - host-name
          - name: twice
            group_by:
              - instance
              - alertname
              - instance
        """,
    )
    assert load_errors(rules_dir) == [
        f"{path}:5: correlate[0].group_by[1]: invalid label name 'host-name': "
        "must match [a-zA-Z_][a-zA-Z0-9_]*",
        f"{path}:10: correlate[1].group_by[2]: label 'instance' is listed twice",
    ]


def test_missing_group_by_points_at_the_rule(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        correlate:
          - name: a
            group_by: [instance]
          - name: b
            title: no grouping
        """,
    )
    assert load_errors(rules_dir) == [f"{path}:4: correlate[1]: missing required key 'group_by'"]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("name: Host-Down", ":2: correlate[0].name: invalid rule name 'Host-Down'"),
        ("name: -x", ":2: correlate[0].name: invalid rule name '-x'"),
        ("name: " + "a" * 101, ":2: correlate[0].name: invalid rule name 'aaaa"),
        (
            "name: a\n    match: {bad-key: x}",
            ":3: correlate[0].match: invalid label name 'bad-key'",
        ),
        ("name: a\n    match: {code: 500}", ":3: correlate[0].match.code: expected a string"),
        ("name: a\n    title: 5", ":3: correlate[0].title: expected a string"),
        ("name: a\n    matchers: 'a=b'", ":3: correlate[0].matchers: Input should be a valid list"),
    ],
)
def test_field_errors(rules_dir: Path, rule: str, expected: str) -> None:
    path = write(rules_dir, "a.yaml", f"correlate:\n  - {rule}\n    group_by: [instance]\n")
    [error] = load_errors(rules_dir)
    assert error.startswith(path + expected)


def test_top_level_must_be_a_mapping(rules_dir: Path) -> None:
    path = write(rules_dir, "a.yaml", "- name: a\n")
    assert load_errors(rules_dir) == [f"{path}:1: the top level must be a mapping of sections"]


def test_duplicate_rule_name_across_files_points_at_the_second(rules_dir: Path) -> None:
    first = write(rules_dir, "10-hosts.yaml", "correlate:\n  - name: hosts\n    group_by: [a]\n")
    second = write(
        rules_dir,
        "20-more.yml",
        """
        correlate:
          - name: other
            group_by: [a]
          - name: hosts
            group_by: [b]
        """,
    )
    assert load_errors(rules_dir) == [
        f"{second}:4: correlate[1]: duplicate rule name 'hosts' in correlate "
        f"(first defined at {first}:2)"
    ]


def test_duplicate_rule_name_on_one_line(rules_dir: Path) -> None:
    path = write(
        rules_dir, "a.yaml", "correlate: [{name: a, group_by: [x]}, {name: a, group_by: [y]}]\n"
    )
    [error] = load_errors(rules_dir)
    assert error.startswith(f"{path}:1: correlate[1]: duplicate rule name 'a'")


def test_bad_title_template_points_at_the_title_key(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        correlate:
          - name: a
            group_by: [instance]
            title: "{{ labels.alertname "
        """,
    )
    [error] = load_errors(rules_dir)
    assert error.startswith(f"{path}:4: correlate[0].title: invalid template: ")


def test_all_errors_of_all_files_are_collected(rules_dir: Path) -> None:
    first = write(rules_dir, "a.yaml", "correlate:\n  - name: a\n    group_by: []\n")
    second = write(rules_dir, "b.yaml", "correlate: [\n")
    third = write(
        rules_dir, "c.yaml", "correlate:\n  - name: c\n    group_by: [x]\n    title: '{%'\n"
    )
    errors = load_errors(rules_dir)
    assert [error.split(": ")[0] for error in errors] == [f"{first}:3", f"{second}:2", f"{third}:4"]


def test_missing_directory_is_one_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert load_errors(missing) == [f"{missing}:1: rules directory does not exist"]


def test_empty_and_comment_only_files_are_fine(rules_dir: Path) -> None:
    write(rules_dir, "empty.yaml", "")
    write(rules_dir, "comments.yml", "# nothing here yet\n")
    write(rules_dir, "no-incidents.yaml", "{}\n")
    rule_set = load_rules(rules_dir)
    assert rule_set.correlate == ()
    assert rule_set.files == ("comments.yml", "empty.yaml", "no-incidents.yaml")


def test_compiles_rules_in_file_order(rules_dir: Path) -> None:
    (rules_dir / "notes.txt").write_text("not a rule file: [")
    (rules_dir / "nested").mkdir()
    (rules_dir / "nested" / "x.yaml").write_text("not: [valid")
    write(rules_dir, "b.yaml", "correlate:\n  - name: last\n    group_by: [alertname]\n")
    path = write(
        rules_dir,
        "a.yaml",
        """
        # leading comment
        correlate:
          - name: host-down
            matchers: ['alertname=~"Host.*"']
            match: {__source__: prometheus}
            group_by: [instance]
          - name: am-group
            match:
              __source__: alertmanager
            group_by: [__group_key__]
        """,
    )
    rule_set = load_rules(rules_dir)
    assert rule_set.files == ("a.yaml", "b.yaml")
    assert [rule.name for rule in rule_set.correlate] == ["host-down", "am-group", "last"]
    host_down, am_group, last = rule_set.correlate
    assert host_down.origin == Origin(path, 3)
    assert (am_group.origin.line, last.origin.line) == (7, 2)
    assert host_down.matchers == (
        LabelMatcher("alertname", MatchOp.REGEX, "Host.*"),
        LabelMatcher(SOURCE_LABEL, MatchOp.EQUAL, "prometheus"),
    )
    assert host_down.group_by == ("instance",)
    assert am_group.group_by == (GROUP_KEY_LABEL,)
    assert host_down.title is None
    # `matchers` and `match` are ANDed.
    assert host_down.matches({"alertname": "HostDown", SOURCE_LABEL: "prometheus"})
    assert not host_down.matches({"alertname": "HostDown", SOURCE_LABEL: "zabbix"})
    assert not host_down.matches({"alertname": "DiskFull", SOURCE_LABEL: "prometheus"})


def test_merge_keys_and_anchors_work(rules_dir: Path) -> None:
    write(
        rules_dir,
        "a.yaml",
        """
        correlate:
          - &base
            name: a
            group_by: [instance]
          - <<: *base
            name: b
        """,
    )
    rule_set = load_rules(rules_dir)
    assert [(r.name, r.group_by) for r in rule_set.correlate] == [
        ("a", ("instance",)),
        ("b", ("instance",)),
    ]


def test_shipped_rules_load() -> None:
    rule_set = load_rules(SHIPPED_RULES)
    assert rule_set.files == ("10-normalize.yaml", "20-correlate.yaml", "30-operations.yaml")
    assert rule_set.counts() == {
        "normalize": 3,
        "dedup": 1,
        "maintenance": 2,
        "inhibit": 1,
        "correlate": 3,
        "topology": 18,
        "heartbeats": 1,
        "problems": 2,
        "targets": 0,
        "escalations": 0,
        "routes": 0,
    }
    names = [rule.name for rule in rule_set.correlate]
    assert names == ["host-down", "alertmanager-group", "per-alert"]
    host_down, am_group, per_alert = rule_set.correlate
    assert host_down.matches({"alertname": "HostDown", SOURCE_LABEL: "alertmanager"})
    assert am_group.matches({"alertname": "DiskFull", SOURCE_LABEL: "alertmanager"})
    assert not am_group.matches({"alertname": "DiskFull", SOURCE_LABEL: "zabbix"})
    assert per_alert.matches({})
    assert all(rule.title is not None for rule in rule_set.correlate)
    correlate_file = SHIPPED_RULES / "20-correlate.yaml"
    line = correlate_file.read_text().splitlines().index("  - name: host-down") + 1
    assert host_down.origin == Origin(str(correlate_file), line)
    assert rule_set.topology is not None
    assert rule_set.topology.bind == "host"
    assert rule_set.topology.source_file == str(SHIPPED_RULES.parent / "cmdb.yaml")
    assert rule_set.flapping == FlappingPolicy(21, 20.0, 30.0, timedelta(minutes=30))
    assert [(p.name, p.by, p.count) for p in rule_set.problems] == [
        ("recurring", ProblemBy.KEY, 3),
        ("shared-root-cause", ProblemBy.CI, 2),
    ]


def test_digest_follows_the_file_contents(rules_dir: Path) -> None:
    write(rules_dir, "a.yaml", "correlate:\n  - name: a\n    group_by: [instance]\n")
    first = load_rules(rules_dir)
    assert len(first.digest) == 64
    assert load_rules(rules_dir).digest == first.digest
    # A comment changes no rule but changes the file, and the digest says which files are live.
    write(rules_dir, "a.yaml", "# hi\ncorrelate:\n  - name: a\n    group_by: [instance]\n")
    changed = load_rules(rules_dir)
    assert changed.digest != first.digest
    assert changed.correlate[0].name == "a"
    write(rules_dir, "b.yaml", "")
    assert load_rules(rules_dir).digest != changed.digest


def test_identical_files_compile_to_equal_rule_sets(rules_dir: Path) -> None:
    write(
        rules_dir,
        "a.yaml",
        """
        correlate:
          - name: a
            matchers: ['x=~y.*']
            group_by: [x]
            title: '{{ 1 }}'
        """,
    )
    assert load_rules(rules_dir) == load_rules(rules_dir)


def title_of(rules_dir: Path, template: str) -> str:
    # JSON strings are YAML double-quoted scalars, escapes included.
    rule = f"name: t\n    group_by: [x]\n    title: {json.dumps(template)}"
    write(rules_dir, "t.yaml", f"correlate:\n  - {rule}\n")
    title = load_rules(rules_dir).correlate[0].title
    assert title is not None
    return title.render({"alertname": "DiskFull"}, {"summary": "Disk full on db1"})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ labels.alertname }} on {{ labels.instance }}", "DiskFull on"),
        ("{{ annotations.summary or labels.alertname }}", "Disk full on db1"),
        ("{{ annotations.missing or labels.alertname }}", "DiskFull"),
        ("{{ labels.missing.deeper.still }}", ""),
        ("{{ labels.instance | upper }}", ""),
        ("{{ labels.count | int // 0 }}", ""),
        ("{{ labels.alertname + 1 }}", ""),
        ("{{ labels.missing + 1 }}", ""),
        ("{{ labels.__class__.__mro__ }}", ""),
        ("{{ labels.update({'a': '1'}) }}", ""),
        ("  a \n\n b\tc  ", "a b c"),
        ("{{ 'x' * 500 }}", "x" * 200),
        ("<b>{{ labels.alertname }}</b>", "<b>DiskFull</b>"),
    ],
)
def test_title_rendering_never_raises(rules_dir: Path, template: str, expected: str) -> None:
    assert title_of(rules_dir, template) == expected


def test_title_that_fails_renders_empty_so_the_stage_uses_its_default(rules_dir: Path) -> None:
    write(
        rules_dir, "t.yaml", "correlate:\n  - name: t\n    group_by: [x]\n    title: '{{ 1/0 }}'\n"
    )
    title = load_rules(rules_dir).correlate[0].title
    assert title is not None
    assert title.render({}, {}) == ""


# Every section: a valid example compiles into what the stages read.

SECTIONS = """
normalize:
  - name: host-from-instance
    match: {__source__: prometheus}
    labels:
      host: {from: [host_host, instance], regex: '([^:]+)(:\\d+)?', replacement: '$1'}
      site: {from: [dc], overwrite: true}
    severity: {label: priority, map: {P1: critical, P5: info}}
dedup:
  - name: values
    matchers: ['__source__="prometheus"']
    fingerprint: [alertname, host]
    ignore: [severity, annotations.description]
maintenance:
  - name: upgrade
    match: {host: db-1}
    reason: kernel update
    start: 2026-12-01T22:00:00+01:00
    end: 2026-12-01T23:00:00+01:00
inhibit:
  - name: host-down
    source_match: {alertname: HostDown}
    target_matchers: ['alertname!="HostDown"']
    equal: [host]
correlate:
  - name: host-down
    matchers: ['alertname="HostDown"']
    group_by: [host]
    window: 2h
    min_alerts: 2
    resolve_on: any
    impact: high
    continue: true
heartbeats:
  - name: watchdog
    match: {alertname: Watchdog}
    every: 5m
    severity: major
    labels: {team: sre}
    summary: no watchdog
problems:
  - name: recurring
    by: ci
    count: 4
    within: 1d
    rules: [host-down]
"""

SINGLE_SECTIONS = """
topology:
  cmdb: ../cmdb/items.yaml
  bind: node
priority:
  default_impact: low
  matrix: {low: {high: 2}}
flapping:
  history: 11
  settle: 10m
"""

CMDB = """
items:
  core: {type: switch}
  db-1: {type: server, parent: core}
"""


@pytest.fixture
def example(rules_dir: Path) -> RuleSet:
    (rules_dir.parent / "cmdb").mkdir()
    write(rules_dir.parent / "cmdb", "items.yaml", CMDB)
    write(rules_dir, "10-lists.yaml", SECTIONS)
    write(rules_dir, "20-single.yaml", SINGLE_SECTIONS)
    return load_rules(rules_dir)


def test_normalize_compiles(example: RuleSet) -> None:
    [rule] = example.normalize
    host, site = rule.labels
    assert (host.target, host.sources, host.regex.pattern, host.replacement, host.overwrite) == (
        "host",
        ("host_host", "instance"),
        "([^:]+)(:\\d+)?",
        "$1",
        False,
    )
    assert (site.sources, site.regex.pattern, site.replacement, site.overwrite) == (
        ("dc",),
        "(.*)",
        "$1",
        True,
    )
    assert (rule.severity_from, dict(rule.severity_map)) == (
        "priority",
        {"P1": Severity.CRITICAL, "P5": Severity.INFO},
    )
    assert rule.matchers == (LabelMatcher(SOURCE_LABEL, MatchOp.EQUAL, "prometheus"),)


def test_dedup_compiles(example: RuleSet) -> None:
    [rule] = example.dedup
    assert (rule.fingerprint, rule.ignore_severity, rule.ignore_annotations) == (
        ("alertname", "host"),
        True,
        frozenset({"description"}),
    )
    assert rule.ignore_all_annotations is False


def test_maintenance_compiles(example: RuleSet) -> None:
    [window] = example.maintenance
    assert (window.name, window.reason, window.label) == (
        "upgrade",
        "kernel update",
        "maintenance:upgrade",
    )
    inside = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)
    assert window.schedule.window_at(inside) == (
        datetime(2026, 12, 1, 21, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 22, 0, tzinfo=UTC),
    )


def test_inhibit_compiles(example: RuleSet) -> None:
    [rule] = example.inhibit
    assert rule.source == (LabelMatcher("alertname", MatchOp.EQUAL, "HostDown"),)
    assert rule.target == (LabelMatcher("alertname", MatchOp.NOT_EQUAL, "HostDown"),)
    assert rule.equal == ("host",)


def test_correlate_options_compile(example: RuleSet) -> None:
    [rule] = example.correlate
    assert (rule.window, rule.min_alerts, rule.resolve_on, rule.impact, rule.cont) == (
        timedelta(hours=2),
        2,
        ResolveOn.ANY,
        Level.HIGH,
        True,
    )


def test_heartbeats_compile(example: RuleSet) -> None:
    [rule] = example.heartbeats
    assert (rule.every, rule.severity, dict(rule.labels), rule.summary) == (
        timedelta(minutes=5),
        Severity.MAJOR,
        {"team": "sre"},
        "no watchdog",
    )


def test_problems_compile(example: RuleSet) -> None:
    [rule] = example.problems
    assert (rule.by, rule.count, rule.within, rule.rules) == (
        ProblemBy.CI,
        4,
        timedelta(days=1),
        frozenset({"host-down"}),
    )


def test_single_mapping_sections_compile(example: RuleSet, rules_dir: Path) -> None:
    topology = example.topology
    assert topology is not None
    assert (topology.bind, topology.cmdb.ancestors("db-1")) == ("node", ("core",))
    assert topology.source_file == str(rules_dir.parent / "cmdb" / "items.yaml")
    assert example.priority.default_impact is Level.LOW
    assert example.priority.lookup(Level.LOW, Level.HIGH) == 2
    assert (example.flapping.history, example.flapping.settle) == (11, timedelta(minutes=10))


def test_a_rule_name_may_be_used_once_per_section(example: RuleSet) -> None:
    assert example.inhibit[0].name == example.correlate[0].name == "host-down"


def test_the_digest_covers_the_cmdb(example: RuleSet, rules_dir: Path) -> None:
    write(rules_dir.parent / "cmdb", "items.yaml", CMDB + "  db-2: {type: server}\n")
    changed = load_rules(rules_dir)
    assert changed.digest != example.digest
    assert changed.topology is not None
    assert changed.topology.cmdb.item("db-2") is not None


# Every section: errors are reported as `file:line: message` at the offending line.

DURATION = "use e.g. '30s', '5m', '1h30m'"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "normalize:\n  - name: n\n    lables: {}\n",
            ["3: normalize[0]: unknown key 'lables'"],
            id="an unknown key in a normalize rule",
        ),
        pytest.param(
            "normalize:\n  - name: n\n    labels:\n      host: {from: [a], regex: '(a'}\n",
            [
                "4: normalize[0].labels.host.regex: invalid regex: "
                "missing ), unterminated subpattern at position 0"
            ],
            id="a bad regex in a label derivation",
        ),
        pytest.param(
            "normalize:\n  - name: n\n    labels:\n      host: {source: [a]}\n",
            [
                "4: normalize[0].labels.host: missing required key 'from'",
                "4: normalize[0].labels.host: unknown key 'source'",
            ],
            id="a label derivation without from",
        ),
        pytest.param(
            "normalize:\n  - name: n\n    severity: {map: {P1: fatal}}\n",
            [
                "3: normalize[0].severity.map.P1: unknown severity 'fatal': "
                "use critical, major, minor, warning or info"
            ],
            id="an unknown severity in a severity map",
        ),
        pytest.param(
            "dedup:\n  - name: d\n    ignore:\n      - severity\n      - annotation.summary\n",
            [
                "5: dedup[0].ignore[1]: cannot ignore 'annotation.summary': "
                "use severity, annotations or annotations.<name>"
            ],
            id="an ignore entry that names nothing ignorable",
        ),
        pytest.param(
            "dedup:\n  - name: d\n    fingerprint: [host-name]\n",
            [
                "3: dedup[0].fingerprint[0]: invalid label name 'host-name': "
                "must match [a-zA-Z_][a-zA-Z0-9_]*"
            ],
            id="a bad label name in a fingerprint",
        ),
        pytest.param(
            "maintenance:\n  - name: m\n    cron: '0 2 * * *'\n    duration: 2 hours\n",
            [f"4: maintenance[0].duration: invalid duration '2 hours': {DURATION}"],
            id="a bad maintenance duration",
        ),
        pytest.param(
            "maintenance:\n  - name: m\n    weekly: [{days: [sun], start: '01:00', end: '02:00'}]"
            "\n    timezone: Mars/Olympus\n",
            [
                "4: maintenance[0].timezone: unknown time zone 'Mars/Olympus': "
                "use an IANA name such as Europe/Berlin"
            ],
            id="an unknown maintenance time zone",
        ),
        pytest.param(
            "inhibit:\n  - name: i\n    source_matchers: ['a=~\"(\"']\n",
            [
                "3: inhibit[0].source_matchers[0]: invalid matcher 'a=~\"(\"': invalid regular "
                "expression '(': missing ), unterminated subpattern at position 0"
            ],
            id="a bad regex in an inhibit matcher",
        ),
        pytest.param(
            "inhibit:\n  - name: i\n    equals: [host]\n",
            ["3: inhibit[0]: unknown key 'equals'"],
            id="an unknown key in an inhibit rule",
        ),
        pytest.param(
            "correlate:\n  - name: c\n    group_by: [a]\n    window: 5 minutes\n",
            [f"4: correlate[0].window: invalid duration '5 minutes': {DURATION}"],
            id="a bad correlate window",
        ),
        pytest.param(
            "correlate:\n  - name: c\n    group_by: [a]\n    window: 0s\n",
            ["4: correlate[0].window: must be longer than zero"],
            id="a zero correlate window",
        ),
        pytest.param(
            "correlate:\n  - name: c\n    group_by: [a]\n    resolve_on: sometimes\n",
            ["4: correlate[0].resolve_on: Input should be 'all', 'any' or 'never'"],
            id="an unknown resolve_on",
        ),
        pytest.param(
            "heartbeats:\n  - name: h\n    every: never\n",
            [f"3: heartbeats[0].every: invalid duration 'never': {DURATION}"],
            id="a bad heartbeat interval",
        ),
        pytest.param(
            "heartbeats:\n  - name: h\n",
            ["2: heartbeats[0]: missing required key 'every'"],
            id="a heartbeat without an interval",
        ),
        pytest.param(
            "problems:\n  - name: p\n    count: 3\n    within: -1h\n",
            [f"4: problems[0].within: invalid duration '-1h': {DURATION}"],
            id="a bad problem period",
        ),
        pytest.param(
            "problems:\n  - name: p\n    by: host\n    count: 3\n    within: 1h\n",
            ["3: problems[0].by: Input should be 'key' or 'ci'"],
            id="an unknown problem grouping",
        ),
        pytest.param(
            "topology:\n  cmdb: x.yaml\n  bind_label: host\n",
            ["3: topology: unknown key 'bind_label'"],
            id="an unknown key in topology",
        ),
        pytest.param(
            "priority:\n  impact: high\n",
            ["2: priority: unknown key 'impact'"],
            id="an unknown key in priority",
        ),
        pytest.param(
            "flapping:\n  settle: soon\n",
            [f"2: flapping.settle: invalid duration 'soon': {DURATION}"],
            id="a bad flapping settle time",
        ),
        pytest.param(
            "flapping:\n  - history: 5\n",
            ["1: flapping: Input should be a valid dictionary or instance of FlappingSpec"],
            id="a single-mapping section given as a list",
        ),
    ],
)
def test_section_errors(rules_dir: Path, text: str, expected: list[str]) -> None:
    path = write(rules_dir, "a.yaml", text)
    assert load_errors(rules_dir) == [f"{path}:{line}" for line in expected]


@pytest.mark.parametrize(
    "section",
    [
        "normalize:\n  - name: r\n  - name: x\n  - name: r\n",
        "dedup:\n  - name: r\n  - name: x\n  - name: r\n",
        "maintenance:\n"
        "  - {name: r, start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z'}\n"
        "  - {name: x, start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z'}\n"
        "  - {name: r, start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z'}\n",
        "inhibit:\n  - name: r\n  - name: x\n  - name: r\n",
        "correlate:\n  - {name: r, group_by: [a]}\n  - {name: x, group_by: [a]}\n"
        "  - {name: r, group_by: [a]}\n",
        "heartbeats:\n  - {name: r, every: 1m}\n  - {name: x, every: 1m}\n"
        "  - {name: r, every: 1m}\n",
        "problems:\n  - {name: r, count: 2, within: 1h}\n  - {name: x, count: 2, within: 1h}\n"
        "  - {name: r, count: 2, within: 1h}\n",
    ],
    ids=lambda text: f"a duplicate rule name in {text.split(':')[0]} is reported at the second",
)
def test_duplicate_rule_names_within_a_section(rules_dir: Path, section: str) -> None:
    path = write(rules_dir, "a.yaml", section)
    name = section.split(":")[0]
    assert load_errors(rules_dir) == [
        f"{path}:4: {name}[2]: duplicate rule name 'r' in {name} (first defined at {path}:2)"
    ]


def test_a_missing_cmdb_is_reported_at_the_cmdb_key(rules_dir: Path) -> None:
    path = write(rules_dir, "a.yaml", "topology:\n  bind: host\n  cmdb: nowhere.yaml\n")
    missing = rules_dir / "nowhere.yaml"
    assert load_errors(rules_dir) == [
        f"{path}:3: topology.cmdb: cannot read CMDB '{missing}': No such file or directory"
    ]


def test_an_invalid_cmdb_is_reported_in_the_cmdb_file(rules_dir: Path) -> None:
    write(rules_dir, "a.yaml", "topology:\n  cmdb: ../cmdb.yml\n")
    cmdb = write(rules_dir.parent, "cmdb.yml", "items:\n  a: {type: vm, parent: nope}\n")
    assert load_errors(rules_dir) == [
        f"{cmdb}:2: items.a.parent: unknown configuration item 'nope'"
    ]


@pytest.mark.parametrize(
    ("first", "second", "second_line"),
    [
        pytest.param(
            "topology:\n  cmdb: ../cmdb.yml\n",
            "# the CMDB again\ntopology:\n  cmdb: ../cmdb.yml\n",
            2,
            id="topology in two files is reported at the second",
        ),
        pytest.param(
            "priority: {default_impact: low}\n",
            "priority: {default_impact: high}\n",
            1,
            id="priority in two files is reported at the second",
        ),
        pytest.param(
            "flapping:\n  history: 5\n",
            "correlate: []\nflapping:\n  history: 7\n",
            2,
            id="flapping in two files is reported at the second",
        ),
        pytest.param(
            "topology:\n  cmdb: missing.yml\n",
            "topology:\n  cmdb: ../cmdb.yml\n",
            1,
            id="a section is taken even when the first file's copy failed",
        ),
    ],
)
def test_a_single_mapping_section_in_two_files(
    rules_dir: Path, first: str, second: str, second_line: int
) -> None:
    write(rules_dir.parent, "cmdb.yml", CMDB)
    first_path = write(rules_dir, "10-a.yaml", first)
    second_path = write(rules_dir, "20-b.yaml", second)
    section = first.split(":")[0]
    errors = load_errors(rules_dir)
    assert errors[-1] == (
        f"{second_path}:{second_line}: section '{section}' is already defined in {first_path}:1"
    )
