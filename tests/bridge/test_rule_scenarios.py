"""The rule engine's stories through the running daemon (HTTP in, database, scheduled jobs),
on SQLite and PostgreSQL, with the shipped rules and CMDB: a host outage seen by three
sources, a flapping check, a maintenance window that ends while an alert fires, recurring
incidents that become a problem, a missed heartbeat, and a hot reload."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from bridge import jobs
from tests.bridge.conftest import CAPTURED, Bridge

NAGIOS_TEMPLATE = json.loads(
    (
        CAPTURED / "nagios" / "nagios-01-service-problem-e2e-db-01-postgresql-critical.json"
    ).read_text()
)
CONFIG = Path(__file__).resolve().parents[2] / "config"
ZABBIX_TEMPLATE = json.loads((CAPTURED / "zabbix" / "webhook-problem-sev4-high.json").read_text())


def iso(bridge: Bridge, offset: float = 0) -> str:
    return (bridge.clock.now() + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z")


async def prometheus(bridge: Bridge, *alerts: dict[str, Any], resolved: bool = False) -> None:
    body = [
        {
            "labels": alert,
            "annotations": {"summary": f"{alert['alertname']} on {alert.get('instance', '')}"},
            "startsAt": iso(bridge, -60),
            "endsAt": iso(bridge, -1) if resolved else iso(bridge, 300),
        }
        for alert in alerts
    ]
    status, answer = await bridge.post_json("/api/v2/alerts", body)
    assert status == 200, answer


async def nagios_service(bridge: Bridge, host: str, service: str, state: str = "CRITICAL") -> None:
    body = dict(NAGIOS_TEMPLATE)
    problem = state != "OK"
    body.update(
        HOSTNAME=host, HOSTDISPLAYNAME=host, SERVICEDESC=service, SERVICEDISPLAYNAME=service,
        SERVICESTATE=state, SERVICESTATEID="2" if problem else "0",
        NOTIFICATIONTYPE="PROBLEM" if problem else "RECOVERY",
        TIMET=str(int(bridge.clock.now().timestamp())),
        LASTSERVICESTATECHANGE=str(int(bridge.clock.now().timestamp())),
    )  # fmt: skip
    status, answer = await bridge.post_json("/api/v1/webhooks/nagios", body)
    assert status == 200, answer
    assert answer["rejected"] == [], answer


async def zabbix_problem(bridge: Bridge, host: str, trigger: str, event_id: int) -> None:
    body = dict(ZABBIX_TEMPLATE)
    body.update(
        host_host=host, host_name=host, trigger_name=trigger, event_name=trigger,
        trigger_id=str(50000 + event_id), event_id=str(event_id),
    )  # fmt: skip
    status, answer = await bridge.post_json("/api/v1/webhooks/zabbix", body)
    assert status == 200, answer
    assert answer["rejected"] == [], answer


async def open_incidents(bridge: Bridge) -> list[dict[str, Any]]:
    listed = (await bridge.get_json("/api/v1/incidents?status=open&limit=1000"))["incidents"]
    return [await bridge.get_json(f"/api/v1/incidents/{i['id']}") for i in listed]


async def test_host_outage_across_three_sources_is_one_incident(bridge: Bridge) -> None:
    # switch-1 goes down (Nagios host check); everything in rack 1 behind it complains.
    status, answer = await bridge.post_json(
        "/api/v1/webhooks/nagios",
        {**NAGIOS_TEMPLATE, "object_type": "host", "NOTIFICATIONTYPE": "PROBLEM",
         "HOSTNAME": "switch-1", "HOSTSTATE": "DOWN", "HOSTSTATEID": "1",
         "HOSTOUTPUT": "CRITICAL - 100% packet loss", "SERVICEDESC": ""},
    )  # fmt: skip
    assert status == 200, answer
    behind = ["hv-1", "hv-2", "db-1", "web-1", "app-1", "billing-1", "tickets-1"]
    for n, host in enumerate(behind):
        bridge.clock.advance(1)
        await prometheus(
            bridge,
            {"alertname": "NodeExporterDown", "instance": f"{host}:9100", "job": "node"},
            {"alertname": "HighLatency", "instance": f"{host}:9100", "job": "web"},
        )
        await nagios_service(bridge, host, "SSH")
        await nagios_service(bridge, host, "Disk /var")
        await zabbix_problem(bridge, host, f"Zabbix agent on {host} is unreachable", 1000 + n)
    [incident] = await open_incidents(bridge)
    assert incident["rule"] == "host-down"
    assert incident["ci"] == "switch-1"
    assert incident["alert_count"] == 1 + 5 * len(behind)
    reasons = [a["joined_reason"] for a in incident["alerts"]]
    assert reasons.count("opened") == 1
    assert reasons.count("symptom") == 5 * len(behind)
    sources = {a["source"] for a in incident["alerts"]}
    assert sources == {"nagios", "prometheus", "zabbix"}
    # switch-1 serves no service itself (P2: default medium impact, critical); the symptoms on
    # the shop's hosts behind it (high criticality) raise it to P1, and the timeline says so.
    assert incident["priority"] == "P1"
    [raised] = [e for e in incident["timeline"] if e["kind"] == "priority_changed"]
    assert raised["message"].startswith("priority P2 -> P1 by ")


async def test_a_flapping_check_keeps_one_incident_open_and_quiet(bridge: Bridge) -> None:
    for _ in range(6):
        bridge.clock.advance(60)
        await nagios_service(bridge, "web-2", "HTTP")
        bridge.clock.advance(60)
        await nagios_service(bridge, "web-2", "HTTP", state="OK")
    listed = (await bridge.get_json("/api/v1/incidents?limit=100"))["incidents"]
    assert len(listed) == 1
    incident = await bridge.get_json(f"/api/v1/incidents/{listed[0]['id']}")
    assert incident["status"] == "new"  # kept open while it flaps
    kinds = [entry["kind"] for entry in incident["timeline"]]
    # Nagios' thresholds need six changes in a row before flapping starts (30%): the first
    # cycles resolve and reopen; after detection the incident stays open and quiet.
    started = kinds.index("flapping_started")
    assert kinds[:started].count("reopened") == 3
    assert "resolved" not in kinds[started:]
    assert "reopened" not in kinds[started:]
    [alert] = incident["alerts"]
    assert alert["flapping"] is True
    # It stays resolved: after the settle time the recheck job lets the incident resolve.
    bridge.clock.advance(31 * 60)
    assert await jobs.recheck_held(bridge.runtime) == 1
    incident = await bridge.get_json(f"/api/v1/incidents/{listed[0]['id']}")
    assert incident["status"] == "resolved"
    assert incident["timeline"][-1]["kind"] == "resolved"


async def test_maintenance_window_ending_while_an_alert_fires_opens_its_incident(
    bridge: Bridge,
) -> None:
    status, window = await bridge.post_json(
        "/api/v1/maintenance",
        {"name": "db-1-patch", "matchers": ['host="db-1"'], "start": iso(bridge, -1),
         "end": iso(bridge, 600), "created_by": "alice", "reason": "kernel update",
         "change_ref": "CHG0012345"},
    )  # fmt: skip
    assert status == 201, window
    assert window["active"] is True
    assert window["created_by"] == "alice"
    await prometheus(bridge, {"alertname": "PostgresDown", "instance": "db-1:9187"})
    assert await open_incidents(bridge) == []
    held = (await bridge.get_json("/api/v1/alerts?hold=maintenance"))["alerts"]
    assert [a["held_by"] for a in held] == [f"maintenance:{window['id']}"]
    bridge.clock.advance(300)
    await prometheus(bridge, {"alertname": "PostgresDown", "instance": "db-1:9187"})  # re-send
    assert await open_incidents(bridge) == []
    bridge.clock.advance(301)  # the window is over; the alert still fires
    assert await jobs.recheck_held(bridge.runtime) == 1
    [incident] = await open_incidents(bridge)
    [alert] = incident["alerts"]
    assert (alert["joined_reason"], alert["hold"], alert["held_by"]) == ("opened", "none", "")
    # db-1 serves the shop (high impact); a label-less Prometheus alert is a warning (medium
    # urgency): P2.
    assert (incident["ci"], incident["service"], incident["priority"]) == ("db-1", "shop", "P2")


async def test_recurring_incidents_become_a_problem(bridge: Bridge) -> None:
    for _ in range(3):
        await prometheus(bridge, {"alertname": "BackupFailed", "instance": "backup-1:9100"})
        bridge.clock.advance(60)
        await prometheus(
            bridge, {"alertname": "BackupFailed", "instance": "backup-1:9100"}, resolved=True
        )
        bridge.clock.advance(2 * 3600)  # past the reopen window: the next one is a new incident
    problems = (await bridge.get_json("/api/v1/problems?status=active"))["problems"]
    [problem] = problems
    assert problem["rule"] == "recurring"
    detail = await bridge.get_json(f"/api/v1/problems/{problem['id']}")
    assert len(detail["incidents"]) == 3
    status, patched = await bridge.post_json(f"/api/v1/problems/{problem['id']}", {})
    assert status == 405
    response = await bridge.client.patch(
        f"/api/v1/problems/{problem['id']}",
        json={"status": "known_error", "root_cause": "disk of backup-1 is full"},
    )
    assert response.status == 200
    patched = await response.json()
    assert (patched["status"], patched["root_cause"]) == ("known_error", "disk of backup-1 is full")
    response = await bridge.client.patch(f"/api/v1/problems/{problem['id']}", json={"owner": 1})
    assert response.status == 422


async def test_a_missed_heartbeat_opens_an_incident_and_the_next_beat_resolves_it(
    bridge: Bridge,
) -> None:
    assert await jobs.check_heartbeats(bridge.runtime) == 0  # never beaten: not armed
    await prometheus(bridge, {"alertname": "Watchdog", "instance": "prometheus:9090"})
    assert await open_incidents(bridge) == []  # the Watchdog itself is no incident
    bridge.clock.advance(4 * 60)
    assert await jobs.check_heartbeats(bridge.runtime) == 0
    bridge.clock.advance(2 * 60)
    assert await jobs.check_heartbeats(bridge.runtime) == 1
    [incident] = await open_incidents(bridge)
    [alert] = incident["alerts"]
    assert (alert["source"], alert["labels"]["alertname"]) == ("heartbeat", "HeartbeatMissed")
    assert alert["labels"]["heartbeat"] == "prometheus-watchdog"
    assert incident["title"].startswith("Alertmanager's Watchdog has not arrived")
    assert await jobs.check_heartbeats(bridge.runtime) == 0  # already firing
    bridge.clock.advance(30)
    await prometheus(bridge, {"alertname": "Watchdog", "instance": "prometheus:9090"})
    assert await open_incidents(bridge) == []
    text = await (await bridge.client.get("/metrics")).text()
    assert (
        'bridge_rule_decisions_total{decision="missed",rule="prometheus-watchdog",'
        'stage="heartbeats"} 1.0'
    ) in text


async def test_reload_validates_everything_and_a_bad_file_changes_nothing(
    bridge: Bridge, tmp_path: Any
) -> None:
    rules_dir = bridge.runtime.settings.rules_dir
    assert rules_dir is None  # the shipped rules: reload them unchanged
    response = await bridge.client.post("/-/reload")
    assert response.status == 200
    before = bridge.runtime.rules
    bad = tmp_path / "rules"
    bad.mkdir()
    (bad / "a.yaml").write_text("correlate:\n  - name: x\n    group_by: [host]\n    window: soon\n")
    bridge.runtime.settings = bridge.runtime.settings.model_copy(update={"rules_dir": bad})
    response = await bridge.client.post("/-/reload")
    assert response.status == 422
    answer = await response.json()
    assert answer["errors"][0].startswith(f"{bad / 'a.yaml'}:4: correlate[0].window:")
    assert bridge.runtime.rules is before
    status = await bridge.get_json("/api/v1/status")
    assert status["rules"]["last_reload_error"]["errors"] == answer["errors"]
    text = await (await bridge.client.get("/metrics")).text()
    assert "bridge_rules_reload_failures_total 1.0" in text


def shipped_rules_with(tmp_path: Path, **sections: Any) -> Path:
    """A copy of the shipped rules (and CMDB) with the given sections replaced (None: left
    out)."""
    shutil.copy(CONFIG / "cmdb.yaml", tmp_path / "cmdb.yaml")
    rules = tmp_path / "rules"
    rules.mkdir()
    for path in sorted((CONFIG / "rules").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        for section, value in sections.items():
            if section in data and value is None:
                del data[section]
            elif section in data:
                data[section] = value
        (rules / path.name).write_text(yaml.safe_dump(data))
    return rules


async def reload_with(bridge: Bridge, rules: Path) -> None:
    bridge.runtime.settings = bridge.runtime.settings.model_copy(update={"rules_dir": rules})
    response = await bridge.client.post("/-/reload")
    assert response.status == 200, await response.text()


async def test_a_missed_heartbeat_resolves_when_a_reload_removes_its_rule(
    bridge: Bridge, tmp_path: Path
) -> None:
    await prometheus(bridge, {"alertname": "Watchdog", "instance": "prometheus:9090"})
    bridge.clock.advance(6 * 60)
    assert await jobs.check_heartbeats(bridge.runtime) == 1
    [incident] = await open_incidents(bridge)
    await reload_with(bridge, shipped_rules_with(tmp_path, heartbeats=None))
    bridge.clock.advance(60)
    await jobs.check_heartbeats(bridge.runtime)
    assert await open_incidents(bridge) == []
    resolved = await bridge.get_json(f"/api/v1/incidents/{incident['id']}")
    assert resolved["status"] == "resolved"


async def test_a_resolve_that_beats_a_heartbeat_resolves_its_missed_heartbeat(
    bridge: Bridge, tmp_path: Path
) -> None:
    # The daemon loads only what `lookups` names: a resolve that beats a heartbeat needs the
    # heartbeat's alert as much as a firing event does.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "heartbeats.yaml").write_text(
        "heartbeats:\n  - name: backup\n    match: {alertname: BackupDone}\n    every: 5m\n"
    )
    await reload_with(bridge, rules)
    done = {"alertname": "BackupDone", "instance": "backup-1:9100"}
    await prometheus(bridge, done, resolved=True)
    bridge.clock.advance(6 * 60)
    assert await jobs.check_heartbeats(bridge.runtime) == 1
    assert len(await open_incidents(bridge)) == 1
    await prometheus(bridge, done, resolved=True)
    assert await open_incidents(bridge) == []


async def test_a_source_resolved_after_a_reload_changed_its_inhibit_rule_releases_targets(
    bridge: Bridge, tmp_path: Path
) -> None:
    await prometheus(bridge, {"alertname": "HostDown", "instance": "db-1:9100"})
    await prometheus(bridge, {"alertname": "DiskFull", "instance": "db-1:9100"})
    [held] = (await bridge.get_json("/api/v1/alerts?hold=inhibited"))["alerts"]
    assert held["labels"]["alertname"] == "DiskFull"
    narrowed = {
        "name": "host-down-mutes-its-services",
        "source_matchers": ['alertname="HostDown"', 'severity="critical"'],
        "target_matchers": ['alertname!="HostDown"'],
        "equal": ["host"],
    }
    await reload_with(bridge, shipped_rules_with(tmp_path, inhibit=[narrowed]))
    bridge.clock.advance(60)
    await prometheus(bridge, {"alertname": "HostDown", "instance": "db-1:9100"}, resolved=True)
    assert await jobs.recheck_held(bridge.runtime) == 1
    assert (await bridge.get_json("/api/v1/alerts?hold=inhibited"))["alerts"] == []
    [incident] = await open_incidents(bridge)
    assert [a["labels"]["alertname"] for a in incident["alerts"]] == ["DiskFull"]


async def test_a_reopen_counts_for_the_problem_of_the_incidents_own_ci(
    bridge: Bridge, tmp_path: Path
) -> None:
    # A group's incident has the CI of the alert that opened it (db-1). When an alert of
    # another CI (db-2) reopens it, the daemon must see db-1's other incidents, as the
    # offline tools do, to open the shared-cause problem of db-1.
    shutil.copy(CONFIG / "cmdb.yaml", tmp_path)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text(
        yaml.safe_dump(
            {
                "topology": {"cmdb": "../cmdb.yaml", "bind": "host"},
                "correlate": [
                    {"name": "disk-burst", "match": {"alertname": "DiskFull"},
                     "group_by": ["alertname"]},
                    {"name": "per-alert", "group_by": ["alertname", "host"]},
                ],
                "problems": [{"name": "shared", "by": "ci", "count": 2, "within": "1h"}],
            }
        )
    )  # fmt: skip
    await reload_with(bridge, rules)
    disk_1 = {"alertname": "DiskFull", "instance": "db-1:9100"}
    await prometheus(bridge, disk_1)
    bridge.clock.advance(30 * 60)
    await prometheus(bridge, disk_1, resolved=True)
    bridge.clock.advance(40 * 60)
    await prometheus(bridge, {"alertname": "HighLoad", "instance": "db-1:9100"})
    assert (await bridge.get_json("/api/v1/problems"))["problems"] == []
    bridge.clock.advance(5 * 60)
    await prometheus(bridge, {"alertname": "DiskFull", "instance": "db-2:9100"})
    [problem] = (await bridge.get_json("/api/v1/problems"))["problems"]
    assert problem["ci"] == "db-1"
    detail = await bridge.get_json(f"/api/v1/problems/{problem['id']}")
    assert len(detail["incidents"]) == 2


async def test_the_recheck_job_pages_through_every_held_alert(
    bridge: Bridge, monkeypatch: Any
) -> None:
    monkeypatch.setattr(jobs, "_EXPIRY_BATCH", 2)  # pages of two: five alerts need three
    status, window = await bridge.post_json(
        "/api/v1/maintenance",
        {"name": "all-web", "matchers": ['alertname="HighLatency"'], "start": iso(bridge, -1),
         "end": iso(bridge, 60), "created_by": "alice"},
    )  # fmt: skip
    assert status == 201, window
    hosts = [f"web-{n}" for n in range(5)]
    await prometheus(bridge, *({"alertname": "HighLatency", "instance": h} for h in hosts))
    held = (await bridge.get_json("/api/v1/alerts?hold=maintenance"))["alerts"]
    assert len(held) == 5
    bridge.clock.advance(61)
    assert await jobs.recheck_held(bridge.runtime) == 5
    assert len(await open_incidents(bridge)) == 5


async def test_inhibited_alerts_are_released_by_the_recheck_job_once_the_source_resolves(
    bridge: Bridge,
) -> None:
    down = {"alertname": "HostDown", "instance": "web-9:9100"}
    slow = {"alertname": "HighLatency", "instance": "web-9:9100"}
    await prometheus(bridge, down, slow)
    [held] = (await bridge.get_json("/api/v1/alerts?hold=inhibited"))["alerts"]
    assert held["labels"]["alertname"] == "HighLatency"
    assert await jobs.recheck_held(bridge.runtime) == 0  # the source still fires
    bridge.clock.advance(30)
    await prometheus(bridge, down, resolved=True)  # HighLatency still fires, still held
    assert await jobs.recheck_held(bridge.runtime) == 1
    [incident] = await open_incidents(bridge)
    assert incident["title"] == "HighLatency on web-9:9100"


async def test_sighup_reloads_the_rules(bridge: Bridge) -> None:
    before = bridge.runtime.rules
    os.kill(os.getpid(), signal.SIGHUP)
    deadline = asyncio.get_running_loop().time() + 10
    while bridge.runtime.rules is before:
        assert asyncio.get_running_loop().time() < deadline, "SIGHUP did not reload the rules"
        await asyncio.sleep(0.01)
    assert bridge.runtime.rules.digest == before.digest  # the same files, loaded again
    text = await (await bridge.client.get("/metrics")).text()
    assert "bridge_rules_reloads_total 1.0" in text


async def act(bridge: Bridge, incident_id: int, verb: str, **body: Any) -> tuple[int, Any]:
    return await bridge.post_json(
        f"/api/v1/incidents/{incident_id}/{verb}", {"actor": "alice", **body}
    )


async def test_the_incident_lifecycle_through_the_api(bridge: Bridge) -> None:
    await prometheus(bridge, {"alertname": "DiskFull", "instance": "web-3:9100"})
    [incident] = await open_incidents(bridge)
    iid = incident["id"]
    assert (await act(bridge, iid, "assign", assignment_group="web", assignee="bob"))[0] == 200
    assert (await act(bridge, iid, "comment", comment="looking"))[0] == 200
    status, answer = await act(bridge, iid, "priority", priority="P1", comment="checkout")
    assert (status, answer["priority"]) == (200, "P1")
    assert (await act(bridge, iid, "acknowledge"))[0] == 200
    status, answer = await act(bridge, iid, "unacknowledge", comment="handing over")
    assert (status, answer["status"]) == (200, "new")
    status, answer = await act(bridge, iid, "close")
    assert status == 409
    assert "resolve it before closing it" in answer["error"]
    assert (await act(bridge, iid, "resolve"))[0] == 200
    status, answer = await act(bridge, iid, "close", comment="fixed for good")
    assert (status, answer["status"]) == (200, "closed")
    status, answer = await act(bridge, iid, "comment", comment="too late")
    assert status == 409
    detail = await bridge.get_json(f"/api/v1/incidents/{iid}")
    assert (detail["assignment_group"], detail["assignee"]) == ("web", "bob")
    assert [e["kind"] for e in detail["timeline"]][1:] == [
        "assigned", "comment", "priority_changed", "acknowledged", "unacknowledged",
        "resolved", "closed",
    ]  # fmt: skip
    sources = [e["source"] for e in detail["timeline"]]
    assert sources == ["rule"] + ["api"] * 7  # opened by the engine, then changed by alice
    # Closed is final: the same alert firing again opens a new incident (not a reopen).
    bridge.clock.advance(60)
    await prometheus(bridge, {"alertname": "DiskFull", "instance": "web-3:9100"}, resolved=True)
    bridge.clock.advance(60)
    await prometheus(bridge, {"alertname": "DiskFull", "instance": "web-3:9100"})
    [again] = await open_incidents(bridge)
    assert again["id"] != iid
    assert again["reopen_count"] == 0


async def test_bad_actions_are_422_and_unknown_incidents_404(bridge: Bridge) -> None:
    await prometheus(bridge, {"alertname": "DiskFull", "instance": "web-4:9100"})
    [incident] = await open_incidents(bridge)
    iid = incident["id"]
    assert (await act(bridge, iid, "priority", priority="P9"))[0] == 422
    assert (await act(bridge, iid, "priority", priority=True))[0] == 422
    assert (await act(bridge, iid, "assign"))[0] == 422
    assert (await act(bridge, iid, "comment"))[0] == 422
    status, _ = await bridge.post_json(f"/api/v1/incidents/{iid}/close", {})
    assert status == 422  # no actor
    assert (await act(bridge, 999, "close"))[0] == 404


async def test_resolved_incidents_close_by_themselves_after_close_after(bridge: Bridge) -> None:
    alert = {"alertname": "DiskFull", "instance": "web-5:9100"}
    await prometheus(bridge, alert)
    bridge.clock.advance(60)
    await prometheus(bridge, alert, resolved=True)
    [incident] = (await bridge.get_json("/api/v1/incidents?status=resolved"))["incidents"]
    bridge.clock.advance(6 * 86400)
    assert await jobs.close_resolved(bridge.runtime) == 0
    bridge.clock.advance(86400)
    assert await jobs.close_resolved(bridge.runtime) == 1
    closed = await bridge.get_json(f"/api/v1/incidents/{incident['id']}")
    assert closed["status"] == "closed"
    last = closed["timeline"][-1]
    assert (last["actor"], last["source"]) == ("rule:auto-close", "rule")
    text = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_incidents{status="closed"} 1.0' in text
