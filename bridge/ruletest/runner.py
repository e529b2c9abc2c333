"""Runs rules test files: one timeline per file, expectations checked after the steps.

Input: test files (`bridge.ruletest.spec`), the shipped config directory and optionally a rules
directory that overrides the files' own. Output on stdout: `ok <file> (<n> steps, <m>
incidents[, <k> notifications])` per passing file, the mismatches of a failing one
(`bridge.ruletest.diff`) and the notifications it queued, with `verbose` every step's events,
decisions and notifications (`bridge.ruletest.outbox`); errors of invalid files on stderr. The
result is the worst exit status: `OK`, `FAILED` or `INVALID`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bridge.payloads import Decoder, PayloadError, describe_body_error, read_body
from bridge.ruletest.diff import check
from bridge.ruletest.outbox import Outbox, Told, describe
from bridge.ruletest.outbox import explain as explain_told
from bridge.ruletest.spec import (
    AlertSpec,
    Expectations,
    StepSpec,
    TestFile,
    TestFileError,
    check_targets,
    load,
)
from bridge.timeline import Timeline, decisions, explain, numbers, offset
from connectors.labels import item_digest, label_set_fingerprint, severity_of, with_host
from connectors.parsed import BodyError
from rules.effects import Decision, Evaluation
from rules.evaluate import EngineSettings, prepare
from rules.loader import RULE_SUFFIXES, RuleLoadError, load_rules
from rules.model import AlertStatus, Event, IncidentState
from rules.ruleset import RuleSet
from rules.world import World
from rules.yamlsource import Loc

OK, FAILED, INVALID = 0, 1, 2
_DERIVE_HOST = ("alertmanager", "prometheus")  # their connectors derive `host` from `instance`


@dataclass
class Runner:
    """Runs test files; rule sets are loaded once per directory."""

    shipped: Path  # the shipped config directory (rules/, generic/)
    rules_override: Path | None = None
    verbose: bool = False
    _rule_sets: dict[Path, RuleSet] = field(default_factory=dict)

    def run(self, paths: list[Path]) -> int:
        """Run files (a directory stands for its `*.yaml`/`*.yml` files); the worst status."""
        files = [f for path in paths for f in _test_files(path)]
        return max((self.run_file(path) for path in files), default=OK)

    def run_file(self, path: Path) -> int:
        try:
            test = load(path)
            rules = self._rules(test)
            check_targets(test, {target.name for target in rules.targets})
            run = _Run(test, rules, self._decoder(test), self.verbose)
            failures = run.steps()
        except TestFileError as exc:
            for line in exc.errors:
                print(line, file=sys.stderr)
            return INVALID
        counts = f"{len(test.spec.steps)} steps, {len(run.timeline.world.incidents)} incidents"
        if run.outbox.active:
            counts += f", {len(run.outbox.queued)} notifications"
        if not failures:
            print(f"ok {path} ({counts})")
            return OK
        print(f"FAIL {path} ({counts})")
        for line in [*failures, *run.queued()]:
            print(f"  {line}")
        return FAILED

    def _rules(self, test: TestFile) -> RuleSet:
        if self.rules_override is not None:
            directory = self.rules_override
        elif test.spec.rules is not None:
            directory = test.relative(test.spec.rules)
        else:
            directory = self.shipped / "rules"
        if directory not in self._rule_sets:
            try:
                self._rule_sets[directory] = load_rules(directory)
            except RuleLoadError as exc:
                raise TestFileError([f"{test.path}: invalid rules:", *exc.errors]) from None
        return self._rule_sets[directory]

    def _decoder(self, test: TestFile) -> Decoder:
        settings = test.spec.settings
        mappings = test.spec.mappings
        directory = test.relative(mappings) if mappings else self.shipped / "generic"
        return Decoder(settings.resolve_timeout, ZoneInfo(settings.zabbix_timezone), directory)


def _test_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix in RULE_SUFFIXES and p.is_file())


class _Run:
    def __init__(self, test: TestFile, rules: RuleSet, decoder: Decoder, verbose: bool) -> None:
        settings = test.spec.settings
        self.test = test
        self.decoder = decoder
        self.verbose = verbose
        self.start = test.spec.start
        self.timeline = Timeline(
            rules, EngineSettings(settings.duplicate_window, settings.reopen_window)
        )
        self.outbox = Outbox(rules)

    def steps(self) -> list[str]:
        failures: list[str] = []
        everything: list[Decision] = []
        for index, step in enumerate(self.test.spec.steps):
            loc: Loc = ("steps", index)
            now = self.start + step.at
            where = f"step {index + 1} at {offset(self.start, now)} (line {self.test.line(loc)})"
            self._log(f"{where}:")
            decided = self._step(step, loc, now)
            everything += decided
            if step.expect is not None:
                failures += self._check(f"after {where}", step.expect, decided, (*loc, "expect"))
        if self.test.spec.expect is not None:
            title = f"at the end (line {self.test.line(('expect',))})"
            failures += self._check(title, self.test.spec.expect, everything, ("expect",))
        return failures

    def _step(self, step: StepSpec, loc: Loc, now: datetime) -> list[Decision]:
        """Run the timers due, advance to the step, create its windows, send its events; its
        decisions (the notify decisions last)."""
        told = self.outbox.run_timers(self.timeline.world, now)
        for entry in told:
            self._log_told(f"timer {offset(self.start, entry.at)}: ", [entry])
        before = dict(self.timeline.world.incidents)
        evaluations = self.timeline.advance(now)
        self._log_all("tick: ", evaluations)
        told += self._notify(before, now, "tick: ")
        for window in step.maintenance:
            created = self.timeline.add_window(window)
            self._log(f"  maintenance window {created.label} ({created.name}) created")
        for event in self._events(step, loc, now):
            before = dict(self.timeline.world.incidents)
            sent = self.timeline.send(now, event)
            self._log_all("", sent)
            evaluations += sent
            told += self._notify(before, now, "")
        rules = self.timeline.rules
        made = [d for evaluation in evaluations for d in decisions(evaluation, rules)]
        return made + [d for entry in told for d in entry.decisions]

    def _notify(
        self, before: Mapping[int, IncidentState], now: datetime, prefix: str
    ) -> list[Told]:
        told = self.outbox.on_changes(before, self.timeline.world, now)
        self._log_told(" " * len(prefix) + "  ", told)
        return told

    def _check(
        self, title: str, expect: Expectations, decided: list[Decision], loc: Loc
    ) -> list[str]:
        world, notices = self.timeline.world, self.outbox.notices()
        found = check(expect, world, decided, self.test.line, loc, notices)
        return [f"{title}:", *(f"  {line}" for line in found)] if found else []

    def _events(self, step: StepSpec, loc: Loc, now: datetime) -> list[Event]:
        if step.payload is None:
            world, rules = self.timeline.world, self.timeline.rules
            return [inline_event(alert, rules, world, now, self.start) for alert in step.alerts]
        path = self.test.relative(step.payload)
        error_at = self.test.source.error
        try:
            body = read_body(path)
            source = self.decoder.source_of(path, body, step.source)
            parsed = self.decoder.decode(source, body, now)
        except PayloadError as exc:
            raise TestFileError([error_at((*loc, "payload"), str(exc))]) from None
        except BodyError as exc:
            message = describe_body_error(path, source, exc)
            raise TestFileError([error_at((*loc, "payload"), message)]) from None
        for reject in parsed.rejects:
            self._log(
                f"  {path.name}: item {reject.index} rejected: {reject.field}: {reject.message}"
            )
        return parsed.events

    def _log_all(self, prefix: str, evaluations: list[Evaluation]) -> None:
        if not self.verbose or not evaluations:
            return
        order = numbers(self.timeline.world.incidents)
        for evaluation in evaluations:
            for number, line in enumerate(explain(evaluation, self.timeline.rules, order)):
                self._log(f"  {prefix if number == 0 else ' ' * len(prefix)}{line}")

    def _log_told(self, prefix: str, told: list[Told]) -> None:
        if not self.verbose:
            return
        order = numbers(self.timeline.world.incidents)
        for entry in told:
            for number, line in enumerate(explain_told(entry, order)):
                self._log(f"  {prefix if number == 0 else ' ' * len(prefix)}{line}")

    def queued(self) -> list[str]:
        """What a failing run shows of its outbox: every notice queued, in order, as
        `10m #1 lead: escalated (...)` (nothing when the rules have no targets)."""
        if not self.outbox.active:
            return []
        if not self.outbox.queued:
            return ["notifications queued: none"]
        order = numbers(self.timeline.world.incidents)
        return ["notifications queued:"] + [
            f"  {offset(self.start, q.at)} {describe(q, order)}" for q in self.outbox.queued
        ]

    def _log(self, line: str) -> None:
        if self.verbose:
            print(line)


def inline_event(
    spec: AlertSpec, rules: RuleSet, world: World, now: datetime, start: datetime
) -> Event:
    """An inline alert as the event its connector would give: Alertmanager's label-set
    fingerprint, `starts_at` kept from the stored alert while it fires (as senders re-send
    it), `host` from `instance` for the Prometheus family."""
    labels = dict(spec.labels)
    firing = spec.status is AlertStatus.FIRING
    event = Event(
        source=spec.source,
        fingerprint=spec.fingerprint or label_set_fingerprint(labels),
        status=spec.status,
        labels=with_host(labels) if spec.source in _DERIVE_HOST else labels,
        annotations=dict(spec.annotations),
        severity=spec.severity or severity_of(labels),
        starts_at=now,
        ends_at=None if firing else now,
        expires_at=now + spec.expires if firing and spec.expires is not None else None,
        generator_url="",
        group_key=spec.group_key,
        receiver=spec.receiver,
        digest="",
        kind=spec.kind,
        actor=spec.actor,
        message=spec.message,
    )
    event = _replace_start(event, spec, rules, world, start)
    extra = (event.severity.value, event.kind.value, event.actor, event.message)
    digest = item_digest(
        event.status, labels, event.annotations, event.starts_at, event.ends_at, *extra
    )
    return replace(event, digest=digest)


def _replace_start(
    event: Event, spec: AlertSpec, rules: RuleSet, world: World, start: datetime
) -> Event:
    if spec.starts_at is not None:
        return replace(event, starts_at=start + spec.starts_at)
    prepared = prepare(rules, event).event
    stored = world.alert(prepared.source, prepared.fingerprint)
    ongoing = stored is not None and (
        stored.status is AlertStatus.FIRING or event.status is AlertStatus.RESOLVED
    )
    return replace(event, starts_at=stored.starts_at) if stored is not None and ongoing else event
