"""Input limits of the webhook routes: items per batch, labels per alert and their length, the
text the database must index or hold in a bounded column, and a rate per source.

Applied after the connector parsed a body: a batch over `max_batch_items` is refused whole
(413: the sender should send less at once); an alert with more than `max_labels` labels or a
label name or value longer than `max_label_length`, a fingerprint longer than
`MAX_FINGERPRINT_BYTES` bytes of UTF-8 (stored as it is in a unique index, which PostgreSQL
caps at about 2,700 bytes a row), an actor longer than `MAX_ACTOR_CHARS` characters (the
timeline's `actor` column), or a NUL character in any text field (PostgreSQL cannot store it)
is refused alone (the batch's other items are kept). Keys derived from label values are
bounded by the rule engine instead (`rules.keys`). A source over its rate (`rate_limit` items
per second, bursts up to twice that) gets 429 with `Retry-After`, which Alertmanager,
Prometheus and the shipped senders honour by retrying; a full bucket admits any one request,
however large, and the requests after it wait until the debt is paid back. Every refusal is
counted (`bridge_requests_rejected_total` for whole requests, `bridge_events_rejected_total`
for items).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors.parsed import Parsed, Reject, RejectReason
from rules.model import Event

# The longest fingerprint kept, in bytes of UTF-8: alerts are unique per source and fingerprint
# (an index), and an inhibitor's primary key holds the fingerprint beside a bounded key
# (`rules.keys.MAX_KEY_BYTES`), the rule name and the source, under PostgreSQL's 2,704 bytes.
# Every shipped connector makes far shorter ones; only a sender's own (the Alertmanager webhook's
# `fingerprint`, a generic mapping's `fingerprint_path`) can be longer.
MAX_FINGERPRINT_BYTES = 1024
# The longest actor (the author of a Nagios or Zabbix acknowledgement or comment): the timeline
# stores it as `<source>:<actor>` in 200 characters, and a source name has up to 64.
MAX_ACTOR_CHARS = 128
# How much of an over-long text a refusal message repeats.
_SHOWN_CHARS = 64


@dataclass(frozen=True, slots=True)
class Limits:
    max_batch_items: int
    max_labels: int
    max_label_length: int


def too_many(parsed: Parsed, limits: Limits) -> bool:
    return max(parsed.items, len(parsed.events) + len(parsed.rejects)) > limits.max_batch_items


def within_label_limits(parsed: Parsed, limits: Limits) -> Parsed:
    """The parse with every event over the limits (labels, fingerprint, actor, NUL) moved to
    the rejects."""
    kept: list[Event] = []
    refused = list(parsed.rejects)
    for event in parsed.events:
        found = _label_problem(event, limits)
        if found is None:
            kept.append(event)
        else:
            part, problem = found
            message = f"{_shown(event.fingerprint)}: {problem}"
            refused.append(Reject(None, part, message, RejectReason.LABEL_LIMIT))
    if len(kept) == len(parsed.events):
        return parsed
    return Parsed(events=kept, rejects=refused, items=parsed.items, truncated=parsed.truncated)


def _label_problem(event: Event, limits: Limits) -> tuple[str, str] | None:
    """The field at fault and what is wrong with it, or None."""
    for part, texts in _texts(event):
        if any("\x00" in text for text in texts if text is not None):
            return part, "contains a NUL character, which the database cannot store"
    size = len(event.fingerprint.encode("utf-8", "surrogatepass"))
    if size > MAX_FINGERPRINT_BYTES:
        return "fingerprint", f"{size} bytes, at most {MAX_FINGERPRINT_BYTES} (UTF-8) allowed"
    if len(event.actor) > MAX_ACTOR_CHARS:
        return "actor", f"{len(event.actor)} characters, at most {MAX_ACTOR_CHARS} allowed"
    if len(event.labels) > limits.max_labels:
        return "labels", f"{len(event.labels)} labels, at most {limits.max_labels} allowed"
    for name, value in event.labels.items():
        if len(name) > limits.max_label_length or len(value) > limits.max_label_length:
            problem = f"label {name[:64]!r} longer than {limits.max_label_length} characters"
            return "labels", problem
    return None


def _texts(event: Event) -> list[tuple[str, list[str | None]]]:
    """Every text of the event, by the field a refusal names (the sender's spelling); the
    source and digest are the connector's own, checked all the same."""
    return [
        ("labels", [*event.labels.keys(), *event.labels.values()]),
        ("annotations", [*event.annotations.keys(), *event.annotations.values()]),
        ("fingerprint", [event.fingerprint]),
        ("generatorURL", [event.generator_url]),
        ("groupKey", [event.group_key]),
        ("receiver", [event.receiver]),
        ("actor", [event.actor]),
        ("message", [event.message]),
        ("source", [event.source, event.digest]),
    ]


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}..."


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """A token bucket per source: `rate` items per second, holding up to `burst` items.

    A request is granted when the bucket holds its items, or, whatever its size, when the
    bucket is full: the bucket then goes into debt (below zero), and later requests wait until
    it is paid back. A batch larger than the burst (a big Alertmanager group) gets through, and
    the source still averages `rate` items per second."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, source: str, items: int) -> float | None:
        """Take `items` tokens; None if granted, else the seconds until they would be (until
        the bucket holds them, or is full again for a request larger than the burst)."""
        if self.rate <= 0 or items <= 0:
            return None
        now = self.clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if items <= bucket.tokens or bucket.tokens >= self.burst:
            bucket.tokens -= items  # below zero after a request larger than the burst: a debt
            return None
        missing = min(items, self.burst) - bucket.tokens
        return max(missing / self.rate, 0.001)


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
