"""The notification sections of the rule files (`targets`, `escalations`, `routes`): a valid
example compiles into what `rules.notify` reads, and every problem is a `file:line` error."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from rules import incidents
from rules.loader import JinjaMessage, RuleLoadError, load_rules
from rules.match import LabelMatcher, MatchOp
from rules.model import IncidentState, Severity, Transition, evolve
from rules.notify import on_change, routes_for
from rules.ruleset import ALL_TRANSITIONS, EscalationStep, Origin, RuleSet
from tests.files import write
from tests.rules.builders import T0


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


NOTIFY = """
targets:
  - name: hooks
    channel: webhook
    options: {url: 'https://example.com/hook', secret: '${HOOK_SECRET}'}
  - name: chat
    channel: slack
    options: {webhook_url: '${SLACK_URL}'}
    fallback: mail
    title: '[P{{ priority }}] {{ title }}'
  - name: ops-teams
    channel: teams
  - name: mail
    channel: email
    options: {to: [ops@example.com]}
    body: '{{ summary }}'
  - name: pager
    channel: pagerduty
    fallback: chat
  - name: tickets
    channel: servicenow
  - name: jira
    channel: jira
escalations:
  - name: oncall
    steps:
      - after: 0s
        targets: [pager]
      - after: 15m
        targets: [chat, mail]
      - {after: 1h, targets: [ops-teams]}
    repeat: 2
    repeat_after: 45m
  - name: simple
    steps:
      - {after: 90, targets: [mail]}
routes:
  - name: database
    matchers: ['team=~"db|dba"']
    match: {env: prod}
    targets: [tickets]
    continue: true
  - name: urgent
    priority: [1, 2]
    services: [payments, checkout]
    sources: [alertmanager, zabbix]
    severity: [critical, major]
    targets: [chat, jira]
    escalation: oncall
    send: [opened, escalated, resolved]
    repeat_interval: 2h
  - name: rest
    targets: [hooks]
