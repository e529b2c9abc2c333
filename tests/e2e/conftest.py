"""Fixtures that start the real peers: `bridge run`, Prometheus and Alertmanager.

Everything listens on 127.0.0.1 on ephemeral ports, keeps its state under the test's tmp dir
and is stopped in teardown. When a test fails, the log of every process it used and a snapshot
of each peer's API are added to the report.

`BRIDGE_E2E_COMMAND` (shell words) replaces the daemon's command line, e.g. to test an
installed wheel or a container; by default it is `<this python> -m bridge run`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.harness import (
    LOCALHOST,
    BridgeAPI,
    Command,
    HarnessError,
    Service,
    Stack,
    SwitchExporter,
    clean_environment,
    require_binary,
    snapshot_of,
)

REPO = Path(__file__).resolve().parents[2]
ALERTMANAGER_SNIPPET = REPO / "config" / "alertmanager" / "bridge-receiver.yml"
PROMETHEUS_SNIPPET = REPO / "config" / "prometheus" / "alerting.yml"
SNIPPET_ADDRESS = "127.0.0.1:9470"  # the bridge's default address, as the snippets spell it
INSTALL = "prometheus prometheus-alertmanager"

_STACKS = pytest.StashKey[list[Stack]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STACKS] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    stacks = item.config.stash[_STACKS]
    if report.failed:
        for stack in stacks:
            report.sections.extend(stack.report())
    if report.when == "teardown":
        stacks[:] = [stack for stack in stacks if not stack.closed]
    return report


# --- peers ----------------------------------------------------------------------------------


def from_snippet(path: Path, bridge: Service) -> dict[str, Any]:
    """A shipped snippet with the bridge's default address replaced by the test bridge's."""
    text = path.read_text()
    if SNIPPET_ADDRESS not in text:
        raise HarnessError(f"{path} no longer names the bridge at {SNIPPET_ADDRESS}")
    loaded: dict[str, Any] = yaml.safe_load(
        text.replace(SNIPPET_ADDRESS, f"{LOCALHOST}:{bridge.port}")
    )
    return loaded


E2E_RULES = {
    "groups": [
        {
            "name": "e2e",
            "interval": "1s",
            "rules": [
                {
                    "alert": "E2EHostDown",
                    "expr": 'e2e_switch{scenario="hostdown"} > 0',
                    "labels": {"severity": "critical"},
                    "annotations": {
                        "summary": "Host {{ $labels.instance }} is down",
                        "description": "e2e: the test turned the hostdown switch on.",
                    },
                },
                {
                    "alert": "DiskFull",
                    "expr": 'e2e_switch{scenario="diskfull"} > 0',
                    "labels": {"severity": "warning"},
                    "annotations": {
                        "summary": "Disk almost full",
                        "description": "e2e: {{ $labels.instance }} has no space left.",
                    },
                },
            ],
        }
    ]
}


# The bridge's incident rules for these tests (the shipped example rules are free to change):
# Alertmanager items grouped by their Alertmanager group, everything else per alert and instance.
BRIDGE_RULES = {
    "correlate": [
        {
            "name": "e2e-alertmanager-group",
            "match": {"__source__": "alertmanager"},
            "group_by": ["__group_key__"],
            "title": "{{ annotations.summary }}",
        },
        {
            "name": "e2e-per-alert",
            "group_by": ["alertname", "instance"],
            "title": "{{ annotations.summary }}",
        },
    ]
}


@dataclass
class Peers:
    """Starts the peers of one test (or module) into one `Stack`."""

    stack: Stack
    run_id: str

    def start_bridge(self, **settings: str) -> Service:
        """`bridge run` with its own data dir; `settings` are extra BRIDGE_* variables."""
        data_dir = self.stack.directory / "bridge-data"
        data_dir.mkdir(exist_ok=True)
        rules_dir = self.stack.directory / "bridge-rules"
        rules_dir.mkdir(exist_ok=True)
        (rules_dir / "e2e.yaml").write_text(yaml.safe_dump(BRIDGE_RULES, sort_keys=False))
        custom = os.environ.get("BRIDGE_E2E_COMMAND")
        argv = shlex.split(custom) if custom else [sys.executable, "-m", "bridge", "run"]
        # The checkout's packages, unless another command (an installed wheel) was asked for.
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        python_path = {} if custom else {"PYTHONPATH": path}

        def launch(port: int) -> Command:
            env = clean_environment(
                {
                    "BRIDGE_HOST": LOCALHOST,
                    "BRIDGE_PORT": str(port),
                    "BRIDGE_DATA_DIR": str(data_dir),
                    "BRIDGE_RULES_DIR": str(rules_dir),
                    **settings,
                    **python_path,
                    "PYTHONUNBUFFERED": "1",
                },
                drop_prefix="BRIDGE_",
            )
            return Command(argv, env)

        bridge = self.stack.start("bridge", launch, "/-/ready")
        api = BridgeAPI(bridge.url)
        self.stack.snapshots["bridge incidents"] = snapshot_of(f"{api.url}/api/v1/incidents")
        self.stack.snapshots["bridge alerts"] = snapshot_of(f"{api.url}/api/v1/alerts")
        return bridge

    def start_alertmanager(self, bridge: Service, token: str | None = None) -> Service:
        """Alertmanager whose only receiver is the bridge, configured from the shipped snippet
        with test timings (flush a new group after 1s, send changes every 1s); with `token`,
        its webhook sends it as bearer token (`http_config.authorization`)."""
        binary = require_binary("prometheus-alertmanager", "alertmanager", install=INSTALL)
        config = from_snippet(ALERTMANAGER_SNIPPET, bridge)
        config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
        if token is not None:
            token_file = self.stack.directory / "bridge-token"
            token_file.write_text(token)
            for webhook in config["receivers"][0]["webhook_configs"]:
                webhook["http_config"] = {"authorization": {"credentials_file": str(token_file)}}
        path = self.stack.directory / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        storage = self.stack.directory / "alertmanager-data"

        def launch(port: int) -> Command:
            return Command(
                [
                    binary,
                    f"--config.file={path}",
                    f"--storage.path={storage}",
                    f"--web.listen-address={LOCALHOST}:{port}",
                    f"--web.external-url=http://{LOCALHOST}:{port}",
                    "--cluster.listen-address=",  # empty: no gossip, no extra ports
                    "--log.level=debug",
                ]
            )

        alertmanager = self.stack.start("alertmanager", launch, "/-/ready")
        self.stack.snapshots["alertmanager alerts"] = snapshot_of(
            f"{alertmanager.url}/api/v2/alerts"
        )
        return alertmanager

    def start_prometheus(self, exporter: SwitchExporter, alerting: dict[str, Any]) -> Service:
        """Prometheus scraping the switch exporter and evaluating `E2E_RULES` every second,
        re-sending firing alerts every second; `alerting` is its `alerting:` section."""
        binary = require_binary("prometheus", install=INSTALL)
        rules = self.stack.directory / "e2e-rules.yml"
        rules.write_text(yaml.safe_dump(E2E_RULES, sort_keys=False))
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
                "external_labels": {"e2e_run": self.run_id},
            },
            "rule_files": [str(rules)],
            "scrape_configs": [
                {
                    "job_name": "e2e",
                    "honor_labels": True,
                    "static_configs": [{"targets": [exporter.target]}],
                }
            ],
            **alerting,
        }
        path = self.stack.directory / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        storage = self.stack.directory / "prometheus-data"

        def launch(port: int) -> Command:
            return Command(
                [
                    binary,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={storage}",
                    f"--web.listen-address={LOCALHOST}:{port}",
                    "--rules.alert.resend-delay=1s",
                ]
            )

        prometheus = self.stack.start("prometheus", launch, "/-/ready")
        self.stack.snapshots["prometheus alerts"] = snapshot_of(f"{prometheus.url}/api/v1/alerts")
        self.stack.snapshots["prometheus alertmanagers"] = snapshot_of(
            f"{prometheus.url}/api/v1/alertmanagers"
        )
        return prometheus


def alerting_to(target: Service) -> dict[str, Any]:
    """An `alerting:` section sending to `target` (an Alertmanager)."""
    return {
        "alerting": {
            "alertmanagers": [
                {
                    "api_version": "v2",
                    "static_configs": [{"targets": [f"{LOCALHOST}:{target.port}"]}],
                }
            ]
        }
    }


@contextlib.contextmanager
def open_peers(directory: Path, config: pytest.Config) -> Iterator[Peers]:
    """Peers whose processes are all stopped on exit, even if starting one of them failed."""
    with Stack(directory) as stack:
        config.stash[_STACKS].append(stack)
        yield Peers(stack, run_id=uuid.uuid4().hex[:12])


@pytest.fixture
def peers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Peers]:
    with open_peers(tmp_path / "peers", request.config) as started:
        yield started


@pytest.fixture
def exporter() -> Iterator[SwitchExporter]:
    with SwitchExporter() as running:
        yield running
