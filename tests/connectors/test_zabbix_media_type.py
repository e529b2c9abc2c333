"""The shipped Zabbix media type: its parameters match the captures, and its script, run in
node with a small stand-in for Zabbix's `HttpRequest` and `Zabbix` objects, posts bodies that
`connectors.zabbix` parses and throws on a non-2xx answer so that Zabbix retries."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors import zabbix

ROOT = Path(__file__).resolve().parents[2]
MEDIA_TYPE = ROOT / "config" / "zabbix" / "media_type_bridge.yaml"
ZABBIX = ROOT / ".." / "shared" / "fixtures" / "captured" / "zabbix"
WEBHOOK_FILES = sorted(path.name for path in ZABBIX.glob("webhook-*.json"))
NOW = datetime(2026, 11, 23, 20, 0, 0, tzinfo=UTC)
TRANSPORT = {"url", "auth_token", "http_proxy"}
ADDED_BY_SCRIPT = {"payload_format", "event_tags_parsed", "event_recovery_tags_parsed"}

# Zabbix runs the script as a function body with the parameters' JSON in `value`. `post`
# must be synchronous, as it is in Zabbix: a child node process makes the request.
RUNNER = r"""
const fs = require('fs');
const { spawnSync } = require('child_process');
const [scriptPath, valuePath] = process.argv.slice(2);
const FETCH = `
let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', async () => {
  const request = JSON.parse(input);
  const headers = {};
  for (const header of request.headers) {
    const colon = header.indexOf(':');
    headers[header.slice(0, colon).trim()] = header.slice(colon + 1).trim();
  }
  try {
    const answer = await fetch(request.url, {method: 'POST', headers, body: request.data});
    process.stdout.write(JSON.stringify({status: answer.status, body: await answer.text()}));
  } catch (error) {
    process.stderr.write(String(error.cause || error));
    process.exit(1);
  }
});`;
const logs = [];
global.Zabbix = { log: (level, message) => logs.push([level, String(message)]) };
global.HttpRequest = function () { this.headers = []; this.status = 0; };
HttpRequest.prototype.addHeader = function (header) { this.headers.push(header); };
HttpRequest.prototype.setProxy = function (proxy) { this.proxy = proxy; };
HttpRequest.prototype.getStatus = function () { return this.status; };
HttpRequest.prototype.post = function (url, data) {
  const child = spawnSync(process.execPath, ['-e', FETCH], {
    input: JSON.stringify({url, data, headers: this.headers}), encoding: 'utf8', timeout: 20000,
  });
  if (child.status !== 0) { throw new Error('cannot get URL: ' + child.stderr); }
  const answer = JSON.parse(child.stdout);
  this.status = answer.status;
  return answer.body;
};
const script = new Function('value', fs.readFileSync(scriptPath, 'utf8'));
let outcome;
try {
  outcome = {returned: script(fs.readFileSync(valuePath, 'utf8')), logs};
} catch (error) {
  outcome = {thrown: String(error), logs};
}
process.stdout.write(JSON.stringify(outcome));
"""


def media_type() -> dict[str, Any]:
    export = yaml.safe_load(MEDIA_TYPE.read_text(encoding="utf-8"))
    assert export["zabbix_export"]["version"] == "6.0"
    [found] = export["zabbix_export"]["media_types"]
    assert isinstance(found, dict)
    return found


def parameters() -> dict[str, str]:
    return {param["name"]: param["value"] for param in media_type()["parameters"]}


def load(name: str) -> Any:
    return json.loads((ZABBIX / name).read_text(encoding="utf-8"))


def readme_macros() -> dict[str, str]:
    """The capture README's table: body key -> the Zabbix macro that filled it."""
    text = (ZABBIX / "README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\| `([a-z_]+)` \| `(\{[^`]+\})` \|", text, re.MULTILINE))


def test_the_export_is_a_zabbix_6_0_webhook() -> None:
    found = media_type()
    assert found["type"] == "WEBHOOK"
    assert {template["operation_mode"] for template in found["message_templates"]} == {
        "PROBLEM",
        "RECOVERY",
        "UPDATE",
    }
    assert int(found["attempts"]) > 1  # retries are what make a failed POST good again
    assert "throw" in found["script"]


