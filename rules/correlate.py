"""Stage `correlate`: decide which incident a firing alert joins, or why it is held.

Input: a firing alert that needs an incident (new, fired again, or released from a hold), its
match labels, the rule set and the world, through `Effects`. Output (added to the effects):
the alert with its incident link, the `JoinReason` and rule name; the opened or updated
incidents with their priority, timeline entries and member links; or the alert held as
`pending`, `inhibited` or `maintenance` with `held_by` naming what holds it.

Order of the checks: maintenance window -> inhibition -> topology (an ancestor CI of the
alert's CI has an active incident: the alert joins it as a symptom) -> the `correlate` rules
(first match wins; a rule with `continue: true` lets the next matching rule also take the
alert, into a second incident). A rule's `window` closes an incident to new alerts that long
after it opened; `min_alerts` holds the first alerts of a group as `pending` until enough
fire; a resolved incident of the same key reopens within the reopen window.

Rule sections: `maintenance`, `inhibit`, `topology`, `correlate`, `priority`. Metrics: the
`decision` label of `bridge_rule_decisions_total{stage="correlate"}` is the `JoinReason` (or
`pending`); inhibit and maintenance holds count under their own stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rules import incidents
from rules.effects import Effects
from rules.inhibit import inhibited_by, stale
from rules.keys import bounded
from rules.maintenance import maintenance_hold
from rules.model import (
    AlertState,
    Hold,
    IncidentState,
    IncidentStatus,
    JoinReason,
    Severity,
    TimelineEntry,
    TimelineKind,
    evolve,
)
from rules.problems import link_problem
from rules.ruleset import DEFAULT_GROUP_RULE, DEFAULT_LABEL_RULE, CorrelateRule, RuleSet
from rules.world import Link

TOPOLOGY_RULE = "topology"


@dataclass(frozen=True, slots=True)
class Route:
    rule: CorrelateRule
    key: str


def routes(ruleset: RuleSet, labels: Mapping[str, str]) -> list[Route]:
    """The rules that take the alert: the first match, and the next ones while `continue`."""
    found: list[Route] = []
    for rule in ruleset.correlate_index.candidates(labels):
        if rule.matches(labels):
            found.append(Route(rule, incident_key(rule, labels)))
            if not rule.cont:
                break
    if not found:
        fallback = DEFAULT_GROUP_RULE if labels.get("__group_key__") else DEFAULT_LABEL_RULE
        found.append(Route(fallback, incident_key(fallback, labels)))
    return found


def incident_key(rule: CorrelateRule, labels: Mapping[str, str]) -> str:
    """The rule name and its `group_by` values, bounded (`rules.keys`) for the database index."""
    parts = ",".join(f"{name}={labels.get(name, '')!r}" for name in rule.group_by)
    return bounded(f"{rule.name}{{{parts}}}")


def hold_of(
    fx: Effects, alert: AlertState, labels: Mapping[str, str]
) -> tuple[Hold, str, str, str] | None:
    """What keeps a firing alert out of incidents: (hold, held_by, stage, rule), or None."""
    windows = (*fx.rules.maintenance_index.candidates(labels), *fx.ctx.windows)
    window = maintenance_hold(windows, alert, labels, fx.now)
    if window is not None:
        return Hold.MAINTENANCE, window, "maintenance", window.removeprefix("maintenance:")
    if fx.rules.inhibit:
        fx.inhibitors.extend(stale(fx.rules, fx.world, labels))
    inhibitor = inhibited_by(fx.rules, fx.world, labels, (alert.source, alert.fingerprint))
    if inhibitor is not None:
        rule = inhibitor.split(" ", 1)[0].removeprefix("inhibit:")
        return Hold.INHIBITED, inhibitor, "inhibit", rule
    return None


@dataclass(frozen=True, slots=True)
class _Was:
    """The alert before it is placed again: the incidents it was a member of (rejoining one is
    no new member), and those that count it firing already (a pending alert is in the
    incidents of its `continue` routes)."""

    members: tuple[int, ...] = ()
    counted: tuple[int, ...] = ()


def place(fx: Effects, alert: AlertState, labels: Mapping[str, str]) -> AlertState:
    """Find the alert's incident, or hold it; returns the alert as it is to be stored."""
    was = _Was(alert.incident_ids, alert.also if alert.hold is Hold.PENDING else ())
    held = hold_of(fx, alert, labels)
    if held is not None:
        hold, held_by, stage, rule = held
        if alert.hold is not hold or alert.held_by != held_by:
            fx.decide(stage, rule, "suppressed" if hold is Hold.MAINTENANCE else "inhibited")
        return hold_alert(fx, alert, hold, held_by)
    # Placed afresh: it is in the incidents it joins now only (a symptom leaves the incidents
    # of its `continue` routes).
    placed = _placed(fx, evolve(alert, also=()), labels, was, released=alert.hold is not Hold.NONE)
    left = tuple(i for i in was.counted if i not in placed.incident_ids)
    incidents.depart(fx, placed, left, why="no longer routed there")
    return placed


