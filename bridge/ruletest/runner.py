"""Runs rules test files: one timeline per file, expectations checked after the steps.

Input: test files (`bridge.ruletest.spec`), the shipped config directory and optionally a rules
directory that overrides the files' own. Output on stdout: `ok <file> (<n> steps, <m>
incidents)` per passing file, the mismatches of a failing one (`bridge.ruletest.diff`), with
`verbose` every step's events and decisions; errors of invalid files on stderr. The result is
the worst exit status: `OK`, `FAILED` or `INVALID`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bridge.payloads import Decoder, PayloadError, describe_body_error, read_body
from bridge.ruletest.diff import check
from bridge.ruletest.spec import (
    AlertSpec,
    Expectations,
    StepSpec,
    TestFile,
    TestFileError,
    load,
)
from bridge.timeline import Timeline, decisions, explain, numbers, offset
from connectors.labels import item_digest, label_set_fingerprint, severity_of, with_host
from connectors.parsed import BodyError
from rules.effects import Decision, Evaluation
from rules.evaluate import EngineSettings, prepare
from rules.loader import RULE_SUFFIXES, RuleLoadError, load_rules
from rules.model import AlertStatus, Event
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
            run = _Run(test, self._rules(test), self._decoder(test), self.verbose)
            failures = run.steps()
        except TestFileError as exc:
            for line in exc.errors:
                print(line, file=sys.stderr)
            return INVALID
        summary = (
            f"{path} ({len(test.spec.steps)} steps, {len(run.timeline.world.incidents)} incidents)"
        )
        if not failures:
            print(f"ok {summary}")
            return OK
        print(f"FAIL {summary}")
        for line in failures:
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
        """Advance to the step, create its windows, send its events; its decisions."""
        evaluations = self.timeline.advance(now)
        self._log_all("tick: ", evaluations)
        for window in step.maintenance:
            created = self.timeline.add_window(window)
            self._log(f"  maintenance window {created.label} ({created.name}) created")
        for event in self._events(step, loc, now):
            sent = self.timeline.send(now, event)
            self._log_all("", sent)
            evaluations += sent
        rules = self.timeline.rules
        return [d for evaluation in evaluations for d in decisions(evaluation, rules)]

    def _check(
        self, title: str, expect: Expectations, decided: list[Decision], loc: Loc
    ) -> list[str]:
        found = check(expect, self.timeline.world, decided, self.test.line, loc)
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
