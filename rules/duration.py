"""Durations as operators write them: Go/Prometheus style (`90s`, `5m`, `1h30m`, `500ms`).

Used by the settings and by every rule section that takes a window; a bare number is seconds.
"""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    try:
        return _parse(value)
    except OverflowError:  # past timedelta's 999999999 days
        raise ValueError("duration out of range: at most 999999999 days") from None


def _parse(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string such as '5m'")
    if isinstance(value, int | float):
        return _non_negative(timedelta(seconds=value))
    if not isinstance(value, str):
        raise ValueError("a duration must be a number of seconds or a string such as '5m'")
    text = value.strip()
    try:
        return _non_negative(timedelta(seconds=float(text)))
    except ValueError:
        pass
    position, seconds = 0, 0.0
    for part in _PART.finditer(text):
        if part.start() != position:
            break
        seconds += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    if position != len(text) or not text:
        raise ValueError(f"invalid duration {value!r}: use e.g. '30s', '5m', '1h30m'")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _non_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("a duration cannot be negative")
    return value
