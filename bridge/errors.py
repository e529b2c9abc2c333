"""The shell's error tree. Business outcomes are values (decisions), not exceptions."""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """Settings or rule files are invalid; `errors` holds `file:line: message` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class StoreUnavailable(BridgeError):
    """The database cannot be reached or refused the write; a retry may succeed (503)."""


class StoreRefused(BridgeError):
    """The database refused a write for a reason a retry will not change: a bug (500)."""


class NotFound(BridgeError):
    """The addressed record does not exist (404)."""


class Conflict(BridgeError):
    """The action does not apply to the record's current state (409)."""