def _placed(
    fx: Effects, alert: AlertState, labels: Mapping[str, str], was: _Was, *, released: bool
) -> AlertState:
    root = _root_cause(fx, labels)
    if root is not None:
        reason = JoinReason.RELEASED if released else JoinReason.SYMPTOM
        message = f"symptom of {root.ci}: {incidents.describe(alert)}"
        joined = _attach(fx, root, alert, labels, TOPOLOGY_RULE, reason, message, was)
        return _primary(alert, joined, TOPOLOGY_RULE, reason)
    found = routes(fx.rules, labels)
    alert = _join(fx, found[0], alert, labels, was, primary=True, released=released)
    for route in found[1:]:
        alert = _join(fx, route, alert, labels, was, primary=False, released=released)
    return alert


def hold_alert(fx: Effects, alert: AlertState, hold: Hold, held_by: str) -> AlertState:
    """The alert held (in no incident); a pending one leaves the incidents of its `continue`
    routes, which counted it."""
    if alert.hold is Hold.PENDING:
        incidents.depart(fx, alert, alert.also, why=f"held by {held_by}")
    return evolve(alert, hold=hold, held_by=held_by, incident_id=None, also=(), reason=None)


def _root_cause(fx: Effects, labels: Mapping[str, str]) -> IncidentState | None:
    """The active incident of the root-most ancestor CI of the alert's CI, if any."""
    topology = fx.rules.topology
    ci = topology.ci_of(labels) if topology is not None else None
    if topology is None or ci is None:
        return None
    for ancestor in reversed(topology.cmdb.ancestors(ci)):
        found = fx.world.active_for_ci(ancestor, topology.is_root)
        if found is not None:
            return fx.incident(found.id)
    return None


def _join(
    fx: Effects,
    route: Route,
    alert: AlertState,
    labels: Mapping[str, str],
    was: _Was,
    *,
    primary: bool,
    released: bool,
) -> AlertState:
    rule = route.rule
    latest = fx.world.latest_for_key(route.key)
    latest = fx.incident(latest.id) if latest is not None else None
    if not primary:
        grouped = JoinReason.CONTINUED
    else:
        grouped = JoinReason.RELEASED if released else JoinReason.GROUPED
    if latest is not None and _joinable(fx, rule, latest):
        if latest.id in was.counted:
            return _link(alert, latest, rule.name, grouped, primary)  # it is there already
        if not latest.status.is_active:
            latest = _reopen(fx, latest, alert)
        message = incidents.describe(alert)
        joined = _attach(fx, latest, alert, labels, rule.name, grouped, message, was)
        return _link(alert, joined, rule.name, grouped, primary)
    own = (alert.source, alert.fingerprint)
    pending = [a for a in fx.world.pending(route.key) if (a.source, a.fingerprint) != own]
    if primary and len(pending) + 1 < rule.min_alerts:
        held_by = f"correlate:{rule.name} ({len(pending) + 1} of {rule.min_alerts} alerts)"
        fx.decide("correlate", rule.name, Hold.PENDING.value)
        return evolve(
            alert, hold=Hold.PENDING, held_by=held_by, incident_key=route.key, incident_id=None
        )
    seq = latest.seq + 1 if latest is not None else 0
    incident = _open(fx, route, alert, labels, seq)
    reason = JoinReason.OPENED if primary else JoinReason.CONTINUED
    joined = _attach(
        fx, incident, alert, labels, rule.name, reason, incidents.describe(alert), _Was()
    )
    if primary:
        for waiting in pending:
            _release_pending(fx, joined, waiting, rule.name)
    link_problem(fx, fx.incident(joined.id) or joined)
    return _link(alert, fx.incident(joined.id) or joined, rule.name, reason, primary)


def _joinable(fx: Effects, rule: CorrelateRule, latest: IncidentState) -> bool:
    if rule.window is not None and fx.now - latest.opened_at > rule.window:
        return False  # the incident is closed to new alerts
    if latest.status.is_active:
        return True
    if latest.status is IncidentStatus.CLOSED:
        return False  # closed is final: the next alert of the key opens a new incident
    resolved = latest.resolved_at
    return resolved is not None and fx.now - resolved <= fx.ctx.settings.reopen_window


def _link(
    alert: AlertState, incident: IncidentState, rule: str, reason: JoinReason, primary: bool
) -> AlertState:
    if primary:
        return _primary(alert, incident, rule, reason)
    return evolve(alert, also=(*alert.also, incident.id))


def _primary(
    alert: AlertState, incident: IncidentState, rule: str, reason: JoinReason
) -> AlertState:
    return evolve(
        alert,
        incident_id=incident.id,
        rule=rule,
        reason=reason,
        hold=Hold.NONE,
        held_by="",
        incident_key=incident.key,
    )


