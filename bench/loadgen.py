"""Load generator: POSTs Alertmanager webhooks or Prometheus alert batches, prints alerts/s and
latency percentiles.

The workload is a pool of `--identities` alerts whose firing/resolved state is simulated, so a
batch holds re-sends of firing alerts, resolves of firing alerts and new fires in the shares
asked for. Bodies are serialised ahead of the timed phase (only timestamps that must be "now"
are patched in at send time) so that the generator, which shares the machine with the daemon,
spends its CPU on HTTP rather than on JSON.

Closed loop (`--rate 0`): `--concurrency` workers send back to back; latency runs from send to
the end of the response. Open loop (`--rate N`): batches leave on a fixed timetable so that
alerts/s is about N; latency runs from the *scheduled* send time, so a stalled server is not
hidden by the generator waiting for it (coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson

Kind = Literal["webhook", "apiv2"]
Action = Literal["new", "resend", "resolve"]

PATHS: dict[Kind, str] = {"webhook": "/api/v1/webhooks/alertmanager", "apiv2": "/api/v2/alerts"}
USER_AGENTS: dict[Kind, str] = {"webhook": "Alertmanager/0.25.0", "apiv2": "Prometheus/2.42.0+ds"}
# (alertname, severity, team, summary template)
ALERT_TYPES = (
    ("HostDown", "critical", "infra", "Host {instance} is down"),
    ("HighLatency", "warning", "web", "p99 latency on {instance} above 500ms"),
    ("DiskFull", "warning", "dba", "Disk /var on {instance} is over 90% full"),
    ("HighMemory", "warning", "infra", "Memory on {instance} above 95%"),
    ("QueueBacklog", "critical", "platform", "Queue backlog on {instance} growing"),
    ("CertExpiry", "info", "security", "TLS certificate on {instance} expires soon"),
)
ZERO_TIME = "0001-01-01T00:00:00Z"
# Placeholder patched at send time: "now + 8 s" (a Prometheus firing alert's endsAt:
# evaluation time + 4 x resend delay).
FIRING_ENDS_TOKEN = "@@FIRING_ENDS@@"
FIRING_ENDS_AHEAD = 8.0
INITIAL_FIRING_SHARE = 0.5
PRIME_BATCH = 100
PREBUILD_MAX_ALERTS = 400_000
PREBUILD_MAX_BODIES = 50_000
PICK_TRIES = 8
ERROR_PAUSE = 0.01  # a worker whose request failed waits this long, rather than spin

FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's label-set fingerprint: FNV-1a 64 over sorted names and values + 0xff."""
    digest = FNV64_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + b"\xff":
                digest = ((digest ^ byte) * FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


def iso(timestamp: float) -> str:
    """RFC 3339 UTC with milliseconds, as Prometheus and Alertmanager write it."""
    millis = int(timestamp * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{millis:03d}Z"


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class Identity:
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    fingerprint: str


def make_identity(index: int) -> Identity:
    alertname, severity, team, summary = ALERT_TYPES[index % len(ALERT_TYPES)]
    instance = f"host-{index // len(ALERT_TYPES):03d}:9100"
    labels = {
        "alertname": alertname,
        "instance": instance,
        "job": "node",
        "severity": severity,
        "team": team,
    }
    return Identity(
        labels=labels,
        annotations={"summary": summary.format(instance=instance)},
        generator_url=f"http://prometheus.bench.invalid:9090/graph?g0.expr={alertname}&g0.tab=1",
        fingerprint=fingerprint(labels),
    )


class _Bag:
    """A set of identity indices with O(1) add, remove and uniform random choice."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.where: dict[int, int] = {}

    def add(self, item: int) -> None:
        self.where[item] = len(self.items)
        self.items.append(item)

    def remove(self, item: int) -> None:
        index = self.where.pop(item)
        last = self.items.pop()
        if last != item:
            self.items[index] = last
            self.where[last] = index

    def pick(self, rng: random.Random, taken: set[int]) -> int | None:
        if not self.items:
            return None
        for _ in range(PICK_TRIES):
            item = self.items[rng.randrange(len(self.items))]
            if item not in taken:
                return item
        return None


@dataclass(slots=True)
class _Group:
    firing: _Bag = field(default_factory=_Bag)
    idle: _Bag = field(default_factory=_Bag)


@dataclass(frozen=True, slots=True)
class Item:
    identity: int
    action: Action
    starts_at: str
    ends_at: str = ""  # set on resolves


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes
    alerts: int
    patched: bool  # holds placeholders to replace at send time


class Workload:
    """The simulated alert population; `batches` draws items, `render` serialises them."""

    def __init__(self, kind: Kind, identities: int, resend: float, resolve: float, seed: int):
        self.kind = kind
        self.resend = resend
        self.resolve = resolve
        self.rng = random.Random(seed)
        self.identities = [make_identity(i) for i in range(identities)]
        groups = len(ALERT_TYPES) if kind == "webhook" else 1
        self.groups = [_Group() for _ in range(min(groups, identities))]
        self.started: dict[int, str] = {}
        # Per identity, each occurrence starts after the previous one ended, as with a real
        # sender: a re-fire that claimed an older start would be a late (stale) notification.
        self.started_at: dict[int, float] = {}
        self.ended_at: dict[int, float] = {}
        for index in range(identities):
            self.groups[index % len(self.groups)].idle.add(index)

    def prime(self) -> list[list[Item]]:
        """Fire `INITIAL_FIRING_SHARE` of each group, so re-sends have something to repeat."""
        batches: list[list[Item]] = []
        for group in self.groups:
            chosen = group.idle.items[: int(len(group.idle.items) * INITIAL_FIRING_SHARE)]
            items = [self._fire(group, index) for index in chosen]
            batches += [items[i : i + PRIME_BATCH] for i in range(0, len(items), PRIME_BATCH)]
        return batches

    def batches(self, size: int) -> Iterator[list[Item]]:
        while True:
            group = self.groups[self.rng.randrange(len(self.groups))]
            taken: set[int] = set()
            items: list[Item] = []
            for _ in range(size):
                item = self._draw(group, taken)
                if item is None:
                    break
                taken.add(item.identity)
                items.append(item)
            yield items

    def _draw(self, group: _Group, taken: set[int]) -> Item | None:
        roll = self.rng.random()
        if roll < self.resend:
            order: tuple[Action, ...] = ("resend", "new", "resolve")
        elif roll < self.resend + self.resolve:
            order = ("resolve", "new", "resend")
        else:
            order = ("new", "resend", "resolve")
        for action in order:
            bag = group.idle if action == "new" else group.firing
            index = bag.pick(self.rng, taken)
            if index is not None:
                return self._apply(group, index, action)
        return None

    def _apply(self, group: _Group, index: int, action: Action) -> Item:
        if action == "new":
            return self._fire(group, index)
        if action == "resolve":
            group.firing.remove(index)
            group.idle.add(index)
            self.ended_at[index] = self.started_at[index] + 0.001
            return Item(index, action, self.started[index], iso(self.ended_at[index]))
        return Item(index, action, self.started[index])

    def _fire(self, group: _Group, index: int) -> Item:
        group.idle.remove(index)
        group.firing.add(index)
        self.started_at[index] = max(time.time(), self.ended_at.get(index, 0.0) + 0.002)
        self.started[index] = iso(self.started_at[index])
        return Item(index, "new", self.started[index])

    def render(self, items: list[Item]) -> Body:
        if self.kind == "webhook":
            payload: object = self._webhook(items)
        else:
            payload = [self._prometheus_item(item) for item in items]
        data = orjson.dumps(payload)
        return Body(data, len(items), b"@@" in data)

    def _webhook_item(self, item: Item) -> dict[str, Any]:
        ident = self.identities[item.identity]
        firing = item.action != "resolve"
        return {
            "status": "firing" if firing else "resolved",
            "labels": ident.labels,
            "annotations": ident.annotations,
            "startsAt": item.starts_at,
            "endsAt": ZERO_TIME if firing else item.ends_at,
            "generatorURL": ident.generator_url,
            "fingerprint": ident.fingerprint,
        }

    def _webhook(self, items: list[Item]) -> dict[str, Any]:
        alerts = [self._webhook_item(item) for item in items]
        first = alerts[0]["labels"] if alerts else {}
        common = {k: v for k, v in first.items() if all(a["labels"].get(k) == v for a in alerts)}
        alertname = first.get("alertname", "")
        single = alerts[0]["annotations"] if len(alerts) == 1 else {}
        return {
            "receiver": "bench",
            "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
            "alerts": alerts,
            "groupLabels": {"alertname": alertname},
            "commonLabels": common,
            "commonAnnotations": single,
            "externalURL": "http://alertmanager.bench.invalid:9093",
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{alertname}"}}',
            "truncatedAlerts": 0,
        }

    def _prometheus_item(self, item: Item) -> dict[str, Any]:
        ident = self.identities[item.identity]
        return {
            "annotations": ident.annotations,
            "endsAt": item.ends_at if item.action == "resolve" else FIRING_ENDS_TOKEN,
            "startsAt": item.starts_at,
            "generatorURL": ident.generator_url,
            "labels": ident.labels,
        }


def stamp(body: Body) -> bytes:
    """The body with its placeholders replaced by the current time."""
    if not body.patched:
        return body.data
    ends = iso(time.time() + FIRING_ENDS_AHEAD).encode()
    return body.data.replace(FIRING_ENDS_TOKEN.encode(), ends)


class BodySource:
    """Bodies built ahead of time, then (if the run outlasts them) built on demand."""

    def __init__(self, workload: Workload, batch: int, prebuild_alerts: int) -> None:
        self.workload = workload
        self.plan = workload.batches(batch)
        count = max(1, min(prebuild_alerts // batch, PREBUILD_MAX_BODIES))
        self.ready = [workload.render(next(self.plan)) for _ in range(count)]
        self.ready.reverse()

    def next(self) -> Body:
        if self.ready:
            return self.ready.pop()
        return self.workload.render(next(self.plan))


@dataclass(slots=True)
class Recorder:
    """Per-request outcomes of the measured window."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    alerts_sent: int = 0
    alerts_ok: int = 0
    last_end: float = 0.0
    cpu_start: float = 0.0  # the generator's own CPU time when the measured window opens

    def record(self, alerts: int, status: int | None, error: str | None, start: float) -> None:
        end = time.perf_counter()
        self.latencies.append(end - start)
        self.alerts_sent += alerts
        self.last_end = max(self.last_end, end)
        if error is not None:
            self.errors[error] += 1
        elif status is not None:
            self.statuses[status] += 1
            if 200 <= status < 300:
                self.alerts_ok += alerts


@dataclass(frozen=True, slots=True)
class Run:
    url: str
    headers: dict[str, str]
    warmup_end: float
    end: float


async def send(
    session: aiohttp.ClientSession, run: Run, body: Body, start: float, recorder: Recorder
) -> bool:
    """POST one body and record the outcome; False on a connection error or timeout."""
    status: int | None = None
    error: str | None = None
    try:
        async with session.post(run.url, data=stamp(body), headers=run.headers) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        error = type(exc).__name__
    if start >= run.warmup_end:
        if not recorder.cpu_start:
            recorder.cpu_start = time.process_time()
        recorder.record(body.alerts, status, error, start)
    return error is None


async def closed_loop(
    session: aiohttp.ClientSession, run: Run, source: BodySource, workers: int, rec: Recorder
) -> None:
    async def worker() -> None:
        while (start := time.perf_counter()) < run.end:
            if not await send(session, run, source.next(), start, rec):
                await asyncio.sleep(ERROR_PAUSE)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def open_loop(
    session: aiohttp.ClientSession, run: Run, source: BodySource, interval: float, rec: Recorder
) -> None:
    """Send one batch every `interval` seconds of a fixed timetable, whatever the server does."""
    pending: set[asyncio.Task[bool]] = set()
    due = time.perf_counter()
    while due < run.end:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(session, run, source.next(), due, rec))
        pending.add(task)
        task.add_done_callback(pending.discard)
        due += interval
    if pending:
        await asyncio.gather(*pending)


async def prime(session: aiohttp.ClientSession, url: str, workload: Workload, workers: int) -> int:
    """Send the initial firing set before the clock starts; returns the non-2xx count."""
    bodies = [workload.render(items) for items in workload.prime()]
    headers = _headers(workload)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while bodies:
            try:
                async with session.post(url, data=stamp(bodies.pop()), headers=headers) as r:
                    await r.read()
                    failures += not 200 <= r.status < 300
            except (aiohttp.ClientError, TimeoutError, OSError):
                failures += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return failures


def _headers(workload: Workload) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": USER_AGENTS[workload.kind]}


def summary(args: argparse.Namespace, rec: Recorder, measure_start: float) -> dict[str, Any]:
    wall = max(rec.last_end - measure_start, 1e-9)
    lat = sorted(rec.latencies)
    ms = {f"p{p}": round(percentile(lat, p) * 1000, 2) for p in (50, 90, 99)}
    return {
        "kind": args.kind,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "duration_s": args.duration,
        "wall_s": round(wall, 3),
        "requests": len(lat),
        "alerts_sent": rec.alerts_sent,
        "alerts_ok": rec.alerts_ok,
        "alerts_per_s": round(rec.alerts_ok / wall, 1),
        "requests_per_s": round(len(lat) / wall, 1),
        "latency_ms": {**ms, "max": round((lat[-1] if lat else 0.0) * 1000, 2)},
        "status": {str(code): n for code, n in sorted(rec.statuses.items())},
        "non_2xx": sum(n for code, n in rec.statuses.items() if not 200 <= code < 300),
        "errors": dict(rec.errors),
        "generator_cpu_pct": round(100 * (time.process_time() - rec.cpu_start) / wall, 1),
    }


def render_text(result: dict[str, Any]) -> str:
    lat = result["latency_ms"]
    mode = f"rate {result['rate']} alerts/s" if result["rate"] else "as fast as possible"
    return "\n".join(
        [
            f"kind {result['kind']}, batch {result['batch']}, concurrency "
            f"{result['concurrency']}, {mode}, measured {result['wall_s']} s",
            f"requests     {result['requests']}  ({result['requests_per_s']}/s)",
            f"alerts sent  {result['alerts_sent']}  (2xx: {result['alerts_ok']})",
            f"alerts/s     {result['alerts_per_s']}",
            f"latency ms   p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}",
            f"status       {result['status']}  non-2xx {result['non_2xx']}",
            f"errors       {result['errors'] or 0}",
            f"generator    {result['generator_cpu_pct']}% of one core",
        ]
    )


async def preflight(session: aiohttp.ClientSession, base_url: str) -> str | None:
    """Why the daemon cannot be benchmarked now (unreachable, not ready), or None."""
    try:
        async with session.get(base_url + "/-/ready") as response:
            await response.read()
            if response.status == 503:
                return f"{base_url}/-/ready answers 503"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return f"cannot reach {base_url}: {exc}"
    return None


async def main_async(args: argparse.Namespace) -> dict[str, Any] | None:
    workload = Workload(
        args.kind, args.identities, args.resend_share, args.resolve_share, args.seed
    )
    base_url = args.url.rstrip("/")
    url = base_url + PATHS[args.kind]
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if problem := await preflight(session, base_url):
            print(f"error: {problem}", file=sys.stderr)
            return None
        if args.prime and (failed := await prime(session, url, workload, args.concurrency)):
            print(f"warning: {failed} priming requests were not 2xx", file=sys.stderr)
        expected = args.rate * (args.warmup + args.duration) * 1.1 if args.rate else math.inf
        source = BodySource(workload, args.batch, int(min(expected, PREBUILD_MAX_ALERTS)))
        start = time.perf_counter()
        run = Run(url, _headers(workload), start + args.warmup, start + args.warmup + args.duration)
        rec = Recorder()
        if args.rate:
            await open_loop(session, run, source, args.batch / args.rate, rec)
        else:
            await closed_loop(session, run, source, args.concurrency, rec)
    return summary(args, rec, run.warmup_end)


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("a share is between 0 and 1")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="daemon base URL, e.g. http://127.0.0.1:19470")
    p.add_argument("--kind", choices=("webhook", "apiv2"), default="webhook")
    p.add_argument("--batch", type=int, default=100, help="alerts per request")
    p.add_argument("--concurrency", type=int, default=16, help="connections (and workers)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds sent but not measured")
    p.add_argument("--rate", type=float, default=0.0, help="alerts/s on a timetable; 0 = max")
    p.add_argument("--identities", type=int, default=5000, help="distinct alerts in the pool")
    p.add_argument("--resend-share", type=_share, default=0.8)
    p.add_argument("--resolve-share", type=_share, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    p.add_argument(
        "--prime",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fire half of the pool before the clock starts",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.resend_share + args.resolve_share > 1:
        parser().error("--resend-share + --resolve-share must be at most 1")
    if args.batch < 1 or args.concurrency < 1 or args.identities < 1:
        parser().error("--batch, --concurrency and --identities must be positive")
    result = asyncio.run(main_async(args))
    if result is None:
        return 2
    print(orjson.dumps(result).decode() if args.json else render_text(result))
    return 0 if result["requests"] and not result["errors"] and not result["non_2xx"] else 1


if __name__ == "__main__":
    sys.exit(main())
