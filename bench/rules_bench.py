"""Rule evaluation cost, with no server and no database: how the per-alert cost of the pure
engine grows with the number of rules and the number of open alerts.

For each (rules, open alerts) pair it builds a rule set of N correlate rules (each for its own
alertname, plus inhibit and normalize rules in proportion) and a `World` already holding the
open alerts in their incidents, then times `rules.evaluate.run` over a stream of events: new
alerts, re-sends of open ones, and resolves. Prints microseconds per event.

    python -m bench.rules_bench                      # 10/100/1000 rules x 1k/10k/100k alerts
    python -m bench.rules_bench --alerts 1000000     # add the 1M point (about 4 GB of RAM)
"""

from __future__ import annotations

import argparse
import random
import re
import time
from datetime import UTC, datetime, timedelta

from rules.effects import Context, EngineSettings
from rules.evaluate import run
from rules.match import parse_matcher
from rules.model import AlertStatus, Event, Severity
from rules.ruleset import CorrelateRule, InhibitRule, LabelDerivation, NormalizeRule, RuleSet
from rules.world import World

SETTINGS = EngineSettings(duplicate_window=timedelta(seconds=0), reopen_window=timedelta(hours=1))
T0 = datetime(2026, 11, 23, tzinfo=UTC)


def rule_set(count: int) -> RuleSet:
    env = parse_matcher('env=~"prod|staging"')
    correlate = (
        *(
            CorrelateRule(
                name=f"rule-{i}",
                matchers=(parse_matcher(f'alertname="Alert{i}"'), env),
                group_by=("alertname", "host"),
            )
            for i in range(count)
        ),
        CorrelateRule(name="catch-all", matchers=(), group_by=("alertname", "instance")),
    )
    inhibit = tuple(
        InhibitRule(
            name=f"inhibit-{i}",
            source=(parse_matcher(f'alertname="Down{i}"'),),
            target=(parse_matcher(f'alertname="Alert{i}"'),),
            equal=("host",),
        )
        for i in range(max(1, count // 10))
    )
    normalize = tuple(
        NormalizeRule(
            name=f"normalize-{i}",
            matchers=(parse_matcher(f'alertname="Alert{i}"'),),
            labels=(LabelDerivation("team", ("owner",), re.compile("(.*)"), "$1", False),),
        )
        for i in range(max(1, count // 10))
    )
    return RuleSet(correlate=correlate, inhibit=inhibit, normalize=normalize)


def event(n: int, rules: int, status: AlertStatus, at: datetime) -> Event:
    name = f"Alert{n % rules}"
    labels = {"alertname": name, "host": f"host-{n % 5000}", "env": "prod", "owner": "ops"}
    return Event(
        source="prometheus",
        fingerprint=f"fp-{n}",
        status=status,
        labels=labels,
        annotations={"summary": f"{name} on host-{n % 5000}"},
        severity=Severity.WARNING,
        starts_at=T0,
        ends_at=at if status is AlertStatus.RESOLVED else None,
        expires_at=None,
        generator_url="",
        group_key=None,
        receiver=None,
        digest=f"{n}:{status}:{at.isoformat()}",
    )


def measure(rules: int, alerts: int, events: int) -> tuple[float, float]:
    ruleset = rule_set(rules)
    world = World()
    ctx = Context(ruleset, SETTINGS, T0)
    started = time.perf_counter()
    for n in range(alerts):
        run(ctx, world, event(n, rules, AlertStatus.FIRING, T0))
    setup = time.perf_counter() - started
    rng = random.Random(7)
    now = T0 + timedelta(minutes=1)
    ctx = Context(ruleset, SETTINGS, now)
    stream = []
    for i in range(events):
        kind = rng.random()
        if kind < 0.6:  # a re-send of an open alert
            stream.append(event(rng.randrange(alerts), rules, AlertStatus.FIRING, now))
        elif kind < 0.8:  # a new alert
            stream.append(event(alerts + i, rules, AlertStatus.FIRING, now))
        else:  # a resolve
            stream.append(event(rng.randrange(alerts), rules, AlertStatus.RESOLVED, now))
    started = time.perf_counter()
    for item in stream:
        run(ctx, world, item)
    elapsed = time.perf_counter() - started
    return elapsed / events * 1e6, setup / max(alerts, 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--alerts", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'rules':>6} {'open alerts':>12} {'us/event':>9} {'us/alert (load)':>16}")
    for rules in args.rules:
        for alerts in args.alerts:
            per_event, per_load = measure(rules, alerts, args.events)
            print(f"{rules:>6} {alerts:>12,} {per_event:>9.1f} {per_load:>16.1f}", flush=True)


if __name__ == "__main__":
    main()
