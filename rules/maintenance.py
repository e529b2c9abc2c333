"""Stage `maintenance`: alerts inside a maintenance window open no incident.

Input: a firing alert's labels, the windows (from the rule files and the API) and `now`.
Output: the window that covers the alert, or None; a sender's own downtime (a Nagios
DOWNTIMESTART sets `AlertState.maintenance`) counts as a window named after the sender.
The correlate stage holds such an alert (`Hold.MAINTENANCE`, `held_by` names the window); the
`recheck` stage releases it into an incident if it still fires when the window ends. Resolves
always pass: an alert that resolves during a window resolves as usual.

Rule section: `maintenance` (see `rules.schedule` for one-off, weekly and cron windows);
windows created through `/api/v1/maintenance` have the same shape. Metric:
`bridge_rule_decisions_total{stage="maintenance",decision="suppressed"}` per window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from rules.model import AlertState
from rules.ruleset import MaintenanceWindow, all_match


def covering(
    windows: Iterable[MaintenanceWindow], labels: Mapping[str, str], now: datetime
) -> MaintenanceWindow | None:
    for window in windows:
        if window.schedule.window_at(now) is not None and all_match(window.matchers, labels):
            return window
    return None


def maintenance_hold(
    windows: Iterable[MaintenanceWindow],
    alert: AlertState,
    labels: Mapping[str, str],
    now: datetime,
) -> str | None:
    """What keeps the alert in maintenance (`held_by`), or None."""
    if alert.maintenance:
        return f"downtime:{alert.source}"
    window = covering(windows, labels, now)
    return window.label if window is not None else None
