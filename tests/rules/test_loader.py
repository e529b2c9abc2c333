"""`rules.loader`: every problem is reported as `file:line: message`, at the offending line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rules.loader import RuleLoadError, load_rules
from rules.match import LabelMatcher, MatchOp
from rules.model import GROUP_KEY_LABEL, SOURCE_LABEL
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
        incidents:
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
        incidents:
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
        incidents:
          - name: a
            group_by: [instance]
          - name: b
            group_by: [instance]

            grouping: [alertname]
        normalize: {}
        """,
    )
    assert load_errors(rules_dir) == [
        f"{path}:7: incidents[1]: unknown key 'grouping'",
        f"{path}:8: unknown key 'normalize'",
    ]


def test_bad_matcher_points_at_its_list_item(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        incidents:
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
        f"{path}:5: incidents[0].matchers[1]: invalid matcher",
        f"{path}:6: incidents[0].matchers[2]: invalid matcher",
    ]
    assert "invalid regular expression '('" in errors[1]


def test_empty_group_by_points_at_the_key(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        incidents:
          - name: a
            title: x
            group_by: []
        """,
    )
    assert load_errors(rules_dir) == [
        f"{path}:4: incidents[0].group_by: group_by must name at least one label"
    ]


def test_group_by_items_are_checked_one_by_one(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        incidents:
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
        f"{path}:5: incidents[0].group_by[1]: invalid label name 'host-name': "
        "must match [a-zA-Z_][a-zA-Z0-9_]*",
        f"{path}:10: incidents[1].group_by[2]: label 'instance' is listed twice",
    ]


def test_missing_group_by_points_at_the_rule(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        incidents:
          - name: a
            group_by: [instance]
          - name: b
            title: no grouping
        """,
    )
    assert load_errors(rules_dir) == [f"{path}:4: incidents[1]: missing required key 'group_by'"]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("name: Host-Down", ":2: incidents[0].name: invalid rule name 'Host-Down'"),
        ("name: -x", ":2: incidents[0].name: invalid rule name '-x'"),
        (
            "name: a\n    match: {bad-key: x}",
            ":3: incidents[0].match: invalid label name 'bad-key'",
        ),
        ("name: a\n    match: {code: 500}", ":3: incidents[0].match.code: expected a string"),
        ("name: a\n    title: 5", ":3: incidents[0].title: expected a string"),
        ("name: a\n    matchers: 'a=b'", ":3: incidents[0].matchers: Input should be a valid list"),
    ],
)
def test_field_errors(rules_dir: Path, rule: str, expected: str) -> None:
    path = write(rules_dir, "a.yaml", f"incidents:\n  - {rule}\n    group_by: [instance]\n")
    [error] = load_errors(rules_dir)
    assert error.startswith(path + expected)


def test_top_level_must_be_a_mapping(rules_dir: Path) -> None:
    path = write(rules_dir, "a.yaml", "- name: a\n")
    assert load_errors(rules_dir) == [f"{path}:1: the top level must be a mapping of sections"]


def test_duplicate_rule_name_across_files_points_at_the_second(rules_dir: Path) -> None:
    first = write(rules_dir, "10-hosts.yaml", "incidents:\n  - name: hosts\n    group_by: [a]\n")
    second = write(
        rules_dir,
        "20-more.yml",
        """
        incidents:
          - name: other
            group_by: [a]
          - name: hosts
            group_by: [b]
        """,
    )
    assert load_errors(rules_dir) == [
        f"{second}:4: incidents[1]: duplicate rule name 'hosts' (first defined at {first}:2)"
    ]


def test_duplicate_rule_name_on_one_line(rules_dir: Path) -> None:
    path = write(
        rules_dir, "a.yaml", "incidents: [{name: a, group_by: [x]}, {name: a, group_by: [y]}]\n"
    )
    [error] = load_errors(rules_dir)
    assert error.startswith(f"{path}:1: incidents[1]: duplicate rule name 'a'")


