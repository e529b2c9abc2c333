"""Drives the pure rule engine over time with no database: the core of the offline tools.

Input: a rule set, the engine settings, and what happens at which instant (events, maintenance
windows created through the API). Output: the evaluations, applied to one in-memory `World`
that lives as long as the timeline. Before anything happens at an instant, `advance` runs what
time alone changes there (`rules.timers.tick`: expiry, held and flapping alerts looked at
again, missed heartbeats), exactly as the daemon's scheduled jobs would by then.

The engine hands out negative placeholder ids to the incidents and problems it opens; the
offline tools show them numbered 1, 2, ... in the order they were opened (`numbers`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from rules.compile import compile_maintenance
from rules.dedup import dedup_rule
from rules.effects import Decision, Evaluation
from rules.evaluate import Context, EngineSettings, run
from rules.model import AlertState, Event, EventKind, Hold
from rules.ruleset import MaintenanceWindow, Origin, RuleSet
from rules.schedule import MaintenanceSpec
from rules.timers import tick
from rules.world import World


@dataclass
class Timeline:
    rules: RuleSet
    settings: EngineSettings
    world: World = field(default_factory=World)
    windows: list[MaintenanceWindow] = field(default_factory=list)

    def context(self, now: datetime) -> Context:
        return Context(self.rules, self.settings, now, tuple(self.windows))

    def advance(self, now: datetime) -> list[Evaluation]:
        return tick(self.context(now), self.world)

    def send(self, now: datetime, event: Event) -> list[Evaluation]:
        return run(self.context(now), self.world, event)

    def add_window(self, spec: MaintenanceSpec) -> MaintenanceWindow:
        """A window as if created through the API: numbered 1, 2, ... like stored windows."""
        window = replace(compile_maintenance(spec, Origin()), id=len(self.windows) + 1)
        self.windows.append(window)
        return window


def numbers(ids: Iterable[int]) -> dict[int, int]:
    """Placeholder (or stored) ids -> 1, 2, ... in the order the engine handed them out."""
    stored = sorted(i for i in ids if i > 0)
    placeholders = sorted((i for i in ids if i < 0), reverse=True)
    return {value: n for n, value in enumerate([*stored, *placeholders], start=1)}


def offset(start: datetime, now: datetime) -> str:
    seconds = (now - start).total_seconds()
    return _duration_text(timedelta(seconds=abs(seconds)), "-" if seconds < 0 else "")


def _duration_text(value: timedelta, sign: str) -> str:
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(f"{seconds}s" if seconds or not (hours or minutes) else "")
    return sign + "".join(parts)


def describe_labels(labels: Mapping[str, str], keys: Iterable[str] = ()) -> str:
    """An alert's name and where it is, plus `keys`, as `HTTP{host=web-1}`."""
    shown = [k for k in ("host", "instance", "heartbeat") if k in labels][:1]
    shown += [k for k in keys if k in labels and k not in shown and k != "alertname"]
    inner = ", ".join(f"{k}={labels[k]}" for k in shown)
    return f"{labels.get('alertname', 'alert')}{{{inner}}}"


def describe_alert(alert: AlertState, keys: Iterable[str] = ()) -> str:
    return f"{alert.source} {describe_labels(alert.labels, keys)}"


def decisions(evaluation: Evaluation, rules: RuleSet) -> list[Decision]:
    """The evaluation's decisions, led by what dedup made of the event (stage `dedup`, the
    dedup rule that matched or `default`, the outcome), which is not a rule decision but the
    first thing an operator asks."""
    rule = dedup_rule(rules, evaluation.event.match_labels())
    outcome = Decision("dedup", rule.name if rule else "default", evaluation.dedup.outcome.value)
    return [outcome, *evaluation.decisions]


def explain(
    evaluation: Evaluation, rules: RuleSet, incident_numbers: Mapping[int, int]
) -> list[str]:
    """One evaluation as an operator reads it: the event and where its alert went, then every
    decision (`stage rule: decision`)."""
    event = evaluation.event
    what = event.status.value if event.kind is EventKind.STATE else event.kind.value
    head = f"{event.source} {describe_labels(event.labels)} {what}"
    alert = evaluation.alert
    if alert is not None:
        head += _placement(alert, incident_numbers)
    return [head, *(f"  {d.stage} {d.rule}: {d.decision}" for d in decisions(evaluation, rules))]


def _placement(alert: AlertState, incident_numbers: Mapping[int, int]) -> str:
    if alert.hold is not Hold.NONE:
        return f" -> held {alert.hold.value} ({alert.held_by})"
    joined = [f"#{incident_numbers.get(i, i)}" for i in alert.incident_ids]
    return f" -> incident {', '.join(joined)}" if joined else ""
