"""Process management for the end-to-end tests: free ports, child processes, polling, HTTP.

Every child process writes stdout and stderr to one log file; `Stack` owns the processes of one
fixture, stops them all on exit (even when start-up fails half way), and hands their logs and
a snapshot of each peer's API to the failure report (see `conftest.py`).

Nothing here sleeps to let time pass: `wait_until` polls a condition until a deadline and fails
with what it waited for, the last value seen, and any process that died meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

LOCALHOST = "127.0.0.1"
_LOG_TAIL_LINES = 150
_ADDRESS_IN_USE = "address already in use"


class HarnessError(AssertionError):
    """A peer could not be started or a condition was not met in time (the test fails)."""


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that was free a moment ago (see `Stack.start`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def require_binary(*names: str, install: str) -> str:
    """The first of `names` found on PATH; fails the test (never skips) when none is there."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    missing = names[0] if len(names) == 1 else f"none of {', '.join(names)}"
    raise HarnessError(
        f"{missing} is not on PATH; the e2e tests drive the real programs: "
        f"install them with `apt-get install {install}`"
    )


# --- HTTP -----------------------------------------------------------------------------------


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of a GET; HTTP error statuses are returned, not raised."""
    request = urllib.request.Request(url, headers={"Accept": "application/json, text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode(errors="replace")


def get_json(url: str, timeout: float = 5.0) -> Any:
    status, body = http_get(url, timeout)
    if status != 200:
        raise HarnessError(f"GET {url} answered {status}: {body[:2000]}")
    return json.loads(body)


def is_up(url: str) -> bool:
    """True when `url` answers 200 (a readiness probe); connection errors count as not yet."""
    try:
        return http_get(url, timeout=2.0)[0] == 200
    except OSError:
        return False


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples called `name` (a full sample name such as `x_total`) in exposition text."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), float(sample.value)))
    return found


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`; 0 when there is none."""
    return sum(
        value
        for sample_labels, value in metric_samples(text, name)
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


# --- waiting --------------------------------------------------------------------------------


class ProcessDied(HarnessError):
    pass


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.2,
    watch: Sequence[Service] = (),
    retry_on: tuple[type[BaseException], ...] = (OSError,),
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Fails after `timeout` seconds with `what`, the last value (or exception in `retry_on`) the
    predicate gave, and fails at once when a process in `watch` exits meanwhile.
    """
    deadline = time.monotonic() + timeout
    last: object = "<never evaluated>"
    while True:
        for service in watch:
            service.check_alive(f"while waiting for {what}")
        try:
            value = predicate()
        except retry_on as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise HarnessError(
                f"timed out after {timeout:.1f}s waiting for {what}; last result: {last!r}"
            )
        time.sleep(interval)


# --- processes ------------------------------------------------------------------------------


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) if kept else "<empty>"


@dataclass
class Service:
    """One running child process, its port and the log file it writes to."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return _log_tail(self.log_path, lines)

    def check_alive(self, context: str) -> None:
        code = self.process.poll()
        if code is not None:
            raise ProcessDied(
                f"{self.name} (pid {self.pid}) exited with {code} {context}; "
                f"command: {shlex.join(self.argv)}\n--- last lines of {self.log_path} ---\n"
                f"{self.log_tail()}"
            )

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to say anything to anyone."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; always reaps the process."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: Mapping[str, str] | None = None  # None: inherit this process's environment


Launch = Callable[[int], Command]
"""Builds the command for a given port (and writes any config file that names the port)."""

Snapshot = Callable[[], str]


@dataclass
class Stack:
    """The child processes of one fixture, stopped in reverse start order on exit."""

    directory: Path
    services: list[Service] = field(default_factory=list)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    closed: bool = False

    def __enter__(self) -> Stack:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        self.closed = True
        errors = []
        for service in reversed(self.services):
            try:
                service.stop()
            except (OSError, subprocess.SubprocessError) as err:
                errors.append(f"{service.name}: {err}")
        if errors:
            raise HarnessError("could not stop: " + "; ".join(errors))

    def start(
        self,
        name: str,
        launch: Launch,
        ready_path: str,
        *,
        timeout: float = 30.0,
        attempts: int = 3,
    ) -> Service:
        """Start `name` on a free port and wait until `ready_path` answers 200.

        A free port can be taken by someone else between `free_port` and the bind; when the
        process then exits saying so, it is started again on another port.
        """
        for attempt in range(1, attempts + 1):
            service = self._spawn(name, launch(port := free_port()), port, attempt)
            ready_url = service.url + ready_path
            try:
                wait_until(
                    lambda: is_up(ready_url),  # noqa: B023 (called before the next iteration)
                    timeout,
                    f"{name} to answer 200 on {ready_url}",
                    watch=[service],
                )
            except ProcessDied:
                if _ADDRESS_IN_USE in service.log_tail().lower() and attempt < attempts:
                    continue
                raise
            # Whatever answered must be our process, not someone else's on a reused port.
            service.check_alive(f"right after {ready_url} answered 200")
            return service
        raise AssertionError("unreachable")

    def start_portless(
        self,
        name: str,
        command: Command,
        ready: Callable[[], object],
        what: str,
        *,
        timeout: float = 30.0,
    ) -> Service:
        """Start `name`, a child that serves no port (its `port` is 0), and wait until
        `ready()` returns something truthy; `what` says what readiness means."""
        service = self._spawn(name, command, 0, 1)
        wait_until(ready, timeout, f"{name} to be ready ({what})", watch=[service])
        service.check_alive(f"right after it was ready ({what})")
        return service

    def _spawn(self, name: str, command: Command, port: int, attempt: int) -> Service:
        suffix = "" if attempt == 1 else f"-{attempt}"
        log_path = self.directory / f"{name}{suffix}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=dict(command.env) if command.env is not None else None,
                # Own session: a Ctrl-C of the test run reaches us, and we stop each child.
                start_new_session=True,
            )
        service = Service(name, command.argv, port, log_path, process)
        self.services.append(service)
        return service

    def report(self) -> Iterator[tuple[str, str]]:
        """Report sections for a failed test: each process's state and log, then snapshots."""
        for service in self.services:
            code = service.process.poll()
            state = "running" if code is None else f"exited with {code}"
            yield (
                f"{service.name} (pid {service.pid}, {state}) log {service.log_path}",
                service.log_tail(),
            )
        for title, snapshot in self.snapshots.items():
            try:
                text = snapshot()
            except (OSError, HarnessError, ValueError) as exc:
                text = f"<unavailable: {type(exc).__name__}: {exc}>"
            yield title, text