def test_bad_title_template_points_at_the_title_key(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        """
        incidents:
          - name: a
            group_by: [instance]
            title: "{{ labels.alertname "
        """,
    )
    [error] = load_errors(rules_dir)
    assert error.startswith(f"{path}:4: incidents[0].title: invalid template: ")


def test_all_errors_of_all_files_are_collected(rules_dir: Path) -> None:
    first = write(rules_dir, "a.yaml", "incidents:\n  - name: a\n    group_by: []\n")
    second = write(rules_dir, "b.yaml", "incidents: [\n")
    third = write(
        rules_dir, "c.yaml", "incidents:\n  - name: c\n    group_by: [x]\n    title: '{%'\n"
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
    assert rule_set.incident_rules == ()
    assert rule_set.files == ("comments.yml", "empty.yaml", "no-incidents.yaml")


def test_compiles_rules_in_file_order(rules_dir: Path) -> None:
    (rules_dir / "notes.txt").write_text("not a rule file: [")
    (rules_dir / "nested").mkdir()
    (rules_dir / "nested" / "x.yaml").write_text("not: [valid")
    write(rules_dir, "b.yaml", "incidents:\n  - name: last\n    group_by: [alertname]\n")
    path = write(
        rules_dir,
        "a.yaml",
        """
        # leading comment
        incidents:
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
    assert [rule.name for rule in rule_set.incident_rules] == ["host-down", "am-group", "last"]
    host_down, am_group, last = rule_set.incident_rules
    assert (host_down.source_file, host_down.source_line) == (path, 3)
    assert (am_group.source_line, last.source_line) == (7, 2)
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
        incidents:
          - &base
            name: a
            group_by: [instance]
          - <<: *base
            name: b
        """,
    )
    rule_set = load_rules(rules_dir)
    assert [(r.name, r.group_by) for r in rule_set.incident_rules] == [
        ("a", ("instance",)),
        ("b", ("instance",)),
    ]


def test_shipped_rules_load() -> None:
    rule_set = load_rules(SHIPPED_RULES)
    assert rule_set.files == ("incidents.yaml",)
    names = [rule.name for rule in rule_set.incident_rules]
    assert names == ["host-down", "alertmanager-group", "per-alert"]
    host_down, am_group, per_alert = rule_set.incident_rules
    assert host_down.matches({"alertname": "HostDown", SOURCE_LABEL: "alertmanager"})
    assert am_group.matches({"alertname": "DiskFull", SOURCE_LABEL: "alertmanager"})
    assert not am_group.matches({"alertname": "DiskFull", SOURCE_LABEL: "zabbix"})
    assert per_alert.matches({})
    assert all(rule.title is not None for rule in rule_set.incident_rules)


def test_digest_follows_the_file_contents(rules_dir: Path) -> None:
    write(rules_dir, "a.yaml", "incidents:\n  - name: a\n    group_by: [instance]\n")
    first = load_rules(rules_dir)
    assert len(first.digest) == 64
    assert load_rules(rules_dir).digest == first.digest
    # A comment changes no rule but changes the file, and the digest says which files are live.
    write(rules_dir, "a.yaml", "# hi\nincidents:\n  - name: a\n    group_by: [instance]\n")
    changed = load_rules(rules_dir)
    assert changed.digest != first.digest
    assert changed.incident_rules[0].name == "a"
    write(rules_dir, "b.yaml", "")
    assert load_rules(rules_dir).digest != changed.digest


def test_identical_files_compile_to_equal_rule_sets(rules_dir: Path) -> None:
    write(
        rules_dir,
        "a.yaml",
        """
        incidents:
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
    write(rules_dir, "t.yaml", f"incidents:\n  - {rule}\n")
    title = load_rules(rules_dir).incident_rules[0].title
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
        rules_dir, "t.yaml", "incidents:\n  - name: t\n    group_by: [x]\n    title: '{{ 1/0 }}'\n"
    )
    title = load_rules(rules_dir).incident_rules[0].title
    assert title is not None
    assert title.render({}, {}) == ""
