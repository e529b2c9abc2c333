"""What time alone changes: expired level-triggered alerts, held or flapping alerts to look at
again, heartbeats that are late, and missed heartbeats whose rule is gone.

Input: the context (its `now`) and a world. Output: the evaluations, applied to the world. The
offline tools call `tick` before every step of a timeline, over everything they hold; the
daemon's scheduled jobs ask the store for the same candidates and run the same functions
(`rules.dedup.expiry_event`, `rules.recheck.recheck`, `due_heartbeats`, `gone_heartbeats`)
through its writer.
"""

from __future__ import annotations

from rules.dedup import ended, expiry_event
from rules.effects import Context, Evaluation, apply
from rules.evaluate import run
from rules.heartbeats import SOURCE, missed, missed_event
from rules.model import AlertStatus, Event
from rules.recheck import needs_recheck, recheck
from rules.world import World


def due_heartbeats(ctx: Context, world: World) -> list[Event]:
    """A missed-heartbeat event for every armed heartbeat that is late and not yet firing."""
    due: list[Event] = []
    for rule in ctx.rules.heartbeats:
        last = world.heartbeats.get(rule.name)
        if last is None or not missed(rule, last, ctx.now):
            continue  # not armed (no event seen yet), or on time
        stored = world.alert(SOURCE, rule.name)
        if stored is None or stored.status is not AlertStatus.FIRING:
            due.append(missed_event(rule, last, ctx.now))
    return due


def gone_heartbeats(ctx: Context, world: World) -> list[Event]:
    """The resolve of every missed-heartbeat alert of `world` whose heartbeat rule is gone (a
    reload removed or renamed it): no beat and no check would ever end it."""
    names = {rule.name for rule in ctx.rules.heartbeats}
    return [
        ended(alert, ctx.now, "heartbeat-removed")
        for key, alert in sorted(world.alerts.items())
        if key[0] == SOURCE and alert.status is AlertStatus.FIRING and key[1] not in names
    ]


def tick(ctx: Context, world: World) -> list[Evaluation]:
    done: list[Evaluation] = []
    for alert in sorted(world.alerts.values(), key=lambda a: (a.source, a.fingerprint)):
        expired = alert.expires_at is not None and alert.expires_at <= ctx.now
        if alert.status is AlertStatus.FIRING and expired:
            done.extend(run(ctx, world, expiry_event(alert)))
    for key in sorted(world.alerts):
        # Read again: an earlier recheck may have changed it (a group that reached
        # `min_alerts` takes its other pending alerts along).
        alert = world.alerts[key]
        if needs_recheck(alert):
            evaluation = recheck(ctx, world, alert)
            if evaluation is not None:
                apply(world, evaluation)
                done.append(evaluation)
    for event in [*due_heartbeats(ctx, world), *gone_heartbeats(ctx, world)]:
        done.extend(run(ctx, world, event))
    return done