def snapshot_of(url: str) -> Snapshot:
    """A report snapshot: the body of GET `url`, pretty-printed when it is JSON."""

    def take() -> str:
        status, body = http_get(url)
        with contextlib.suppress(ValueError):
            body = json.dumps(json.loads(body), indent=2, sort_keys=True)
        return f"GET {url} -> {status}\n{body[:20000]}"

    return take


def clean_environment(overrides: Mapping[str, str], drop_prefix: str) -> dict[str, str]:
    """This process's environment without variables starting with `drop_prefix`, plus
    `overrides`: a developer's own BRIDGE_* settings must not leak into the daemon under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefix)}
    env.update(overrides)
    return env


# --- a switch Prometheus scrapes ------------------------------------------------------------


class SwitchExporter:
    """A metrics endpoint in this process exposing `e2e_switch{scenario, instance} 0|1`.

    Alert rules fire on `e2e_switch{scenario="..."} > 0`, so a test turns an alert on and off
    exactly when it wants to (Prometheus scrapes it every second), instead of racing a window of
    wall-clock time. With `honor_labels: true` the exposed `instance` becomes the alert's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str], int] = {}
        self._scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.exposition().encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="e2e-switch-exporter", daemon=True
        )

    @property
    def target(self) -> str:
        return f"{LOCALHOST}:{self._server.server_address[1]}"

    def __enter__(self) -> SwitchExporter:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def set(self, scenario: str, instances: Sequence[str], value: int) -> None:
        with self._lock:
            for instance in instances:
                self._values[(scenario, instance)] = value

    @property
    def scrapes(self) -> int:
        with self._lock:
            return self._scrapes

    def exposition(self) -> str:
        with self._lock:
            self._scrapes += 1
            lines = ["# HELP e2e_switch Alert switch of a scenario.", "# TYPE e2e_switch gauge"]
            lines += [
                f'e2e_switch{{scenario="{scenario}",instance="{instance}"}} {value}'
                for (scenario, instance), value in sorted(self._values.items())
            ]
        return "\n".join(lines) + "\n"


# --- the peers' HTTP APIs -------------------------------------------------------------------

Json = dict[str, Any]


@dataclass(frozen=True)
class BridgeAPI:
    """The read side of the bridge's API, as documented (nothing beyond the contract)."""

    url: str

    def incidents(self, status: str | None = None) -> list[Json]:
        query = f"?status={status}" if status else ""
        found: list[Json] = get_json(f"{self.url}/api/v1/incidents{query}")["incidents"]
        return found

    def incident(self, incident_id: int) -> Json:
        found: Json = get_json(f"{self.url}/api/v1/incidents/{incident_id}")
        return found

    def alerts(self, status: str | None = None) -> list[Json]:
        query = f"?status={status}" if status else ""
        found: list[Json] = get_json(f"{self.url}/api/v1/alerts{query}")["alerts"]
        return found

    def incidents_of(self, alertname: str) -> list[Json]:
        """Every incident (with its alerts and timeline) holding an alert called `alertname`."""
        details = (self.incident(summary["id"]) for summary in self.incidents())
        return [
            detail
            for detail in details
            if any(alert["labels"].get("alertname") == alertname for alert in detail["alerts"])
        ]

    def incident_of(
        self, alertname: str, where: Callable[[Json], bool] = lambda incident: True
    ) -> Json | None:
        """The one incident holding `alertname` alerts if `where` holds for it, else None.

        Fails when the alerts are spread over several incidents."""
        found = self.incidents_of(alertname)
        if len(found) > 1:
            raise HarnessError(f"{alertname} alerts are in {len(found)} incidents: {found}")
        return found[0] if found and where(found[0]) else None

    def metrics(self) -> str:
        status, body = http_get(f"{self.url}/metrics")
        if status != 200:
            raise HarnessError(f"GET {self.url}/metrics answered {status}: {body[:2000]}")
        return body


@dataclass(frozen=True)
class AlertmanagerAPI:
    url: str

    def alerts(self, alertname: str) -> list[Json]:
        """Active alerts of `alertname` (`GET /api/v2/alerts`), each with its fingerprint."""
        query = urllib.parse.quote(f'alertname="{alertname}"')
        found: list[Json] = get_json(f"{self.url}/api/v2/alerts?filter={query}")
        return found

    def groups(self, alertname: str) -> list[Json]:
        """Alert groups (`GET /api/v2/alerts/groups`) holding alerts of `alertname`."""
        query = urllib.parse.quote(f'alertname="{alertname}"')
        found: list[Json] = get_json(f"{self.url}/api/v2/alerts/groups?filter={query}")
        return found
