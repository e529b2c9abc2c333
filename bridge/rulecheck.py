"""`bridge rules check`: validate a rules directory offline, as a reload would.

Input: a rules directory. Output: every problem as `file:line: message` (the loader's errors:
schema, matchers, templates, schedules, the CMDB the topology names, the options of every
notification target against its channel, with `${NAME}` read from the environment), or one
line per rule section with its count (`RuleSet.counts`). Rules that load but can never take
effect (a correlate rule behind a catch-all, a problem rule `by: ci` without a topology, a `rules:`
filter or a `root_rules` entry naming no correlate rule) are reported as warnings; they do
not fail the check, since the daemon would load them too.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bridge.notify.channels import check_targets
from rules.loader import RuleLoadError, load_rules
from rules.ruleset import DEFAULT_GROUP_RULE, DEFAULT_LABEL_RULE, Origin, ProblemBy, RuleSet

_UNITS = {
    "maintenance": "window",
    "topology": "configuration item",
    "targets": "target",
    "escalations": "policy",
    "routes": "route",
}


def check(directory: Path) -> int:
    try:
        ruleset = load_rules(directory)
    except RuleLoadError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    target_errors = check_targets(ruleset)
    if target_errors:
        for line in target_errors:
            print(line, file=sys.stderr)
        return 1
    for warning in warnings(ruleset):
        print(warning, file=sys.stderr)
    if not ruleset.files:
        print(f"{directory}:1: warning: no rule files (*.yaml, *.yml)", file=sys.stderr)
    print(f"{directory}: {len(ruleset.files)} rule files ok")
    for section, count in ruleset.counts().items():
        unit = _UNITS.get(section, "rule")
        plural = "policies" if unit == "policy" else f"{unit}s"
        text = f"{section}: {count} {unit if count == 1 else plural}"
        if section == "topology" and ruleset.topology is not None:
            text += f" (CMDB {ruleset.topology.source_file}, bind label {ruleset.topology.bind})"
        print(text)
    return 0


def warnings(ruleset: RuleSet) -> list[str]:
    return _unreachable_correlate(ruleset) + _problem_warnings(ruleset) + _root_warnings(ruleset)


def _correlate_names(ruleset: RuleSet) -> set[str]:
    """The rule names an incident can have: the correlate rules' and the built-in fallbacks'."""
    return {rule.name for rule in ruleset.correlate} | {
        DEFAULT_GROUP_RULE.name,
        DEFAULT_LABEL_RULE.name,
    }


def _unreachable_correlate(ruleset: RuleSet) -> list[str]:
    found: list[str] = []
    catch_all = None
    for rule in ruleset.correlate:
        if catch_all is not None:
            found.append(_warn(rule.origin, f"correlate rule {rule.name!r} is never reached: "
                               f"{catch_all!r} before it takes every alert"))  # fmt: skip
        elif not rule.matchers and not rule.cont:
            catch_all = rule.name
    return found


def _problem_warnings(ruleset: RuleSet) -> list[str]:
    found: list[str] = []
    correlate = _correlate_names(ruleset)
    for rule in ruleset.problems:
        for name in sorted(rule.rules - correlate):
            found.append(
                _warn(rule.origin, f"problem rule {rule.name!r}: no correlate rule {name!r}")
            )
        if rule.by is ProblemBy.CI and ruleset.topology is None:
            found.append(_warn(rule.origin, f"problem rule {rule.name!r} is by CI, but no "
                               "topology section binds alerts to CIs"))  # fmt: skip
    return found


def _root_warnings(ruleset: RuleSet) -> list[str]:
    """A `root_rules` entry naming no correlate rule (a typo turns topology off)."""
    topology = ruleset.topology
    if topology is None:
        return []
    return [
        _warn(topology.origin, f"topology root_rules: no correlate rule {name!r}")
        for name in sorted(topology.root_rules - _correlate_names(ruleset))
    ]


def _warn(origin: Origin, message: str) -> str:
    return f"{origin.file}:{origin.line}: warning: {message}"
