"""The REST conversation the ticket channels (`servicenow`, `jira`) have with their API: the
checks on a target's base URL and credentials, one JSON request signed with them, and the
outcome a reply means with the API's own error message as the reason.

What differs between the APIs comes in as arguments: the problem texts of a target's options,
and the function that reads the API's error body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr

from bridge.notify.base import Delivered, Rejected, Retry
from bridge.notify.http import Reply, classify, request, sign_in_problem

EXCERPT = 300  # characters of an answer or error message quoted in a reason

ErrorMessage = Callable[[object], str]  # an API's error body -> its message, "" if none


def base_url(problem: str) -> Callable[[str], str]:
    """A validator for a target's base URL (http or https, a host, no query), without the
    trailing slash; `problem` is the error it raises."""

    def validate(value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
            raise ValueError(problem)
        return value

    return validate


def check_sign_in(
    user: str,
    password: SecretStr | None,
    token: SecretStr | None,
    problems: Mapping[str, str],
) -> None:
    """Raise ValueError unless exactly one way to sign in is given; `problems` has the text
    for each of `bridge.notify.http.sign_in_problem`'s answers, in the target's field names."""
    problem = sign_in_problem(user, password, token)
    if problem is not None:
        raise ValueError(problems[problem])


@dataclass(frozen=True, slots=True)
class Api:
    """A ticket system's REST API as one target reaches it: where, and signed in as whom."""

    session: aiohttp.ClientSession
    base_url: str
    authorization: str  # the `Authorization` header

    async def exchange(
        self,
        method: str,
        path: str,
        body: object,
        timeout: float,  # noqa: ASYNC109 - aiohttp's own per-request ClientTimeout
        error_message: ErrorMessage,
    ) -> Reply | Retry | Rejected:
        """One request (JSON `body` unless None); the reply when it is a 2xx, else the failure
        (see `failure`)."""
        headers = {"Accept": "application/json", "Authorization": self.authorization}
        url = self.base_url + path
        reply = await request(
            self.session, method, url, body=body, headers=headers, timeout=timeout
        )
        if isinstance(reply, Retry):
            return reply
        return failure(reply, error_message) or reply


def failure(reply: Reply, error_message: ErrorMessage) -> Retry | Rejected | None:
    """None for a 2xx; otherwise what `classify` decides, with the API's own error message as
    the reason when the body has one."""
    outcome = classify(reply)
    if isinstance(outcome, Delivered):
        return None
    message = error_message(reply.json())
    if not message:
        return outcome
    reason = f"HTTP {reply.status}: {message}"
    return Retry(reason, outcome.after) if isinstance(outcome, Retry) else Rejected(reason)
