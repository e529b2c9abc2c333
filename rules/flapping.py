"""Flap detection, the Nagios way, for alerts from every source.

Input: whether the alert was flapping, its recorded state history and the `FlappingPolicy`.
Output: whether it flaps now and a `FlapChange` naming the transition (the value doubles as a
metric label). The history is a compact string of `F` (firing) and `R` (resolved), oldest
first, at most `history` long, so the shell can keep it in a text column of the alert row.

Rule section: `flapping`, one mapping (`flapping: {history: 21, low_threshold: 20,
high_threshold: 30, settle: 30m}`); every key is optional and the section may be left out.

Algorithm (Nagios Core 4, `base/flapping.c`): over the last `history` states there are
`history - 1` possible changes; a change weighs from 0.75 (the oldest possible change) rising
linearly to 1.25 (the newest), and the percent state change is the sum of the weights of the
observed changes / (`history` - 1) * 100, so a steady history is 0% and one that changes on
every observation is 100%. Flapping starts when that percent is at or above `high_threshold`
and stops when it is at or below `low_threshold`; in between the previous state stands
(hysteresis). A history shorter than `history` is padded at its old end with its oldest state,
as Nagios fills a new object's history with its first state.

Defaults: `history` 21 states and thresholds 20% / 30% are Nagios Core's compiled-in service
defaults (`DEFAULT_LOW_SERVICE_FLAP_THRESHOLD`, `DEFAULT_HIGH_SERVICE_FLAP_THRESHOLD` in
`include/nagios.h`, `MAX_STATE_HISTORY_ENTRIES`); `settle` 30m is ours. Nagios keeps checking
a stable service, which dilutes its history; push senders send nothing while a check stays OK,
so a flapping alert whose state has not changed for `settle` counts as stable (`settled`) and
continues from `steady_history`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from rules.duration import parse_duration
from rules.model import AlertState, AlertStatus, evolve

FIRING = "F"
RESOLVED = "R"

DEFAULT_HISTORY = 21
DEFAULT_LOW_THRESHOLD = 20.0
DEFAULT_HIGH_THRESHOLD = 30.0
DEFAULT_SETTLE = timedelta(minutes=30)

# Nagios' weight curve: the newest possible change counts 1.25, the oldest 0.75.
_OLDEST_WEIGHT = 0.75
_NEWEST_WEIGHT = 1.25


@dataclass(frozen=True, slots=True)
class FlappingPolicy:
    history: int = DEFAULT_HISTORY
    low: float = DEFAULT_LOW_THRESHOLD
    high: float = DEFAULT_HIGH_THRESHOLD
    settle: timedelta = DEFAULT_SETTLE
    enabled: bool = True


class FlapChange(enum.StrEnum):
    STARTED = "started"
    STOPPED = "stopped"
    NONE = "none"


def record(history: str, firing: bool, size: int) -> str:
    """`history` with one observed state appended, keeping the newest `size` states."""
    if size < 1:
        raise ValueError(f"a flapping history holds at least one state, not {size}")
    return (_checked(history) + (FIRING if firing else RESOLVED))[-size:]


def percent_state_change(history: str, size: int | None = None) -> float:
    """Nagios' weighted percent state change of `history` over a window of `size` states.

    `size` defaults to the length of `history`; a longer history is cut to its newest `size`
    states, a shorter one is padded at its old end with its oldest state (no change there).
    """
    states = _checked(history)
    window = len(states) if size is None else size
    states = states[-window:] if window > 0 else ""
    # The observed changes sit at the newest end of the window, after the padding.
    offset = window - len(states)
    weighted = sum(
        _weight(offset + index, window)
        for index in range(1, len(states))
        if states[index] != states[index - 1]
    )
    return weighted * 100.0 / (window - 1) if window > 1 else 0.0


def assess(was_flapping: bool, history: str, policy: FlappingPolicy) -> tuple[bool, FlapChange]:
    """Whether the alert flaps after `history` was recorded, and the transition that makes."""
    if not policy.enabled:
        return False, FlapChange.STOPPED if was_flapping else FlapChange.NONE
    percent = percent_state_change(history, policy.history)
    if percent >= policy.high:
        flapping = True
    elif percent <= policy.low:
        flapping = False
    else:
        flapping = was_flapping
    if flapping == was_flapping:
        return flapping, FlapChange.NONE
    return flapping, FlapChange.STARTED if flapping else FlapChange.STOPPED


def settled(last_change: datetime, now: datetime, policy: FlappingPolicy) -> bool:
    """The alert has stayed in one state for `settle` since its last change: treat it as
    stable even though no new states were recorded (push senders are silent while OK)."""
    return now - last_change >= policy.settle


def steady_history(history: str, size: int) -> str:
    """The history a settled alert continues from: its current state, `size` times over, as
    Nagios resets an object's history when flap detection is (re)enabled for it."""
    states = _checked(history)
    return states[-1] * size if states else ""


