"""Input limits of the webhook routes: items per batch, labels per alert and their length, and a
rate per source.

Applied after the connector parsed a body: a batch over `max_batch_items` is refused whole
(413: the sender should send less at once); an alert with more than `max_labels` labels or a
label name or value longer than `max_label_length` is refused alone (the batch's other items
are kept); a source over its rate (`rate_limit` items per second, bursts up to twice that) gets
429 with `Retry-After`, which Alertmanager, Prometheus and the shipped senders honour by
retrying. Every refusal is counted (`bridge_requests_rejected_total` for whole requests,
`bridge_events_rejected_total` for items).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors.parsed import Parsed, Reject, RejectReason
from rules.model import Event


@dataclass(frozen=True, slots=True)
class Limits:
    max_batch_items: int
    max_labels: int
    max_label_length: int


def too_many(parsed: Parsed, limits: Limits) -> bool:
    return max(parsed.items, len(parsed.events) + len(parsed.rejects)) > limits.max_batch_items


def within_label_limits(parsed: Parsed, limits: Limits) -> Parsed:
    """The parse with every event over the label limits moved to the rejects."""
    kept: list[Event] = []
    refused = list(parsed.rejects)
    for event in parsed.events:
        found = _label_problem(event, limits)
        if found is None:
            kept.append(event)
        else:
            part, problem = found
            message = f"{event.fingerprint}: {problem}"
            refused.append(Reject(None, part, message, RejectReason.LABEL_LIMIT))
    if len(kept) == len(parsed.events):
        return parsed
    return Parsed(events=kept, rejects=refused, items=parsed.items, truncated=parsed.truncated)


def _label_problem(event: Event, limits: Limits) -> tuple[str, str] | None:
    """The field at fault and what is wrong with it, or None."""
    for part, texts in _texts(event):
        if any("\x00" in text for text in texts):
            return part, "contains a NUL character, which the database cannot store"
    if len(event.labels) > limits.max_labels:
        return "labels", f"{len(event.labels)} labels, at most {limits.max_labels} allowed"
    for name, value in event.labels.items():
        if len(name) > limits.max_label_length or len(value) > limits.max_label_length:
            problem = f"label {name[:64]!r} longer than {limits.max_label_length} characters"
            return "labels", problem
    return None


def _texts(event: Event) -> list[tuple[str, list[str]]]:
    return [
        ("labels", [*event.labels.keys(), *event.labels.values()]),
        ("annotations", [*event.annotations.keys(), *event.annotations.values()]),
        ("fingerprint", [event.fingerprint]),
        ("generatorURL", [event.generator_url]),
        ("message", [event.actor, event.message]),
    ]


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """A token bucket per source: `rate` items per second, holding up to `burst` items."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, source: str, items: int) -> float | None:
        """Take `items` tokens; None if granted, else the seconds until they would be."""
        if self.rate <= 0:
            return None
        now = self.clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if items <= bucket.tokens:
            bucket.tokens -= items
            return None
        missing = min(items, self.burst) - bucket.tokens
        return max(missing / self.rate, 0.001)


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
