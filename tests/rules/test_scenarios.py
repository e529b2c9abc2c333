"""Whole stories over time through the shipped rules and CMDB (config/rules, config/cmdb.yaml):
what an operator would see at the end. The clock is frozen per step; between steps the
scheduled jobs run once a minute (`rules.timers.tick`), as in the daemon."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from rules.heartbeats import SOURCE as HEARTBEAT
from rules.model import AlertStatus, Event, Hold, IncidentStatus, JoinReason, TimelineKind
from rules.priority import Priority
from tests.rules.builders import (
    at,
    event,
    firing,
    labels,
    minutes,
    resolved,
    shipped_rules,
    window,
)
from tests.rules.world import Pipeline

Timeline = Iterable[tuple[float, list[Event]]]


def play(pipeline: Pipeline, timeline: Timeline, tick_every: float = 60) -> None:
    """Send each step's events at its time; the jobs tick every `tick_every` seconds between."""
    clock = 0.0
    for seconds, events in sorted(timeline, key=lambda step: step[0]):
        while clock + tick_every < seconds:
            clock += tick_every
            pipeline.tick(at(clock))
        clock = seconds
        pipeline.step(at(seconds), *events)


# A core switch outage: dozens of alerts from three senders, one incident.

BEHIND_CORE = [
    "switch-1", "switch-2", "hv-1", "hv-2", "hv-3", "db-1", "db-2", "backup-1", "web-1",
    "web-2", "app-1", "app-2", "billing-1", "billing-db-1", "wiki-1", "tickets-1",
]  # fmt: skip


def outage_alerts(host: str, status: AlertStatus, second: float) -> list[Event]:
    """What each sender reports for one host behind the switch."""
    alerts = [
        # Nagios: the host is unreachable (its names are fully qualified).
        (f"nagios-{host}", "nagios", labels("HostUnreachable", f"{host}.example.com")),
        # Zabbix: ICMP ping fails (the visible host name differs from the technical one).
        (
            f"zabbix-{host}",
            "zabbix",
            labels("ICMPPingFailed", host.upper(), host_host=host),
        ),
        # Prometheus via Alertmanager: the node exporter target is down.
        (f"am-{host}", "alertmanager", labels("TargetDown", host, instance=f"{host}:9100")),
    ]
    found = []
    for fingerprint, source, alert_labels in alerts:
        group_key = '{}:{alertname="TargetDown"}' if source == "alertmanager" else None
        if status is AlertStatus.FIRING:
            found.append(firing(fingerprint, alert_labels, source=source, since=second))
        else:
            found.append(resolved(fingerprint, alert_labels, source=source, since=10, until=second))
        found[-1] = replace(found[-1], group_key=group_key, severity=found[-1].severity)
    return found


SWITCH = labels("HostDown", "core-switch-1", instance="core-switch-1:9100")


def outage() -> Pipeline:
    pipeline = Pipeline(shipped_rules())
    timeline: list[tuple[float, list[Event]]] = [
        (0, [firing("switch", SWITCH, source="alertmanager")])
    ]
    for index, host in enumerate(BEHIND_CORE):
        timeline.append((10 + index, outage_alerts(host, AlertStatus.FIRING, 10)))
    play(pipeline, timeline)
    return pipeline


def test_a_core_switch_outage_is_one_incident_about_the_switch() -> None:
    pipeline = outage()
    assert len(pipeline.world.alerts) == 1 + 3 * len(BEHIND_CORE)
    incident = pipeline.only_incident()
    assert (incident.ci, incident.rule, incident.status) == (
        "core-switch-1",
        "host-down",
        IncidentStatus.NEW,
    )
    assert incident.title == "HostDown on core-switch-1"
    members = set(pipeline.members(incident))
    held = {a.fingerprint for a in pipeline.world.alerts.values() if a.hold is Hold.INHIBITED}
    # Every alert is either a symptom of the switch's incident or muted by its host's own
    # down alert; none opened an incident of its own.
    assert members | held == {a.fingerprint for a in pipeline.world.alerts.values()}
    assert not members & held
    assert all(
        pipeline.alert(fp, a.source).reason is JoinReason.SYMPTOM
        for a in pipeline.world.alerts.values()
        if (fp := a.fingerprint) in members and fp != "switch"
    )
    # The hosts' own down alerts (Nagios, first) mute the Zabbix and Prometheus ones.
    assert held == {f"{s}-{h}" for h in BEHIND_CORE for s in ("zabbix", "am")}
    assert incident.firing_alerts == len(members)


def test_the_outage_incident_resolves_when_the_last_alert_recovers_and_nothing_else_opens() -> None:
    pipeline = outage()
    timeline: list[tuple[float, list[Event]]] = [
        (600, [resolved("switch", SWITCH, source="alertmanager", until=600)])
    ]
    # Nagios reports recoveries first; Zabbix and Prometheus a few minutes later. Meanwhile
    # the jobs release the alerts Nagios' down alerts muted: they join the switch's incident.
    for index, host in enumerate(BEHIND_CORE):
        nagios, zabbix, am = outage_alerts(host, AlertStatus.RESOLVED, 660 + index)
        timeline.append((660 + index, [nagios]))
        timeline.append((900 + index, [zabbix, am]))
    play(pipeline, timeline)
    incident = pipeline.only_incident()
    assert (incident.status, incident.resolved_at, incident.firing_alerts) == (
        IncidentStatus.RESOLVED,
        at(900 + len(BEHIND_CORE) - 1),
        0,
    )
    assert all(a.status is AlertStatus.RESOLVED for a in pipeline.world.alerts.values())
    assert all(a.hold is Hold.NONE for a in pipeline.world.alerts.values())
    assert pipeline.kinds(incident)[-1] is TimelineKind.RESOLVED


