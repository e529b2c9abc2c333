"""The pure parts of the load generator: fingerprints, body shapes, the action mix, percentiles."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from itertools import islice
from typing import Any

import orjson
import pytest

from bench.loadgen import (
    ZERO_TIME,
    Item,
    Workload,
    fingerprint,
    percentile,
    stamp,
)

WEBHOOK_KEYS = {
    "receiver",
    "status",
    "alerts",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "version",
    "groupKey",
    "truncatedAlerts",
}
WEBHOOK_ALERT_KEYS = {
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
}
PROMETHEUS_ALERT_KEYS = {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _workload(kind: str) -> Workload:
    workload = Workload("webhook" if kind == "webhook" else "apiv2", 5000, 0.8, 0.1, seed=1)
    workload.prime()
    return workload


def _batches(workload: Workload, size: int, count: int) -> list[list[Item]]:
    return list(islice(workload.batches(size), count))


def test_fingerprint_matches_alertmanager() -> None:
    # From the captured am-04 webhook (Alertmanager 0.25).
    labels = {
        "alertname": "DiskFull",
        "e2e_run": "fixture-capture",
        "instance": "db-01.e2e.example:9100",
        "job": "node",
        "monitor": "bridge-e2e",
        "mountpoint": "/var",
        "severity": "warning",
        "team": "dba",
    }
    assert fingerprint(labels) == "8d2696b996872ba6"
    assert fingerprint(dict(reversed(labels.items()))) == "8d2696b996872ba6"


def test_webhook_body_has_alertmanager_v4_shape() -> None:
    workload = _workload("webhook")
    for items in _batches(workload, 50, 20):
        body: dict[str, Any] = orjson.loads(stamp(workload.render(items)))
        assert set(body) == WEBHOOK_KEYS
        assert body["version"] == "4"
        alertname = body["groupLabels"]["alertname"]
        assert body["groupKey"] == f'{{}}:{{alertname="{alertname}"}}'
        assert len(body["alerts"]) == len(items) == 50
        for alert in body["alerts"]:
            assert set(alert) == WEBHOOK_ALERT_KEYS
            assert alert["labels"]["alertname"] == alertname
            assert alert["fingerprint"] == fingerprint(alert["labels"])
            assert len(alert["fingerprint"]) == 16
            if alert["status"] == "firing":
                assert alert["endsAt"] == ZERO_TIME
            else:
                assert _parse_time(alert["endsAt"]) >= _parse_time(alert["startsAt"])
        assert body["commonLabels"].items() <= body["alerts"][0]["labels"].items()
        firing = any(alert["status"] == "firing" for alert in body["alerts"])
        assert body["status"] == ("firing" if firing else "resolved")


def test_prometheus_body_is_a_bare_array_with_ends_at() -> None:
    workload = _workload("apiv2")
    items = _batches(workload, 100, 5)[-1]
    before = time.time()
    alerts: list[dict[str, Any]] = orjson.loads(stamp(workload.render(items)))
    assert len(alerts) == 100
    for alert, item in zip(alerts, items, strict=True):
        assert set(alert) == PROMETHEUS_ALERT_KEYS
        ends = _parse_time(alert["endsAt"]).timestamp()
        if item.action == "resolve":
            assert ends <= time.time()
        else:
            assert ends >= before + 7


def test_identities_are_unique_within_a_batch() -> None:
    workload = _workload("webhook")
    for items in _batches(workload, 100, 50):
        assert len({item.identity for item in items}) == len(items)


@pytest.mark.parametrize("kind", ["webhook", "apiv2"])
def test_action_shares_follow_the_settings(kind: str) -> None:
    workload = _workload(kind)
    actions = Counter(item.action for items in _batches(workload, 100, 300) for item in items)
    total = sum(actions.values())
    assert total == 30_000
    assert actions["resend"] / total == pytest.approx(0.8, abs=0.03)
    assert actions["resolve"] / total == pytest.approx(0.1, abs=0.02)
    assert actions["new"] / total == pytest.approx(0.1, abs=0.02)


def test_same_seed_gives_the_same_workload() -> None:
    first = [[(i.identity, i.action) for i in b] for b in _batches(_workload("apiv2"), 10, 20)]
    second = [[(i.identity, i.action) for i in b] for b in _batches(_workload("apiv2"), 10, 20)]
    assert first == second


@pytest.mark.parametrize(
    ("pct", "expected"),
    [(0, 1.0), (10, 1.0), (50, 5.0), (90, 9.0), (99, 10.0), (100, 10.0)],
)
def test_percentile_is_nearest_rank(pct: float, expected: float) -> None:
    assert percentile([float(v) for v in range(1, 11)], pct) == expected


def test_percentile_of_a_hundred_and_of_nothing() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 99.9) == 100.0
    assert percentile([], 50) == 0.0
