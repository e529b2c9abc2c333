"""Stage `inhibit`: a firing source alert mutes target alerts that share its `equal` labels.

Input: an alert's match labels and the rule set. Output: the inhibit keys the alert takes part
in, as a source (`sources`: while it fires, it inhibits) and as a target (`targets`: it is
inhibited while any other alert is a source for that key). Alertmanager's semantics: a missing
`equal` label counts as empty and must be empty on both sides, and an alert never inhibits
itself.

The world keeps, per inhibit key, the firing source alerts (persisted as the `inhibitors`
table, so a restart or another replica sees them). An inhibited alert is stored and visible
with `Hold.INHIBITED` and `held_by` naming the rule and the inhibiting alert; the `recheck`
stage releases it into an incident once no source fires any more. A source known to have
stopped firing inhibits nothing, and its row is dropped: a reload that changed the rule while
the source fired leaves the row behind (the resolve clears the keys of the rules of its time).

Rule section: `inhibit` (`source_matchers`/`source_match`, `target_matchers`/`target_match`,
`equal`). Metric: `bridge_rule_decisions_total{stage="inhibit",decision="inhibited"}`.
"""

from __future__ import annotations

from collections.abc import Mapping

from rules.keys import bounded
from rules.ruleset import InhibitRule, RuleSet, all_match
from rules.world import AlertKey, InhibitKey, InhibitorChange, World

# Alertmanager: an alert that matches both the source and the target side of a rule cannot be
# inhibited by another alert that does too (two alerts must not mute each other). Such sources
# are filed under the rule name with this suffix, which only one-sided targets look at.
_BOTH = "|both"


def key_of(rule: InhibitRule, labels: Mapping[str, str], *, both: bool = False) -> InhibitKey:
    """The rule (with `|both` for two-sided sources) and its `equal` values, bounded
    (`rules.keys`): the inhibitors' primary key holds them with the alert's fingerprint."""
    values = bounded("\x1f".join(labels.get(name, "") for name in rule.equal))
    return (rule.name + _BOTH if both else rule.name, values)


def sources(ruleset: RuleSet, labels: Mapping[str, str]) -> list[InhibitKey]:
    """The keys under which a firing alert inhibits (it is a source of these rules)."""
    candidates = ruleset.inhibit_source_index.candidates(labels)
    return [
        key_of(r, labels, both=all_match(r.target, labels))
        for r in candidates
        if all_match(r.source, labels)
    ]


def targets(ruleset: RuleSet, labels: Mapping[str, str]) -> list[InhibitKey]:
    """The keys whose sources inhibit this alert (it is a target of these rules)."""
    found: list[InhibitKey] = []
    for rule in ruleset.inhibit_target_index.candidates(labels):
        if all_match(rule.target, labels):
            found.append(key_of(rule, labels))
            if not all_match(rule.source, labels):
                found.append(key_of(rule, labels, both=True))
    return found


def stale(ruleset: RuleSet, world: World, labels: Mapping[str, str]) -> list[InhibitorChange]:
    """The removal of the inhibitors of the alert's target keys that stopped firing (left
    behind when a reload changed a rule while they fired, see `World.stale_inhibitors`)."""
    return [
        InhibitorChange(key, source, active=False)
        for key in targets(ruleset, labels)
        for source in sorted(world.stale_inhibitors(key))
    ]


def inhibited_by(
    ruleset: RuleSet, world: World, labels: Mapping[str, str], alert: AlertKey
) -> str | None:
    """`held_by` for an inhibited alert (`inhibit:<rule> by <source>/<fingerprint>`), or None."""
    for key in targets(ruleset, labels):
        source = world.inhibitor(key, exclude=alert)
        if source is not None:
            return f"inhibit:{key[0].removesuffix(_BOTH)} by {source[0]}/{source[1]}"
    return None
