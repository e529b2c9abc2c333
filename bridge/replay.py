"""`bridge replay`: captured traffic through the rules, offline: what would they make of it?

Input: a directory of captured payloads (one sender body per `*.json` file, taken in file-name
order), the rules, and the sender: named, else the directory's name, else guessed per file
from the body's shape. Output: the incidents the rules open (number, rule, status, priority,
alert count, title) and the noise reduction as `alerts: N, incidents: M, ratio: N/M`; files
that are no sender's body are skipped with a warning on stderr. The clock starts at the
earliest start time in the first payload and advances one second per file; before each file
what time alone changes is applied (`bridge.timeline`), as in `bridge rules test`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from bridge.payloads import Decoder, PayloadError, describe_body_error, read_body
from bridge.timeline import Timeline, numbers
from connectors.parsed import BodyError, Parsed
from rules.evaluate import EngineSettings
from rules.ruleset import RuleSet

# The provisional clock for reading the first payload's start times (a Nagios start time is
# `now` minus the state's duration); fixed so that a replay gives the same result every time.
_PROVISIONAL = datetime.fromisoformat("2026-11-23T10:00:00+00:00")
_STEP = timedelta(seconds=1)
_PROGRESS_FROM = 50  # files; fewer finish before a bar would be worth drawing


@dataclass
class Totals:
    files: int = 0
    events: int = 0
    rejected: int = 0
    skipped: list[str] = field(default_factory=list)


def payload_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix == ".json")


def replay(
    directory: Path,
    rules: RuleSet,
    settings: EngineSettings,
    decoder: Decoder,
    source: str | None = None,
) -> int:
    files = payload_files(directory) if directory.is_dir() else []
    if not files:
        print(f"{directory}: no *.json payload files", file=sys.stderr)
        return 1
    timeline = Timeline(rules, settings)
    totals = Totals()
    progress = Progress(len(files), sys.stderr) if _wants_progress(len(files)) else None
    start: datetime | None = None
    for index, path in enumerate(files):
        found = _read(decoder, path, source, totals)
        if found is not None:
            body, name = found
            start = start or _first_start(decoder, name, body)
            _feed(timeline, decoder, path, name, body, start + index * _STEP, totals)
        if progress is not None:
            progress.update(index + 1)
    if progress is not None:
        progress.finish()
    for warning in totals.skipped:
        print(f"skipped {warning}", file=sys.stderr)
    _report(timeline, totals)
    return 0


def _wants_progress(count: int) -> bool:
    return count > _PROGRESS_FROM and sys.stderr.isatty()


def _read(
    decoder: Decoder, path: Path, source: str | None, totals: Totals
) -> tuple[object, str] | None:
    try:
        body = read_body(path)
        return body, decoder.source_of(path, body, source)
    except PayloadError as exc:
        totals.skipped.append(str(exc))
        return None


def _first_start(decoder: Decoder, source: str, body: object) -> datetime:
    try:
        events = decoder.decode(source, body, _PROVISIONAL).events
    except (BodyError, PayloadError):
        events = []
    return min((e.starts_at for e in events), default=_PROVISIONAL)


def _feed(
    timeline: Timeline,
    decoder: Decoder,
    path: Path,
    source: str,
    body: object,
    now: datetime,
    totals: Totals,
) -> None:
    timeline.advance(now)
    try:
        parsed: Parsed = decoder.decode(source, body, now)
    except BodyError as exc:
        totals.skipped.append(describe_body_error(path, source, exc))
        return
    except PayloadError as exc:
        totals.skipped.append(str(exc))
        return
    totals.files += 1
    totals.rejected += len(parsed.rejects)
    for event in parsed.events:
        timeline.send(now, event)
    totals.events += len(parsed.events)


def _report(timeline: Timeline, totals: Totals) -> None:
    world = timeline.world
    order = numbers(world.incidents)
    print(f"{'#':>4}  {'rule':<24} {'status':<12} {'prio':<4} {'alerts':>6}  title")
    for incident in sorted(world.incidents.values(), key=lambda i: order[i.id]):
        print(
            f"{order[incident.id]:>4}  {incident.rule:<24} {incident.status:<12} "
            f"P{incident.priority:<3} {incident.alert_count:>6}  {incident.title}"
        )
    print(
        f"files: {totals.files}, events: {totals.events}, rejected items: {totals.rejected}, "
        f"skipped files: {len(totals.skipped)}"
    )
    alerts, incidents = len(world.alerts), len(world.incidents)
    ratio = f"{alerts / incidents:.2f}" if incidents else "-"
    print(f"alerts: {alerts}, incidents: {incidents}, ratio: {ratio}")


class Progress:
    """A one-line progress bar, redrawn in place when the shown percentage changes."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self._shown = -1

    def update(self, done: int) -> None:
        percent = done * 100 // self.total
        if percent == self._shown:
            return
        self._shown = percent
        filled = done * self.WIDTH // self.total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {done}/{self.total} files")
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
