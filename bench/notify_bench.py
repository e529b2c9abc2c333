"""Notification delivery: how fast incidents reach a target, and how long the trip takes.

Starts a webhook receiver in this process and a fresh daemon (`bridge run`, SQLite in a temp
dir, the shipped rules plus one webhook target and a catch-all route), sends `--incidents`
alerts that each open their own incident (in batches of `--batch` per request), and waits
until the receiver has one `opened` notification per incident. Prints the delivery rate and
the latency from the sender's 2xx (the incident is committed, its notification queued in the
same transaction) to the receiver's answer, and the daemon's own
`bridge_notification_latency_seconds` count. The receiver answers at once; `--slow-ms` makes it
take that long per request (a real chat or ticket API).

    python -m bench.notify_bench                      # 2,000 incidents, batches of 50
    python -m bench.notify_bench --incidents 5000 --slow-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

CONFIG = Path(__file__).resolve().parents[1] / "config"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Receiver:
    def __init__(self, slow: float) -> None:
        self.slow = slow
        self.arrived: dict[str, float] = {}  # alertname -> time the notification arrived

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.slow:
            await asyncio.sleep(self.slow)
        if body["transition"] == "opened":
            name = body["incident"]["labels"].get("alertname", "")
            self.arrived.setdefault(name, time.perf_counter())
        return web.json_response({"ok": True})


def rules_dir(root: Path, hook_url: str) -> Path:
    rules = root / "rules"
    rules.mkdir()
    for path in (CONFIG / "rules").glob("*.yaml"):
        shutil.copy(path, rules / path.name)
    shutil.copy(CONFIG / "cmdb.yaml", root / "cmdb.yaml")
    notify = {
        "targets": [{"name": "hook", "channel": "webhook", "options": {"url": hook_url}}],
        "routes": [{"name": "all", "targets": ["hook"]}],
    }
    (rules / "40-notify.yaml").write_text(yaml.safe_dump(notify))
    return rules


async def wait_ready(session: aiohttp.ClientSession, url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{url}/-/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the daemon did not become ready")


def alerts(start: int, count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "labels": {"alertname": f"Bench{i}", "instance": f"bench-{i}:9100"},
            "annotations": {"summary": f"bench alert {i}"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }
        for i in range(start, start + count)
    ]


async def send_all(
    session: aiohttp.ClientSession, url: str, total: int, batch: int
) -> dict[str, float]:
    """Send every alert; returns alertname -> time its request got its 2xx."""
    committed: dict[str, float] = {}
    for start in range(0, total, batch):
        body = alerts(start, min(batch, total - start))
        async with session.post(f"{url}/api/v2/alerts", json=body) as response:
            assert response.status == 200, await response.text()
        done = time.perf_counter()
        committed.update((a["labels"]["alertname"], done) for a in body)
    return committed


async def delivered_count(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    lines = [ln for ln in text.splitlines() if ln.startswith("bridge_notification_latency")]
    return next((ln for ln in lines if "_count" in ln), "(none)")


async def run(args: argparse.Namespace) -> None:
    receiver = Receiver(args.slow_ms / 1000)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    root = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "BRIDGE_PORT": str(port),
        "BRIDGE_DATA_DIR": str(root / "data"),
        "BRIDGE_RULES_DIR": str(rules_dir(root, f"http://127.0.0.1:{hook_port}/hook")),
        "BRIDGE_LOG_LEVEL": "warning",
        "BRIDGE_NOTIFY_CONCURRENCY": str(args.concurrency),
    }
    # Started once per run, before any measurement: a blocking spawn is harmless here.
    daemon = subprocess.Popen([sys.executable, "-m", "bridge", "run"], env=env)  # noqa: ASYNC220
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, url, time.monotonic() + 30)
            started = time.perf_counter()
            committed = await send_all(session, url, args.incidents, args.batch)
            sent = time.perf_counter()
            deadline = time.monotonic() + args.timeout
            while len(receiver.arrived) < args.incidents:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {len(receiver.arrived)} of {args.incidents} arrived")
                await asyncio.sleep(0.05)
            finished = time.perf_counter()
            count = await delivered_count(session, url)
        report(args, receiver, committed, started, sent, finished, count)
    finally:
        daemon.terminate()
        await asyncio.to_thread(daemon.wait, 30)
        await runner.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def report(
    args: argparse.Namespace,
    receiver: Receiver,
    committed: dict[str, float],
    started: float,
    sent: float,
    finished: float,
    count: str,
) -> None:
    latencies = sorted((receiver.arrived[n] - committed[n]) * 1000 for n in committed)
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"incidents      {args.incidents} (batches of {args.batch}), receiver delay "
          f"{args.slow_ms} ms, dispatcher concurrency {args.concurrency}")  # fmt: skip
    print(f"ingest         {sent - started:.2f} s ({args.incidents / (sent - started):.0f}/s)")
    print(f"all delivered  {finished - started:.2f} s after the first send "
          f"({args.incidents / (finished - started):.0f} notifications/s end to end)")  # fmt: skip
    print(f"latency ms     p50 {quantiles[49]:.1f}  p90 {quantiles[89]:.1f}  "
          f"p99 {quantiles[98]:.1f}  max {latencies[-1]:.1f}  (2xx -> target)")  # fmt: skip
    print(f"daemon         {count}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notify_bench")
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--slow-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=300.0)
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