@pytest.mark.parametrize("name", WEBHOOK_FILES)
def test_every_capture_key_is_a_parameter(name: str) -> None:
    params = parameters()
    assert set(load(name)) - ADDED_BY_SCRIPT == set(params) - TRANSPORT


def test_each_parameter_carries_the_macro_of_the_captures() -> None:
    params = parameters()
    assert {key: params[key] for key in params if key not in TRANSPORT} == readme_macros()
    assert params["url"] == "{ALERT.SENDTO}"
    assert params["auth_token"] == params["http_proxy"] == ""


@dataclass
class Receiver:
    """A loopback HTTP server that records each POST and answers by path (/status/<code>)."""

    url: str
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    posts: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append((self.path, dict(self.headers.items()), body))
            status = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 200
            answer = json.dumps({"ok": status < 300, "status": status}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", posts)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def refusing_url() -> Iterator[str]:
    """A loopback URL on which nothing listens: the socket is bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/zabbix"


def run_script(tmp_path: Path, params: dict[str, str]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the media type's JavaScript cannot be tested")
    (tmp_path / "runner.js").write_text(RUNNER, encoding="utf-8")
    (tmp_path / "script.js").write_text(media_type()["script"], encoding="utf-8")
    (tmp_path / "value.json").write_text(json.dumps(params), encoding="utf-8")
    done = subprocess.run(
        [node, "runner.js", "script.js", "value.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    outcome: dict[str, Any] = json.loads(done.stdout)
    return outcome


def resolved(capture: dict[str, Any], url: str, token: str = "") -> dict[str, str]:
    """The parameters as Zabbix would hand them over for the message `capture` records."""
    values = {name: capture.get(name, "") for name in parameters()}
    return {**values, "url": url, "auth_token": token, "http_proxy": ""}


@pytest.mark.parametrize("name", WEBHOOK_FILES)
def test_the_script_posts_what_zabbix_posted(name: str, receiver: Receiver, tmp_path: Path) -> None:
    capture = load(name)
    outcome = run_script(tmp_path, resolved(capture, receiver.url + "/zabbix", token="T"))
    assert outcome == {"returned": "OK", "logs": outcome["logs"]}
    [(path, headers, body)] = receiver.posts
    assert path == "/zabbix"
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer T"
    posted = json.loads(body.decode("utf-8"))
    assert posted == capture
    assert next(iter(posted)) == "payload_format"
    assert zabbix.parse(posted, NOW).events == zabbix.parse(capture, NOW).events


def test_no_token_no_authorization_header(receiver: Receiver, tmp_path: Path) -> None:
    capture = load("webhook-problem-sev1-information.json")
    assert run_script(tmp_path, resolved(capture, receiver.url))["returned"] == "OK"
    [(_, headers, body)] = receiver.posts
    assert "Authorization" not in headers
    assert "déploiement — ✓ 日本".encode() in body  # raw UTF-8, as Zabbix sends it


@pytest.mark.parametrize("status", [500, 503, 404, 301])
def test_a_non_2xx_answer_makes_the_script_throw(
    status: int, receiver: Receiver, tmp_path: Path
) -> None:
    capture = load("webhook-problem-sev2-warning.json")
    outcome = run_script(tmp_path, resolved(capture, f"{receiver.url}/status/{status}"))
    assert "returned" not in outcome
    assert outcome["thrown"].startswith(f"Bridge webhook delivery failed: HTTP {status}: ")
    assert f'"status": {status}' in outcome["thrown"]
    assert len(receiver.posts) == 1


def test_a_refused_connection_makes_the_script_throw(tmp_path: Path) -> None:
    capture = load("webhook-problem-sev2-warning.json")
    with refusing_url() as url:
        outcome = run_script(tmp_path, resolved(capture, url))
    assert outcome["thrown"].startswith("Bridge webhook delivery failed: Error: cannot get URL")


@pytest.mark.parametrize("url", ["", "{ALERT.SENDTO}", "incident-bridge", "ftp://host/x"])
def test_a_url_that_is_not_http_makes_the_script_throw(url: str, tmp_path: Path) -> None:
    outcome = run_script(tmp_path, resolved(load("webhook-problem-sev2-warning.json"), url))
    assert outcome["thrown"] == (
        'Bridge webhook delivery failed: parameter "url" must be an http(s) URL'
    )
