"""The writer's notification step: turn the incident changes of one group commit, the due
escalation timers and the missed SLA deadlines into outbox rows, in the same transaction.

Input: the batch's `World` after the rule stages and operator actions ran. Output: the
`Notice`s and `Paging`s to store (`bridge.store.outbox.write`) once the incidents have their
database ids, and what the metrics count. The decisions are `rules.notify`'s and
`rules.sla`'s; this module only loads what they read (targets told, timers) and maps ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store import outbox, repository
from rules import notify, sla
from rules.model import IncidentState, TimelineEntry, TimelineKind, Transition, evolve
from rules.notify import Notice, Paging
from rules.ruleset import RuleSet
from rules.world import World

_JOB_BATCH = 500


@dataclass
class Planned:
    notices: list[Notice] = field(default_factory=list)
    pagings: dict[int, Paging] = field(default_factory=dict)
    # (incident id, target) pairs not to notify: the ITSM ticket a change came from.
    quiet: set[tuple[int, str, Transition]] = field(default_factory=set)
    breaches: Counter[tuple[str, str]] = field(default_factory=Counter)  # (priority, kind)
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, decision)
    queued: list[outbox.Queued] = field(default_factory=list)

    def add(self, plan: notify.Plan) -> None:
        self.notices.extend(plan.notices)
        if plan.paging is not None:
            self.pagings[plan.paging.incident_id] = plan.paging
        self.decisions.update(plan.decisions)


async def plan_changes(
    conn: AsyncConnection,
    world: World,
    rules: RuleSet,
    policy: sla.SlaPolicy,
    now: datetime,
    planned: Planned,
) -> None:
    """Deadlines and notices for every incident the batch changed."""
    changed = []
    for before, after in world.changed_incidents():
        after = _with_deadlines(before, after, policy, now, world)
        if notify.concerns(before, after):
            changed.append((before, after))
    if not changed or not rules.targets:
        return  # nobody to tell: no outbox rows, no timers
    ids = [after.id for _, after in changed]
    told = await outbox.told(conn, ids)
    timers = await outbox.pagings(conn, ids)
    for before, after in changed:
        known = told.get(after.id, set())
        planned.add(notify.on_change(rules, before, after, known, timers.get(after.id), now))


def _with_deadlines(
    before: IncidentState | None,
    after: IncidentState,
    policy: sla.SlaPolicy,
    now: datetime,
    world: World,
) -> IncidentState:
    if before is None or after.reopen_count > before.reopen_count:
        since, fresh = (after.opened_at if before is None else now), True
    elif before.priority != after.priority:
        since, fresh = after.opened_at, False
    else:
        return after
    updated = sla.with_deadlines(after, policy, since, fresh=fresh)
    world.put_incident(updated)
    return updated


async def run_timers(
    conn: AsyncConnection, world: World, rules: RuleSet, now: datetime, planned: Planned
) -> int:
    """Due escalation steps and repeats; returns how many notices they queued."""
    due = await outbox.due_pagings(conn, now, _JOB_BATCH)
    if not due:
        return 0
    await _load(conn, world, [p.incident_id for p in due])
    told = await outbox.told(conn, [p.incident_id for p in due])
    count = 0
    for timer in due:
        incident = world.incident(timer.incident_id)
        if incident is None:
            continue
        plan = notify.on_timer(rules, incident, timer, told.get(incident.id, set()), now)
        planned.add(plan)
        count += len(plan.notices)
        escalated = [n.target for n in plan.notices if n.transition == "escalated"]
        if escalated:
            reason = plan.notices[0].reason
            message = f"escalated to {', '.join(escalated)}: {reason}"
            actor = f"rule:{timer.escalation}"
            world.timeline.append(
                TimelineEntry(incident.id, now, TimelineKind.ESCALATED, actor, message)
            )
    return count


async def check_sla(
    conn: AsyncConnection, world: World, rules: RuleSet, now: datetime, planned: Planned
) -> int:
    """Record the SLA deadlines missed by now; returns how many."""
    ids = await outbox.sla_due(conn, now, _JOB_BATCH)
    if not ids:
        return 0
    await _load(conn, world, ids)
    told = await outbox.told(conn, ids)
    count = 0
    for incident_id in ids:
        incident = world.incident(incident_id)
        if incident is None:
            continue
        for kind in sla.due(incident, now):
            incident, entry = sla.breach(incident, kind, now)
            world.put_incident(incident)
            world.timeline.append(entry)
            planned.breaches[f"P{incident.priority}", kind] += 1
            planned.notices.extend(
                notify.on_breach(rules, incident, kind, told.get(incident_id, ()))
            )
            count += 1
    return count


async def _load(conn: AsyncConnection, world: World, ids: list[int]) -> None:
    missing = [i for i in ids if i not in world.incidents]
    if missing:
        world.load_incidents((await repository.load_incidents(conn, missing)).values())


def stored(planned: Planned, ids: Mapping[int, int]) -> tuple[list[Notice], list[Paging]]:
    """The plan with the placeholders of incidents opened in this batch replaced by their
    database ids, without the notices to the ITSM ticket a change came from."""
    notices = []
    for notice in planned.notices:
        real = evolve(notice, incident_id=ids.get(notice.incident_id, notice.incident_id))
        if (real.incident_id, real.target, real.transition) not in planned.quiet:
            notices.append(real)
    pagings = [
        evolve(timer, incident_id=ids.get(timer.incident_id, timer.incident_id))
        for timer in planned.pagings.values()
    ]
    return notices, pagings