def _open(
    fx: Effects, route: Route, alert: AlertState, labels: Mapping[str, str], seq: int
) -> IncidentState:
    rule = route.rule
    title = rule.title.render(labels, alert.annotations) if rule.title is not None else ""
    incident = incidents.opened(
        fx.world.new_id(), route.key, seq, rule.name, title or _default_title(labels),
        alert.severity, fx.now,
    )  # fmt: skip
    topology = fx.rules.topology
    ci = topology.ci_of(labels) if topology is not None else None
    # The CMDB's service wins over a `service` label (Nagios uses that name for its checks).
    cmdb_service = topology.cmdb.service_of(ci) if topology is not None and ci else None
    service = cmdb_service or labels.get("service") or None
    priority = _priority(fx, rule, alert.severity, labels, ci)
    incident = evolve(
        incident,
        ci=ci,
        service=service,
        priority=priority,
        labels=_route_labels(alert.labels),
        source=alert.source,
    )
    fx.put_incident(incident)
    fx.decide("incidents", rule.name, incidents.IncidentAction.OPENED)
    return incident


def _route_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The opening alert's own labels (without pseudo-labels), kept for notification routes."""
    return {k: v for k, v in labels.items() if not k.startswith("__")}


def _reopen(fx: Effects, incident: IncidentState, alert: AlertState) -> IncidentState:
    updated = incidents.reopened(incident)
    message = f"reopened by {incidents.describe(alert)}"
    fx.timeline.append(incidents.entry(updated, fx.now, TimelineKind.REOPENED, message, alert))
    fx.put_incident(updated)
    fx.decide("incidents", incident.rule, incidents.IncidentAction.REOPENED)
    link_problem(fx, updated)
    return fx.incident(updated.id) or updated


def _attach(
    fx: Effects,
    incident: IncidentState,
    alert: AlertState,
    labels: Mapping[str, str],
    rule: str,
    reason: JoinReason,
    message: str,
    was: _Was,
) -> IncidentState:
    updated = incidents.with_member(
        incident,
        alert,
        fx.now,
        returning=incident.id in was.members,
        counted=incident.id in was.counted,
    )
    updated, raised = _reprioritized(fx, updated, alert, labels)
    opening = incident.alert_count == 0  # its first alert (for a `continue` rule, continued)
    kind = TimelineKind.OPENED if opening else TimelineKind.ALERT_ATTACHED
    if opening:
        message = f"opened by {message}"
    if reason not in (JoinReason.OPENED, JoinReason.GROUPED):
        message = f"{message} ({reason.value})"
    fx.timeline.append(incidents.entry(updated, fx.now, kind, message, alert))
    if raised is not None:
        fx.timeline.append(raised)
    fx.links.append(Link(updated.id, alert.source, alert.fingerprint, rule, reason, fx.now))
    fx.put_incident(updated)
    fx.decide("correlate", rule, reason.value)
    if not opening:
        fx.decide("incidents", updated.rule, incidents.IncidentAction.ATTACHED)
    return updated


def _release_pending(fx: Effects, incident: IncidentState, alert: AlertState, rule: str) -> None:
    current = fx.incident(incident.id) or incident
    was = _Was(alert.incident_ids, alert.also)
    joined = _attach(fx, current, alert, alert.labels, rule, JoinReason.GROUPED, _held(alert), was)
    fx.put_alert(_primary(alert, joined, rule, JoinReason.GROUPED))


def _held(alert: AlertState) -> str:
    return f"{incidents.describe(alert)} (was pending)"


def _priority(
    fx: Effects,
    rule: CorrelateRule | None,
    severity: Severity,
    labels: Mapping[str, str],
    ci: str | None,
) -> int:
    topology = fx.rules.topology
    criticality = topology.cmdb.criticality_of(ci) if topology and ci else None
    impact = rule.impact if rule is not None else None
    return int(fx.rules.priority.priority(severity, labels, criticality, impact))


def _reprioritized(
    fx: Effects, incident: IncidentState, alert: AlertState, labels: Mapping[str, str]
) -> tuple[IncidentState, TimelineEntry | None]:
    """A joining alert can raise the incident's priority (a lower number), never lower it;
    returns the incident and the timeline entry that says so."""
    if incident.alert_count <= 1:
        return incident, None
    # A symptom on a more critical CI (a shop VM behind a failed switch) raises the impact.
    topology = fx.rules.topology
    own = topology.ci_of(labels) if topology is not None else None
    rule = fx.rules.correlate_rule(incident.rule)
    # The incident's own (highest) severity gives the urgency.
    computed = _priority(fx, rule, incident.severity, labels, own or incident.ci)
    if computed >= incident.priority:
        return incident, None
    updated = evolve(incident, priority=computed)
    message = f"priority P{incident.priority} -> P{computed} by {incidents.describe(alert)}"
    return updated, incidents.entry(updated, fx.now, TimelineKind.PRIORITY_CHANGED, message, alert)


def _default_title(labels: Mapping[str, str]) -> str:
    name = labels.get("alertname", "alert")
    where = labels.get("instance") or labels.get("host") or labels.get("job")
    return f"{name} on {where}" if where else name