# A flapping service: one incident, quiet while it flaps, resolved once it settles.


def test_a_flapping_service_check_is_one_quiet_incident_that_settles() -> None:
    pipeline = Pipeline(shipped_rules())
    check = labels("HttpCheck", "web-2.example.com")
    timeline: list[tuple[float, list[Event]]] = []
    for cycle in range(15):  # half an hour: CRITICAL, OK two minutes later, every four
        start = cycle * 240
        timeline.append((start, [firing("http", check, source="nagios", since=start)]))
        end = start + 120
        timeline.append((end, [resolved("http", check, source="nagios", since=start, until=end)]))
    play(pipeline, timeline)
    incident = pipeline.only_incident()
    assert (incident.status, incident.reopen_count, incident.ci) == (
        IncidentStatus.NEW,
        3,
        "web-2",
    )
    last = 14 * 240 + 120
    play(pipeline, [(last + minutes(31), [])])
    incident = pipeline.only_incident()
    assert (incident.status, incident.resolved_at) == (
        IncidentStatus.RESOLVED,
        at(last + minutes(30)),  # settled at a tick: the jobs run every minute
    )
    kinds = pipeline.kinds(incident)
    assert (kinds.count(TimelineKind.FLAPPING_STARTED), kinds.count(TimelineKind.RESOLVED)) == (
        1,
        4,
    )


# Maintenance that ends while an alert still fires.


def test_maintenance_ending_while_an_alert_fires_opens_its_incident_then() -> None:
    db_work = replace(window("db-1-upgrade", minutes(10), minutes(70), 'host="db-1"'), id=42)
    pipeline = Pipeline(shipped_rules(), windows=(db_work,))
    disk = labels("DiskFull", "db-1", instance="db-1:9100")
    load = labels("HighLoad", "db-1", instance="db-1:9100")
    slow = labels("SlowQueries", "db-1", instance="db-1:9100")
    play(
        pipeline,
        [
            (0, [firing("slow", slow, source="zabbix")]),  # before the window
            (minutes(15), [firing("disk", disk, since=minutes(15))]),
            (minutes(20), [firing("load", load, since=minutes(20))]),
            (minutes(30), [resolved("load", load, since=minutes(20), until=minutes(30))]),
            (minutes(40), [resolved("slow", slow, source="zabbix", until=minutes(40))]),
            (minutes(80), []),
        ],
    )
    slow_incident, disk_incident = pipeline.incidents()
    # An alert that fired before the window keeps its incident and resolves as usual.
    assert (slow_incident.status, slow_incident.resolved_at) == (
        IncidentStatus.RESOLVED,
        at(minutes(40)),
    )
    # The one still firing at the end opens its incident at the first tick after it.
    assert pipeline.members(disk_incident) == ["disk"]
    assert (disk_incident.opened_at, disk_incident.status) == (at(minutes(70)), IncidentStatus.NEW)
    assert disk_incident.priority == Priority.P2  # a warning (medium) about the shop (high)
    # The one that resolved inside the window never opened anything.
    assert pipeline.alert("load").incident_id is None
    assert pipeline.decisions("maintenance") == [("42", "suppressed"), ("42", "suppressed")]


# An incident that keeps coming back becomes a problem.


def test_a_recurring_incident_becomes_a_problem_that_later_incidents_join() -> None:
    pipeline = Pipeline(shipped_rules())
    disk = labels("DiskFull", "wiki-1", instance="wiki-1:9100")
    timeline: list[tuple[float, list[Event]]] = []
    for hour in (0, 3, 6, 9):
        start = hour * 3600
        timeline.append((start, [firing("disk", disk, since=start)]))
        timeline.append((start + 600, [resolved("disk", disk, since=start, until=start + 600)]))
    play(pipeline, timeline, tick_every=600)
    incidents = pipeline.incidents()
    assert len(incidents) == 4
    [problem] = pipeline.problems()
    assert (problem.rule, problem.title, problem.incident_count) == (
        "recurring",
        "Recurring: disk full",  # the per-alert rule titles incidents by their summary
        4,
    )
    assert [i.problem_id for i in incidents] == [problem.id] * 4
    assert [i.seq for i in incidents] == [0, 1, 2, 3]


# The alerting pipeline goes quiet: the Watchdog stops.


def test_a_missed_watchdog_opens_an_incident_until_alertmanager_is_back() -> None:
    pipeline = Pipeline(shipped_rules())
    beats = [
        (minute * 60, [event("wd", labels={"alertname": "Watchdog"}, digest=f"beat-{minute}")])
        for minute in [*range(0, 10), *range(30, 35)]
    ]
    play(pipeline, beats)
    incident = pipeline.only_incident()
    assert (incident.opened_at, incident.resolved_at) == (at(minutes(15)), at(minutes(30)))
    assert incident.status is IncidentStatus.RESOLVED
    assert (incident.rule, incident.severity.value, incident.priority) == (
        "per-alert",
        "critical",
        Priority.P2,
    )
    assert pipeline.alert("prometheus-watchdog", HEARTBEAT).status is AlertStatus.RESOLVED
    assert pipeline.alert("wd", "alertmanager").hold is Hold.HEARTBEAT
