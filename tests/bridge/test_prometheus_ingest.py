"""Prometheus posting straight to `/api/v2/alerts`: level-triggered alerts, expiry."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bridge import jobs
from tests.bridge.conftest import CAPTURED, Bridge

PROM = CAPTURED / "prometheus"
API = "/api/v2/alerts"


def body(name: str) -> Any:
    return json.loads((PROM / name).read_text())


def arrival(hms: str) -> datetime:
    return datetime.fromisoformat(f"2026-11-23T{hms}+00:00")


async def post(bridge: Bridge, name: str, hms: str, path: str = API) -> dict[str, Any]:
    bridge.clock.set(arrival(hms))
    status, answer = await bridge.post_json(path, body(name))
    assert status == 200, answer
    assert answer["rejected"] == []
    result: dict[str, Any] = answer
    return result


async def open_incidents(bridge: Bridge) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await bridge.get_json("/api/v1/incidents?status=open"))[
        "incidents"
    ]
    return found


async def test_prometheus_alerts_open_incidents_and_resolves_close_them(bridge: Bridge) -> None:
    await post(bridge, "prom-01-firing-hostdown-1alerts.json", "20:00:43.912")
    await post(bridge, "prom-03-firing-diskfull-3alerts.json", "20:00:45.912")
    titles = {i["title"] for i in await open_incidents(bridge)}
    # The shipped `normalize` rules shorten host names to what the CMDB uses.
    assert "HostDown on web-01" in titles
    assert len(titles) == 4  # HostDown, and DiskFull per instance (rule per-alert)
    await post(bridge, "prom-10-firing-hostdown-1alerts-resend.json", "20:00:52.910")
    await post(bridge, "prom-12-resolved-diskfull-hostdown-2alerts.json", "20:00:53.911")
    remaining = {i["title"] for i in await open_incidents(bridge)}
    assert not any("HostDown" in t or "db-03" in t for t in remaining), remaining
    assert len(remaining) == 2
    # Prometheus re-sends resolved alerts for 15 minutes: they change nothing.
    await post(bridge, "prom-24-resolved-hostdown-1alerts.json", "20:01:02.910")
    assert len(await open_incidents(bridge)) == 2


async def test_a_firing_alert_that_is_not_resent_resolves_when_its_ends_at_passes(
    bridge: Bridge,
) -> None:
    await post(bridge, "prom-01-firing-hostdown-1alerts.json", "20:00:43.912")
    assert await jobs.resolve_expired(bridge.runtime) == 0
    bridge.clock.set(arrival("20:00:52.000"))  # endsAt was 20:00:51.9
    assert await jobs.resolve_expired(bridge.runtime) == 1
    assert await open_incidents(bridge) == []
    alerts = (await bridge.get_json("/api/v1/alerts?status=resolved"))["alerts"]
    assert [a["ends_at"] for a in alerts] == ["2026-11-23T20:00:51.907000+00:00"]


async def test_a_resend_before_expiry_keeps_the_alert_firing(bridge: Bridge) -> None:
    await post(bridge, "prom-01-firing-hostdown-1alerts.json", "20:00:43.912")
    await post(bridge, "prom-10-firing-hostdown-1alerts-resend.json", "20:00:50.910")
    bridge.clock.set(arrival("20:00:55.000"))
    assert await jobs.resolve_expired(bridge.runtime) == 0
    assert len(await open_incidents(bridge)) == 1


async def test_legacy_v1_path_is_accepted(bridge: Bridge) -> None:
    answer = await post(
        bridge,
        "prom-apiv1-01-firing-highlatency-hostdown-3alerts.json",
        "20:01:22.569",
        path="/api/v1/alerts",
    )
    assert answer["accepted"] == 3
    # HostDown on web-01 inhibits web-01's HighLatency (shipped `inhibit` rule): two
    # incidents, and the inhibited alert is stored and visible as such.
    opened = await open_incidents(bridge)
    assert sorted((i["rule"], i["title"]) for i in opened) == [
        ("host-down", "HostDown on web-01"),
        ("per-alert", "p99 latency on web-02.e2e.example:9100 is 2.4s"),
    ]
    held = (await bridge.get_json("/api/v1/alerts?hold=inhibited"))["alerts"]
    assert [(a["labels"]["alertname"], a["labels"]["host"]) for a in held] == [
        ("HighLatency", "web-01")
    ]
    assert held[0]["held_by"].startswith("inhibit:host-down-mutes-its-services by prometheus/")
