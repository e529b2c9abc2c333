"""config/nagios/bridge-notify, run as Nagios runs it, against a recording HTTP receiver."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connectors import nagios

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "config" / "nagios" / "bridge-notify"
CFG = ROOT / "config" / "nagios" / "bridge.cfg"
NAGIOS = ROOT / ".." / "shared" / "fixtures" / "captured" / "nagios"
FILES = sorted(path.name for path in NAGIOS.glob("nagios-*.json"))
DB_PROBLEM = "nagios-01-service-problem-e2e-db-01-postgresql-critical.json"
HOST_DOWN = "nagios-12-host-problem-e2e-db-01-down.json"
NOW = datetime(2026, 11, 23, 20, 5, 0, tzinfo=UTC)
PATH = "/api/v1/webhooks/nagios"


@dataclass
class Receiver:
    """Answers each POST with the next of `statuses` (200 once they run out) and records it."""

    url: str
    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    state = Receiver(url=f"http://127.0.0.1:{port}{PATH}")
    server.receiver = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        state: Receiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        state.requests.append((self.path, dict(self.headers.items()), body))
        status = state.statuses.pop(0) if state.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def capture(name: str) -> tuple[dict[str, str], bytes]:
    raw = (NAGIOS / name).read_bytes()
    return json.loads(raw), raw


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ.get("PATH", "")} | (env or {})
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def argument_mode(name: str, url: str, *options: str) -> subprocess.CompletedProcess[str]:
    body, _ = capture(name)
    pairs = [f"{key}={value}" for key, value in body.items() if key != "object_type"]
    return run(*options, body["object_type"], url, *pairs)


def environment_mode(name: str, url: str) -> subprocess.CompletedProcess[str]:
    body, _ = capture(name)
    env = {"NAGIOS_" + key: value for key, value in body.items() if key != "object_type"}
    # Nagios exports contact variables too, and service variables never reach a host command.
    env["NAGIOS__CONTACTWEBHOOK_URL"] = url
    if body["object_type"] == "host":
        env["NAGIOS__SERVICERUNBOOK"] = "https://not.for.hosts.example"
    return run("--env", body["object_type"], url, env=env)


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("mode", ["argument", "environment"])
def test_posts_exactly_the_captured_body(receiver: Receiver, name: str, mode: str) -> None:
    body, raw = capture(name)
    runner = argument_mode if mode == "argument" else environment_mode
    result = runner(name, receiver.url)
    assert (result.returncode, result.stderr) == (0, "")
    [(path, headers, sent)] = receiver.requests
    assert path == PATH
    assert sent == raw  # same keys, same order, all strings, one line, no trailing newline
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "nagios-notify-webhook/1"
    assert "Authorization" not in headers
    assert nagios.parse(json.loads(sent), NOW) == nagios.parse(body, NOW)


def test_missing_macros_are_sent_empty(receiver: Receiver) -> None:
    result = run("host", receiver.url, "HOSTNAME=h1", "HOSTSTATE=DOWN", "NOTIFICATIONTYPE=PROBLEM")
    assert result.returncode == 0
    sent = json.loads(receiver.requests[0][2])
    assert list(sent) == list(capture(HOST_DOWN)[0])[:-1]  # all 49 keys but the custom one
    assert sent["HOSTOUTPUT"] == ""
    [event] = nagios.parse(sent, NOW).events
    assert event.fingerprint == "host:h1"


def test_bearer_token_from_a_file(receiver: Receiver, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    result = argument_mode(HOST_DOWN, receiver.url, "--token-file", str(token_file))
    assert result.returncode == 0
    assert receiver.requests[0][1]["Authorization"] == "Bearer s3cret"


def test_bearer_token_from_the_environment(receiver: Receiver) -> None:
    result = run("service", receiver.url, "HOSTNAME=h1", env={"BRIDGE_TOKEN": "t0ken"})
    assert result.returncode == 0
    assert receiver.requests[0][1]["Authorization"] == "Bearer t0ken"


def test_an_unreadable_token_file_fails_without_sending(receiver: Receiver, tmp_path: Path) -> None:
    result = argument_mode(HOST_DOWN, receiver.url, "--token-file", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "token file" in result.stderr
    assert receiver.requests == []


def test_retries_a_5xx_then_succeeds(receiver: Receiver) -> None:
    receiver.statuses = [503]
    result = argument_mode(DB_PROBLEM, receiver.url)
    assert result.returncode == 0
    assert "HTTP 503; retrying in 1 s" in result.stderr
    assert len(receiver.requests) == 2
    assert receiver.requests[0][2] == receiver.requests[1][2] == capture(DB_PROBLEM)[1]


def test_gives_up_after_three_5xx_answers(receiver: Receiver) -> None:
    receiver.statuses = [500, 502, 503]
    result = argument_mode(DB_PROBLEM, receiver.url)
    assert result.returncode == 1
    assert len(receiver.requests) == 3
    assert result.stderr.splitlines()[-1] == "bridge-notify: the bridge answered HTTP 503"


@pytest.mark.parametrize("status", [400, 401, 422])
def test_does_not_retry_a_4xx(receiver: Receiver, status: int) -> None:
    receiver.statuses = [status]
    result = argument_mode(DB_PROBLEM, receiver.url)
    assert result.returncode == 1
    assert len(receiver.requests) == 1
    assert f"HTTP {status}" in result.stderr


def test_retries_connection_errors() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = argument_mode(DB_PROBLEM, f"http://127.0.0.1:{port}{PATH}")
    assert result.returncode == 1
    assert result.stderr.count("cannot reach the bridge") == 3
    assert result.stderr.count("retrying") == 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["contact", "http://x"], "invalid choice"),
        (["host"], "required"),
        (["host", "http://127.0.0.1:1", "HOSTNAME"], "not KEY=VALUE"),
        (["host", "http://127.0.0.1:1", "=x"], "not KEY=VALUE"),
        (["--env", "host", "http://127.0.0.1:1", "HOSTNAME=x"], "--env takes no"),
        (["host", "ftp://127.0.0.1/x"], "URL must start with http"),
        (["host", "127.0.0.1:9470"], "URL must start with http"),
    ],
)
def test_usage_errors_exit_1(args: list[str], says: str) -> None:
    result = run(*args)
    assert result.returncode == 1
    assert says in result.stderr


def test_the_script_is_an_executable_python3_program() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")


def _readme_keys(column: int) -> list[str]:
    readme = (NAGIOS / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\| (yes|-) \| (yes|-) \|$", readme, re.M)
    return [row[0] for row in rows if row[column] == "yes"]


def _cfg_keys(command: str) -> list[str]:
    text = CFG.read_text()
    block = text[text.index(f"#     command_name    {command}") :]
    block = block[: block.index("# }")]
    return re.findall(r"^#\s+(\w+)='\$\1\$'", block, re.M)


@pytest.mark.parametrize(
    ("command", "column", "capture_name"),
    [("notify-host-bridge", 2, HOST_DOWN), ("notify-service-bridge", 1, DB_PROBLEM)],
)
def test_argument_mode_commands_pass_exactly_the_readme_keys(
    command: str, column: int, capture_name: str
) -> None:
    keys = ["object_type", *_cfg_keys(command)]
    assert len(set(keys)) == len(keys)
    assert sorted(keys) == sorted(_readme_keys(column))
    assert keys == list(capture(capture_name)[0])  # the order bridge-notify sends anyway


def test_environment_mode_commands_are_the_active_ones() -> None:
    active = [line.strip() for line in CFG.read_text().splitlines() if "command_line" in line]
    assert active[:2] == [
        "command_line    /usr/local/bin/bridge-notify --env host '$_CONTACTWEBHOOK_URL$'",
        "command_line    /usr/local/bin/bridge-notify --env service '$_CONTACTWEBHOOK_URL$'",
    ]
