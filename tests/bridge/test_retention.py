"""The retention job on SQLite and PostgreSQL: rows built through the running daemon, the clock
advanced, `jobs.apply_retention` run once; what goes, what stays, and that ingest goes on."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event, insert, select, update

from bridge import jobs
from bridge.store.tables import (
    alerts,
    events,
    incident_links,
    incident_targets,
    incidents,
    inhibitors,
    notifications,
    paging,
    timeline,
)
from tests.bridge.conftest import Bridge
from tests.bridge.test_rule_scenarios import act, prometheus

DAY = 86400.0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "retain_resolved_alerts": "5d",
        "retain_closed_incidents": "10d",
        "retain_notifications": "3d",
        "retain_events": "2d",
        "retention_batch": 2,  # every kind takes several batches
    }


def disk(host: str, mountpoint: str = "/") -> dict[str, str]:
    return {"alertname": "DiskFull", "instance": f"{host}:9100", "mountpoint": mountpoint}


async def incident_of(bridge: Bridge, labels: dict[str, str]) -> int:
    async with bridge.runtime.engine.connect() as conn:
        query = select(alerts.c.incident_id, alerts.c.labels)
        for incident_id, stored in await conn.execute(query):
            if stored.items() >= labels.items():
                assert incident_id is not None
                return int(incident_id)
    raise AssertionError(f"no alert {labels}")


async def closed_incident(bridge: Bridge, labels: dict[str, str]) -> int:
    """An incident opened by `labels`, resolved by its alert a minute later, then closed."""
    await prometheus(bridge, labels)
    incident_id = await incident_of(bridge, labels)
    bridge.clock.advance(60)
    await prometheus(bridge, labels, resolved=True)
    status, answer = await act(bridge, incident_id, "close")
    assert (status, answer["status"]) == (200, "closed"), answer
    return incident_id


async def add_notification(
    bridge: Bridge, incident_id: int, status: str, at: datetime, key: str
) -> None:
    row = {
        "incident_id": incident_id, "target": "pager", "channel": "webhook",
        "transition": "opened", "key": key, "status": status, "created_at": at,
        "next_attempt_at": at, "sent_at": at if status == "sent" else None,
    }  # fmt: skip
    async with bridge.runtime.engine.begin() as conn:
        await conn.execute(insert(notifications), [row])


async def add_targets_and_paging(bridge: Bridge, incident_id: int) -> None:
    now = bridge.clock.now()
    async with bridge.runtime.engine.begin() as conn:
        await conn.execute(
            insert(incident_targets),
            [{"incident_id": incident_id, "target": "pager", "channel": "webhook", "told_at": now}],
        )
        await conn.execute(
            insert(paging),
            [{"incident_id": incident_id, "routes": ["everything"], "started_at": now,
              "step": 0, "round": 0, "repeats": 0}],
        )  # fmt: skip


async def ids(bridge: Bridge, table: Any, column: str = "id") -> set[int]:
    async with bridge.runtime.engine.connect() as conn:
        return {int(v) for v in (await conn.execute(select(table.c[column]))).scalars()}


async def fingerprints_of(bridge: Bridge) -> dict[str, tuple[str, int | None]]:
    """Alerts left: instance/mountpoint -> (status, incident_id)."""
    async with bridge.runtime.engine.connect() as conn:
        rows = await conn.execute(select(alerts.c.labels, alerts.c.status, alerts.c.incident_id))
        return {
            f"{r.labels['instance']}{r.labels.get('mountpoint', '')}": (r.status, r.incident_id)
            for r in rows
        }


def deleted(bridge: Bridge, kind: str) -> float | None:
    registry = bridge.runtime.metrics.registry
    return registry.get_sample_value("bridge_retention_deleted_total", {"kind": kind})


async def test_old_closed_incidents_sent_notifications_resolved_alerts_and_events_go(
    bridge: Bridge,
) -> None:
    t0 = bridge.clock.now()
    old = await closed_incident(bridge, disk("web-1"))  # closed at t0 + 1m
    # An open incident of two alerts, one of them resolved long ago.
    await prometheus(bridge, disk("web-2"), disk("web-2", "/var"))
    bridge.clock.advance(60)
    await prometheus(bridge, disk("web-2", "/var"), resolved=True)
    open_ = await incident_of(bridge, disk("web-2"))
    assert await incident_of(bridge, disk("web-2", "/var")) == open_
    for status, key in (("sent", "o1"), ("dead", "o2")):
        await add_notification(bridge, old, status, t0, key)
    await add_targets_and_paging(bridge, old)
    await add_targets_and_paging(bridge, open_)
    await add_notification(bridge, open_, "sent", t0, "a-old-sent")
    await add_notification(bridge, open_, "pending", t0, "a-pending")
    await add_notification(bridge, open_, "dead", t0, "a-dead")
    bridge.clock.advance(5 * DAY)
    recent = await closed_incident(bridge, disk("web-3"))  # closed at t0 + 5d
    bridge.clock.advance(5.5 * DAY)
    await prometheus(bridge, disk("web-4"))  # at t0 + 10.5d: the only recent event
    fresh = await incident_of(bridge, disk("web-4"))
    await add_notification(bridge, open_, "sent", bridge.clock.now(), "a-recent-sent")
    before = await ids(bridge, events)
    bridge.clock.advance(0.5 * DAY)

    total = await jobs.apply_retention(bridge.runtime)

    assert await ids(bridge, incidents) == {open_, recent, fresh}
    for child in (timeline, incident_links, incident_targets, paging):
        assert old not in await ids(bridge, child, "incident_id"), child.name
    assert open_ in await ids(bridge, incident_targets, "incident_id")
    assert recent in await ids(bridge, timeline, "incident_id")
    async with bridge.runtime.engine.connect() as conn:
        kept = {n.key for n in await conn.execute(select(notifications.c.key))}
    assert kept == {"a-pending", "a-dead", "a-recent-sent"}
    # The firing alert and the resolved member of the open incident stay; the resolved alerts
    # of the deleted incident and of the closed one (closed incidents keep nobody) go.
    assert await fingerprints_of(bridge) == {
        "web-2:9100/": ("firing", open_),
        "web-2:9100/var": ("resolved", open_),
        "web-4:9100/": ("firing", fresh),
    }
    assert len(await ids(bridge, events)) == 1
    assert len(before) > 6
    counts = {k: deleted(bridge, k) for k in ("incidents", "alerts", "notifications", "events")}
    assert counts == {"incidents": 1, "alerts": 2, "notifications": 3, "events": len(before) - 1}
    assert total == sum(v or 0 for v in counts.values())
    assert await jobs.apply_retention(bridge.runtime) == 0
    # Ingest goes on: the deleted alert is new again and opens a new incident; the open one
    # still shows both its alerts.
    await prometheus(bridge, disk("web-1"))
    assert await incident_of(bridge, disk("web-1")) not in (old, open_, recent, fresh)
    detail = await bridge.get_json(f"/api/v1/incidents/{open_}")
    assert len(detail["alerts"]) == 2


async def test_resolved_alerts_that_something_still_needs_stay(bridge: Bridge) -> None:
    for host in ("db-1", "db-2", "db-3", "db-4", "db-5"):
        await closed_incident(bridge, disk(host))  # closed incidents keep nobody
    await prometheus(bridge, disk("keep"))
    keep = await incident_of(bridge, disk("keep"))
    in_also, linked, inhibiting = [await _fp(bridge, h) for h in ("db-1", "db-2", "db-3")]
    async with bridge.runtime.engine.begin() as conn:
        await conn.execute(update(alerts).where(alerts.c.fingerprint == in_also), {"also": [keep]})
        link = {"incident_id": keep, "source": "prometheus", "fingerprint": linked,
                "rule": "per-alert", "reason": "grouped", "at": bridge.clock.now()}  # fmt: skip
        await conn.execute(insert(incident_links), [link])
        inhibitor = {"rule": "host-down-mutes-its-services", "key": "db-3",
                     "source": "prometheus", "fingerprint": inhibiting}  # fmt: skip
        await conn.execute(insert(inhibitors), [inhibitor])
    bridge.clock.advance(6 * DAY)

    await jobs.apply_retention(bridge.runtime)

    left = await fingerprints_of(bridge)
    assert sorted(left) == ["db-1:9100/", "db-2:9100/", "db-3:9100/", "keep:9100/"]
    assert deleted(bridge, "alerts") == 2  # db-4 and db-5, in batches of two among the kept
    # Once the open incident closes (and its own retention passes), they go too.
    async with bridge.runtime.engine.begin() as conn:
        await conn.execute(delete(inhibitors))
    await prometheus(bridge, disk("keep"), resolved=True)
    assert (await act(bridge, keep, "close"))[0] == 200
    bridge.clock.advance(6 * DAY)
    await jobs.apply_retention(bridge.runtime)
    assert sorted(await fingerprints_of(bridge)) == []


async def _fp(bridge: Bridge, host: str) -> str:
    async with bridge.runtime.engine.connect() as conn:
        for fingerprint, labels in await conn.execute(
            select(alerts.c.fingerprint, alerts.c.labels)
        ):
            if labels["instance"] == f"{host}:9100":
                return str(fingerprint)
    raise AssertionError(host)


async def test_alerts_of_a_deleted_incident_that_must_stay_are_detached(bridge: Bridge) -> None:
    firing = await closed_incident(bridge, disk("app-1"))
    kept = await closed_incident(bridge, disk("app-2"))
    async with bridge.runtime.engine.begin() as conn:  # cannot happen, but must not break
        await conn.execute(
            update(alerts).where(alerts.c.incident_id == firing), {"status": "firing"}
        )
    # Resolved alerts are kept longer than closed incidents here.
    runtime = bridge.runtime
    runtime.settings = runtime.settings.model_copy(update={"retain_resolved_alerts": timedelta(0)})
    bridge.clock.advance(11 * DAY)

    await jobs.apply_retention(runtime)

    assert not {firing, kept} & await ids(bridge, incidents)
    assert await fingerprints_of(bridge) == {
        "app-1:9100/": ("firing", None),
        "app-2:9100/": ("resolved", None),
    }
    assert deleted(bridge, "incidents") == 2
    assert deleted(bridge, "alerts") == 0


async def test_events_go_in_batches_of_retention_batch_in_one_run(bridge: Bridge) -> None:
    await prometheus(bridge, *(disk(f"batch-{i}") for i in range(5)))
    assert len(await ids(bridge, events)) == 5
    bridge.clock.advance(3 * DAY)
    await prometheus(bridge, disk("batch-new"))
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        if sql.lstrip().upper().startswith("DELETE FROM EVENTS"):
            statements.append(sql)

    engine = bridge.runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await jobs.apply_retention(bridge.runtime)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(await ids(bridge, events)) == 1
    assert deleted(bridge, "events") == 5
    assert len(statements) == 3  # 2 + 2 + 1


@pytest.mark.parametrize(
    "settings_overrides",
    [{"retain_resolved_alerts": "0s", "retain_closed_incidents": "0s",
      "retain_notifications": "0s", "retain_events": "0s"}],
)  # fmt: skip
async def test_zero_keeps_everything(bridge: Bridge) -> None:
    closed = await closed_incident(bridge, disk("web-9"))
    await add_notification(bridge, closed, "sent", bridge.clock.now(), "k")
    before = {t.name: await ids(bridge, t) for t in (alerts, incidents, events, notifications)}
    bridge.clock.advance(1000 * DAY)
    assert await jobs.apply_retention(bridge.runtime) == 0
    after = {t.name: await ids(bridge, t) for t in (alerts, incidents, events, notifications)}
    assert after == before
    assert deleted(bridge, "events") == 0  # every kind shows, at 0


async def test_the_job_is_scheduled_at_retention_interval(bridge: Bridge) -> None:
    scheduler = jobs.schedule(bridge.runtime)
    job = scheduler.get_job("apply_retention")
    assert job is not None
    assert job.trigger.interval == timedelta(hours=1)
