"""`bridge rules test`: YAML timelines run against the rules offline, with expected outcomes.

A test file (docs/rules-testing.md) has a start time, steps at offsets that send inline alerts
or captured payloads or create maintenance windows, and expectations after any step and at the
end. Each file runs on one `bridge.timeline.Timeline`: before a step, time advances to it
(expiry, rechecks, missed heartbeats), then its windows are created and its events evaluated in
order. No database, no network, no clock: a file gives the same result everywhere.

`spec` is the format, `runner` runs files, `diff` compares what a step expects with the world,
`outbox` keeps the notifications the daemon would queue (when the rules have targets).
"""

from bridge.ruletest.runner import FAILED, INVALID, OK, Runner

__all__ = ["FAILED", "INVALID", "OK", "Runner"]