def _weight(position: int, window: int) -> float:
    """Weight of the change into the state at `position` (1 .. window-1) of the window."""
    if window <= 2:
        return 1.0
    step = (_NEWEST_WEIGHT - _OLDEST_WEIGHT) / (window - 2)
    return _OLDEST_WEIGHT + (position - 1) * step


def _checked(history: str) -> str:
    if not set(history) <= {FIRING, RESOLVED}:
        raise ValueError(f"a flapping history holds only 'F' and 'R', not {history!r}")
    return history


def _duration(value: object) -> timedelta:
    try:
        duration = parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None
    if duration <= timedelta(0):
        raise PydanticCustomError("settle_zero", "settle must be longer than zero")
    return duration


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Percent = Annotated[float, Field(strict=True, ge=0, le=100)]


class FlappingSpec(BaseModel):
    """The `flapping` section: one mapping, every key optional (Nagios defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history: int = Field(default=DEFAULT_HISTORY, strict=True, ge=3, le=100)
    low_threshold: Percent = DEFAULT_LOW_THRESHOLD
    # Validated even when left out, so a raised low_threshold is checked against the default.
    high_threshold: Percent = Field(default=DEFAULT_HIGH_THRESHOLD, validate_default=True)
    settle: Duration = DEFAULT_SETTLE
    enabled: bool = Field(default=True, strict=True)

    @field_validator("high_threshold")
    @classmethod
    def _above_low(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("low_threshold")
        if low is not None and value <= low:
            raise PydanticCustomError(
                "flapping_thresholds",
                "high_threshold ({high}) must be above low_threshold ({low})",
                {"high": value, "low": low},
            )
        return value


def compile_flapping(spec: FlappingSpec | None) -> FlappingPolicy:
    if spec is None:
        return FlappingPolicy()
    return FlappingPolicy(
        history=spec.history,
        low=spec.low_threshold,
        high=spec.high_threshold,
        settle=spec.settle,
        enabled=spec.enabled,
    )


def observe(
    policy: FlappingPolicy, prior: AlertState | None, alert: AlertState, now: datetime
) -> tuple[AlertState, FlapChange]:
    """The alert after one observed state (a new, refired or resolved outcome of dedup):
    its history recorded, `changed_at` moved, and whether it flaps now."""
    firing = alert.status is AlertStatus.FIRING
    before = prior.history if prior is not None else ""
    if (
        prior is not None
        and prior.changed_at is not None
        and settled(prior.changed_at, now, policy)
    ):
        before = steady_history(before, policy.history)
    history = record(before, firing, policy.history)
    changed = prior is None or prior.status is not alert.status
    changed_at = now if changed or prior is None else prior.changed_at
    was = prior.flapping if prior is not None else False
    flapping, change = assess(was, history, policy) if policy.enabled else (was, FlapChange.NONE)
    if alert.flap_reported:  # the sender says it flaps until it says it stopped
        flapping, change = True, FlapChange.STARTED if not was else FlapChange.NONE
    return evolve(alert, history=history, changed_at=changed_at, flapping=flapping), change


def settle(policy: FlappingPolicy, alert: AlertState, now: datetime) -> AlertState | None:
    """A flapping alert whose state has not changed for `settle` stops flapping; None if
    it is not flapping or not settled yet."""
    if not alert.flapping or alert.flap_reported or alert.changed_at is None:
        return None
    if not settled(alert.changed_at, now, policy):
        return None
    return evolve(alert, flapping=False, history=steady_history(alert.history, policy.history))
