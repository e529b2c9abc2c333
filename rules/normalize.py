"""Stage `normalize`: give alerts from every source the same common labels and severities.

Input: one decoded `Event` and the rule set. Output: the event with derived labels (e.g. `host`
from Prometheus' `instance` without the port, from Zabbix' `host_host`, from Nagios'
`HOSTNAME`), a severity from the `severity` mapping, and the `service` label from the CMDB
when the topology binds the alert to a CI that serves one; plus the names of the rules that
applied (the `rule` label of `bridge_rule_decisions_total{stage="normalize"}`).

Rule section: `normalize`. Every matching rule applies, in file order, and each sees the
labels the previous ones derived; a derivation only fills a label that is missing or empty
unless it says `overwrite: true`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from rules.model import Event, Severity, evolve
from rules.ruleset import LabelDerivation, NormalizeRule, RuleSet, all_match

SEVERITY_PSEUDO = "__severity__"
_GROUP_REF = re.compile(r"\$(?:(\d+)|\{(\w+)\})")


def normalize(ruleset: RuleSet, event: Event) -> tuple[Event, tuple[str, ...]]:
    if not ruleset.normalize and ruleset.topology is None:
        return event, ()
    labels = dict(event.labels)
    severity = event.severity
    applied: list[str] = []
    # Indexed by the alert's own alertname and source, before any rule derives labels.
    for rule in ruleset.normalize_index.candidates(event.match_labels()):
        view = _view(event, labels, severity)
        if not all_match(rule.matchers, view):
            continue
        applied.append(rule.name)
        for derivation in rule.labels:
            _derive(derivation, view, labels)
        severity = _severity(rule, labels, severity)
    _bind_service(ruleset, labels)
    if labels == event.labels and severity is event.severity:
        return event, tuple(applied)
    return evolve(event, labels=labels, severity=severity), tuple(applied)


def _view(event: Event, labels: dict[str, str], severity: Severity) -> dict[str, str]:
    view = event.match_labels()
    view.update(labels)
    view[SEVERITY_PSEUDO] = severity.value
    return view


def _derive(derivation: LabelDerivation, view: Mapping[str, str], labels: dict[str, str]) -> None:
    if labels.get(derivation.target) and not derivation.overwrite:
        return
    value = next((view[s] for s in derivation.sources if view.get(s)), "")
    if not value:
        return
    found = derivation.regex.fullmatch(value)
    if found is None:
        return
    result = _expand(found, derivation.replacement)
    if result:
        labels[derivation.target] = result


def _expand(found: re.Match[str], replacement: str) -> str:
    def group(ref: re.Match[str]) -> str:
        name = ref.group(1) or ref.group(2)
        try:
            return found.group(int(name) if name.isdigit() else name) or ""
        except IndexError:  # no such group: the loader checks names, numbers may exceed
            return ""

    return _GROUP_REF.sub(group, replacement)


def _severity(rule: NormalizeRule, labels: Mapping[str, str], current: Severity) -> Severity:
    if not rule.severity_map:
        return current
    value = labels.get(rule.severity_from, "") if rule.severity_from else current.value
    return rule.severity_map.get(value, current)


def _bind_service(ruleset: RuleSet, labels: dict[str, str]) -> None:
    topology = ruleset.topology
    if topology is None or labels.get("service"):
        return
    ci = topology.ci_of(labels)
    service = topology.cmdb.service_of(ci) if ci is not None else None
    if service:
        labels["service"] = service
