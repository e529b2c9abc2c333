"""HTTPS: with a certificate and key in the settings, `bridge run` serves TLS (and only TLS)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import free_port, wait_until


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def fetch(url: str, context: ssl.SSLContext | None = None) -> int:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        status: int = response.status
        return status


def test_the_daemon_serves_https_from_the_configured_certificate(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "BRIDGE_PORT": str(port),
        "BRIDGE_DATA_DIR": str(tmp_path / "data"),
        "BRIDGE_TLS_CERT_FILE": str(cert),
        "BRIDGE_TLS_KEY_FILE": str(key),
        "BRIDGE_LOG_LEVEL": "warning",
    }
    trusted = ssl.create_default_context(cafile=str(cert))
    daemon = subprocess.Popen([sys.executable, "-m", "bridge", "run"], env=env)
    try:

        def up() -> bool:
            try:
                return fetch(f"https://127.0.0.1:{port}/-/ready", trusted) == 200
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_until(up, 30, "the bridge answering over HTTPS")
        assert fetch(f"https://localhost:{port}/-/healthy", trusted) == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            fetch(f"http://127.0.0.1:{port}/-/healthy")  # no plain HTTP on the port
        untrusted = ssl.create_default_context()
        with pytest.raises(urllib.error.URLError):
            fetch(f"https://127.0.0.1:{port}/-/healthy", untrusted)
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=30) == 0