"""


@pytest.fixture
def example(rules_dir: Path) -> RuleSet:
    write(rules_dir, "50-notify.yaml", NOTIFY)
    return load_rules(rules_dir)


def test_every_channel_compiles_into_a_target(example: RuleSet, rules_dir: Path) -> None:
    assert [(t.name, t.channel) for t in example.targets] == [
        ("hooks", "webhook"),
        ("chat", "slack"),
        ("ops-teams", "teams"),
        ("mail", "email"),
        ("pager", "pagerduty"),
        ("tickets", "servicenow"),
        ("jira", "jira"),
    ]
    hooks = example.target("hooks")
    assert hooks is not None
    # `${NAME}` is left for the daemon to read from the environment.
    assert hooks.options == {"url": "https://example.com/hook", "secret": "${HOOK_SECRET}"}
    assert (hooks.fallback, hooks.title, hooks.body) == (None, None, None)
    assert hooks.origin == Origin(str(rules_dir / "50-notify.yaml"), 2)
    chat = example.target("chat")
    assert chat is not None
    assert chat.fallback == "mail"
    assert isinstance(chat.title, JinjaMessage)
    assert chat.title.render_message({"priority": 1, "title": "Disk full"}) == "[P1] Disk full"
    mail = example.target("mail")
    assert mail is not None
    assert mail.options == {"to": ["ops@example.com"]}
    assert mail.body is not None
    assert mail.body.render_message({"summary": "it broke"}) == "it broke"
    assert example.target("nope") is None


def test_escalations_compile(example: RuleSet) -> None:
    oncall = example.escalation("oncall")
    assert oncall is not None
    assert oncall.steps == (
        EscalationStep(timedelta(0), ("pager",)),
        EscalationStep(timedelta(minutes=15), ("chat", "mail")),
        EscalationStep(timedelta(hours=1), ("ops-teams",)),
    )
    assert (oncall.repeat, oncall.repeat_after) == (2, timedelta(minutes=45))
    assert oncall.round_length == timedelta(minutes=105)
    simple = example.escalation("simple")
    assert simple is not None
    assert simple.steps == (EscalationStep(timedelta(seconds=90), ("mail",)),)
    assert (simple.repeat, simple.repeat_after) == (0, timedelta(minutes=30))
    assert example.escalation("nope") is None


def test_routes_compile(example: RuleSet) -> None:
    database, urgent, rest = example.routes
    assert database.name == "database"
    assert database.matchers == (
        LabelMatcher("team", MatchOp.REGEX, "db|dba"),
        LabelMatcher("env", MatchOp.EQUAL, "prod"),
    )
    assert (database.targets, database.cont, database.send) == (("tickets",), True, ALL_TRANSITIONS)
    assert urgent.priorities == frozenset({1, 2})
    assert urgent.services == frozenset({"payments", "checkout"})
    assert urgent.sources == frozenset({"alertmanager", "zabbix"})
    assert urgent.severities == frozenset({Severity.CRITICAL, Severity.MAJOR})
    assert (urgent.targets, urgent.escalation) == (("chat", "jira"), "oncall")
    assert urgent.send == frozenset({Transition.OPENED, Transition.ESCALATED, Transition.RESOLVED})
    assert all(isinstance(t, Transition) for t in urgent.send)
    assert urgent.repeat_interval == timedelta(hours=2)
    assert urgent.cont is False
    assert (rest.matchers, rest.priorities, rest.send, rest.repeat_interval, rest.escalation) == (
        (),
        frozenset(),
        ALL_TRANSITIONS,
        None,
        None,
    )


def test_counts_include_the_notification_sections(example: RuleSet) -> None:
    counts = example.counts()
    assert (counts["targets"], counts["escalations"], counts["routes"]) == (7, 2, 3)


def opened(**changes: object) -> IncidentState:
    base = incidents.opened(7, "k", 0, "rule", "title", Severity.CRITICAL, T0)
    return evolve(base, **changes)


def test_the_loaded_routes_route(example: RuleSet) -> None:
    db_p1 = opened(
        labels={"team": "dba", "env": "prod"}, priority=1, service="payments", source="zabbix"
    )
    assert [r.name for r in routes_for(example, db_p1)] == ["database", "urgent"]
    plan = on_change(example, None, db_p1, set(), None, T0)
    assert [n.target for n in plan.notices] == ["chat", "jira", "pager", "tickets"]
    staging = opened(labels={"team": "db", "env": "staging"}, priority=1, source="nagios")
    assert [r.name for r in routes_for(example, staging)] == ["rest"]


def test_sections_from_several_files_concatenate(rules_dir: Path) -> None:
    write(rules_dir, "10-targets.yaml", "targets:\n  - {name: a, channel: slack}\n")
    write(
        rules_dir,
        "20-more.yaml",
        "targets:\n  - {name: b, channel: email}\n"
        "escalations:\n  - {name: e, steps: [{after: 5m, targets: [a]}]}\n",
    )
    write(rules_dir, "30-routes.yaml", "routes:\n  - {name: r, targets: [b], escalation: e}\n")
    rules = load_rules(rules_dir)
    assert [t.name for t in rules.targets] == ["a", "b"]
    assert [p.name for p in rules.escalations] == ["e"]
    assert [r.name for r in rules.routes] == ["r"]


def test_no_notification_sections_is_fine(rules_dir: Path) -> None:
    write(rules_dir, "a.yaml", "correlate: []\n")
    rules = load_rules(rules_dir)
    assert (rules.targets, rules.escalations, rules.routes) == ((), (), ())


def test_send_may_be_empty(rules_dir: Path) -> None:
    # A route that swallows what it matches: the first match wins, nobody is told.
    write(rules_dir, "a.yaml", "routes:\n  - {name: mute, send: []}\n")
    [mute] = load_rules(rules_dir).routes
    assert mute.send == frozenset()


# Errors: schema problems point at the offending key or item

DURATION = "use e.g. '30s', '5m', '1h30m'"
TARGET = "targets:\n  - {name: t, channel: slack}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "targets:\n  - name: t\n    channel: sms\n",
            [
                "3: targets[0].channel: Input should be 'webhook', 'slack', 'teams', 'email', "
                "'pagerduty', 'servicenow' or 'jira'"
            ],
            id="an unknown channel",
        ),
        pytest.param(
            "targets:\n  - name: t\n",
            ["2: targets[0]: missing required key 'channel'"],
            id="a target without a channel",
        ),
        pytest.param(
            "targets:\n  - name: Pager\n    channel: slack\n",
            [
                "2: targets[0].name: invalid rule name 'Pager': use lower-case letters, "
                "digits and _ . - (starting with a letter or digit, at most 100 characters)"
            ],
            id="a bad target name",
        ),
        pytest.param(
            "targets:\n  - name: t\n    channel: slack\n    url: x\n",
            ["4: targets[0]: unknown key 'url'"],
            id="a channel option outside options",
        ),
        pytest.param(
            "targets:\n  - name: t\n    channel: slack\n    title: '{{ title '\n",
            ["4: targets[0].title: invalid template: "],
            id="a bad title template",
        ),
        pytest.param(
            "targets:\n  - name: t\n    channel: slack\n    body: '{% if %}'\n",
            ["4: targets[0].body: invalid template: "],
            id="a bad body template",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    targets: [t]\n    send: [opened, acked]\n",
            [
                "6: routes[0].send[1]: Input should be 'opened', 'reopened', 'acknowledged', "
                "'escalated', 'resolved', 'closed', 'sla_breach' or 'repeat'"
            ],
            id="an unknown transition in send",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    priority: [0]\n",
            ["5: routes[0].priority[0]: Input should be greater than or equal to 1"],
            id="priority 0",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    priority:\n      - 1\n      - 6\n",
            ["7: routes[0].priority[1]: Input should be less than or equal to 5"],
            id="priority 6",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    priority: ['1']\n",
            ["5: routes[0].priority[0]: Input should be a valid integer"],
            id="a priority as a string",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    severity: [fatal]\n",
            [
                "5: routes[0].severity[0]: unknown severity 'fatal': "
                "use critical, major, minor, warning or info"
            ],
            id="an unknown severity",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    matchers: ['team']\n",
            ["5: routes[0].matchers[0]: invalid matcher 'team'"],
            id="a bad matcher",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    match: {bad-label: x}\n",
            ["5: routes[0].match: invalid label name 'bad-label'"],
            id="a bad label name in match",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    repeat_interval: soon\n",
            [f"5: routes[0].repeat_interval: invalid duration 'soon': {DURATION}"],
            id="a bad repeat_interval",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    repeat_interval: 0s\n",
            ["5: routes[0].repeat_interval: must be longer than zero"],
            id="a zero repeat_interval",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    cont: true\n",
            ["5: routes[0]: unknown key 'cont'"],
            id="the attribute name instead of continue",
        ),
        pytest.param(
            TARGET + "escalations:\n  - name: e\n    steps:\n      - after: -5\n"
            "        targets: [t]\n",
            ["6: escalations[0].steps[0].after: a duration cannot be negative"],
            id="a negative step delay in seconds",
        ),
        pytest.param(
            TARGET + "escalations:\n  - name: e\n    steps:\n      - after: -5m\n"
            "        targets: [t]\n",
            [f"6: escalations[0].steps[0].after: invalid duration '-5m': {DURATION}"],
            id="a negative step delay",
        ),
        pytest.param(
            TARGET + "escalations:\n  - name: e\n    steps:\n      - after: 5 minutes\n"
            "        targets: [t]\n",
            [f"6: escalations[0].steps[0].after: invalid duration '5 minutes': {DURATION}"],
            id="a bad step delay",
        ),
        pytest.param(
            TARGET + "escalations:\n  - name: e\n    steps:\n      - targets: [t]\n",
            ["6: escalations[0].steps[0]: missing required key 'after'"],
            id="a step without a delay",
        ),
        pytest.param(
            TARGET + "escalations:\n  - name: e\n    steps:\n      - after: 5m\n"
            "        targets: []\n",
            ["7: escalations[0].steps[0].targets: List should have at least 1 item"],
            id="a step without targets",
        ),
        pytest.param(
            TARGET + "escalations:\n  - name: e\n    steps: []\n",
            ["5: escalations[0].steps: List should have at least 1 item"],
            id="an escalation without steps",
        ),
        pytest.param(
            TARGET + "escalations:\n  - name: e\n    steps: [{after: 0s, targets: [t]}]\n"
            "    repeat: -1\n",
            ["6: escalations[0].repeat: Input should be greater than or equal to 0"],
            id="a negative repeat",
        ),
        pytest.param(
            TARGET + "escalations:\n  - name: e\n    steps: [{after: 0s, targets: [t]}]\n"
            "    repeat_after: 0s\n",
            ["6: escalations[0].repeat_after: must be longer than zero"],
            id="a zero repeat_after",
        ),
    ],
)
def test_section_errors(rules_dir: Path, text: str, expected: list[str]) -> None:
    path = write(rules_dir, "a.yaml", text)
    errors = load_errors(rules_dir)
    assert len(errors) == len(expected), errors
    for error, start in zip(errors, expected, strict=True):
        assert error.startswith(f"{path}:{start}")


# Errors: references to targets and escalations that do not exist. Which line they point at
# is `test_reference_errors_point_at_the_offending_line`'s business, below.


def reference_errors(directory: Path, path: str) -> list[str]:
    """The messages of the errors, each checked to start with `path:<line>: `."""
    found = []
    for error in load_errors(directory):
        # The key or list item that names it comes first: `routes[0].targets[1]: ...`.
        match = re.fullmatch(rf"{re.escape(path)}:[1-9][0-9]*: (?:[\w\[\].]+: )?(.*)", error)
        assert match is not None, error
        found.append(match[1])
    return found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            TARGET + "routes:\n  - name: r\n    targets: [t, pager]\n",
            ["unknown target 'pager'"],
            id="an unknown target in a route",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    targets: [zed, t, pager]\n",
            ["unknown target 'zed'", "unknown target 'pager'"],
            id="every unknown target of a route",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    escalation: oncall\n",
            ["unknown escalation 'oncall'"],
            id="an unknown escalation in a route",
        ),
        pytest.param(
            TARGET + "escalations:\n  - name: e\n    steps:\n      - {after: 0s, targets: [t]}\n"
            "      - {after: 5m, targets: [pager]}\n",
            ["unknown target 'pager'"],
            id="an unknown target in an escalation step",
        ),
        pytest.param(
            "targets:\n  - name: t\n    channel: slack\n    fallback: ghost\n",
            ["unknown fallback target 'ghost'"],
            id="an unknown fallback",
        ),
    ],
)
def test_reference_errors(rules_dir: Path, text: str, expected: list[str]) -> None:
    path = write(rules_dir, "a.yaml", text)
    assert reference_errors(rules_dir, path) == expected


def test_a_fallback_to_itself_is_an_error(rules_dir: Path) -> None:
    path = write(
        rules_dir, "a.yaml", "targets:\n  - name: t\n    channel: slack\n    fallback: t\n"
    )
    [message] = reference_errors(rules_dir, path)
    assert "fallback" in message
    assert "'t'" in message


def test_targets_may_come_after_the_routes_and_fall_back_to_each_other(rules_dir: Path) -> None:
    write(
        rules_dir,
        "a.yaml",
        "routes:\n  - name: r\n    targets: [t]\n"
        "targets:\n  - {name: t, channel: slack, fallback: u}\n"
        "  - {name: u, channel: email, fallback: t}\n",
    )
    rules = load_rules(rules_dir)
    assert [(t.name, t.fallback) for t in rules.targets] == [("t", "u"), ("u", "t")]


def test_references_across_files(rules_dir: Path) -> None:
    write(rules_dir, "10-targets.yaml", TARGET)
    routes = write(
        rules_dir,
        "20-routes.yaml",
        "routes:\n  - {name: r, targets: [t]}\n  - {name: s, targets: [u]}\n",
    )
    assert reference_errors(rules_dir, routes) == ["unknown target 'u'"]


@pytest.mark.parametrize("section", ["targets", "escalations", "routes"])
def test_duplicate_names_are_reported_at_the_second(rules_dir: Path, section: str) -> None:
    items = {
        "targets": "{name: %s, channel: slack}",
        "escalations": "{name: %s, steps: [{after: 0s, targets: [t]}]}",
        "routes": "{name: %s, targets: [t]}",
    }[section]
    text = f"{section}:\n" + "".join(f"  - {items % name}\n" for name in ("t", "x", "t"))
    if section != "targets":
        text += TARGET
    path = write(rules_dir, "a.yaml", text)
    assert load_errors(rules_dir) == [
        f"{path}:4: {section}[2]: duplicate rule name 't' in {section} (first defined at {path}:2)"
    ]


def test_a_name_may_be_used_once_per_section(rules_dir: Path) -> None:
    write(
        rules_dir,
        "a.yaml",
        "targets: [{name: oncall, channel: slack}]\n"
        "escalations: [{name: oncall, steps: [{after: 0s, targets: [oncall]}]}]\n"
        "routes: [{name: oncall, targets: [oncall], escalation: oncall}]\n",
    )
    rules = load_rules(rules_dir)
    assert rules.counts()["targets"] == rules.counts()["routes"] == 1


def test_continue_is_the_yaml_key(rules_dir: Path) -> None:
    write(rules_dir, "a.yaml", TARGET + "routes:\n  - {name: a, continue: true}\n  - {name: b}\n")
    first, second = load_rules(rules_dir).routes
    assert (first.cont, second.cont) == (True, False)


# Bugs


def test_an_invalid_target_file_does_not_make_its_good_targets_unknown(rules_dir: Path) -> None:
    targets = write(
        rules_dir,
        "10-targets.yaml",
        "targets:\n  - name: pager\n    channel: pagerduty\n  - name: chat\n    channel: slak\n",
    )
    write(
        rules_dir,
        "20-routes.yaml",
        "escalations:\n  - {name: e, steps: [{after: 5m, targets: [pager]}]}\n"
        "routes:\n  - {name: r, targets: [pager], escalation: e}\n",
    )
    errors = load_errors(rules_dir)
    assert [error.split(": ")[0] for error in errors] == [f"{targets}:5"]


def test_escalation_steps_out_of_order_are_an_error(rules_dir: Path) -> None:
    path = write(
        rules_dir,
        "a.yaml",
        TARGET + "escalations:\n  - name: e\n    steps:\n"
        "      - {after: 30m, targets: [t]}\n      - {after: 10m, targets: [t]}\n",
    )
    errors = load_errors(rules_dir)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:")
    assert "escalations[0].steps" in errors[0]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(
            TARGET + "routes:\n  - name: r\n    send: [opened]\n    targets: [t, pager]\n",
            6,
            id="route target",
        ),
        pytest.param(
            TARGET + "routes:\n  - name: r\n    targets: [t]\n    escalation: nope\n",
            6,
            id="route escalation",
        ),
        pytest.param(
            TARGET + "escalations:\n  - name: e\n    steps:\n      - {after: 0s, targets: [t]}\n"
            "      - {after: 5m, targets: [pager]}\n",
            7,
            id="step target",
        ),
        pytest.param(
            "targets:\n  - name: t\n    channel: slack\n    fallback: ghost\n",
            4,
            id="fallback",
        ),
    ],
)
def test_reference_errors_point_at_the_offending_line(
    rules_dir: Path, text: str, line: int
) -> None:
    path = write(rules_dir, "a.yaml", text)
    [error] = load_errors(rules_dir)
    assert error.startswith(f"{path}:{line}: ")
