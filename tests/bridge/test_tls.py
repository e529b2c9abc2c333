"""HTTPS: with a certificate and key in the settings, `bridge run` serves TLS (and only TLS);
TLS settings that cannot work stop it with a config error."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.settings import Settings
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


# A TLS setting that cannot work is a config error at start, like any bad setting: the same
# exit code, a line naming the setting, no traceback, no pass-phrase prompt, no plain HTTP.


def encrypted_copy(key: Path) -> Path:
    locked = key.with_name("locked.key")
    subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-out", str(locked), "-aes256",
         "-passout", "pass:secret"],
        check=True, capture_output=True,
    )  # fmt: skip
    return locked


def bridge_run(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    values = {
        **os.environ,
        "BRIDGE_PORT": str(free_port()),
        "BRIDGE_DATA_DIR": str(tmp_path / "data"),
        "BRIDGE_LOG_LEVEL": "warning",
        **env,
    }
    values.pop("BRIDGE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bridge", "run"],
        env=values,
        stdin=subprocess.DEVNULL,  # a pass-phrase prompt would wait here
        capture_output=True,
        text=True,
        timeout=60,
    )


def tls_cases(tmp_path: Path) -> list[tuple[dict[str, str], str]]:
    cert, key = make_certificate(tmp_path)
    (tmp_path / "other").mkdir()
    other_cert, _ = make_certificate(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = str(tmp_path / "missing.crt")
    return [
        ({"BRIDGE_TLS_KEY_FILE": str(key)}, "tls_key_file: Value error, set tls_cert_file too"),
        ({"BRIDGE_TLS_CERT_FILE": missing, "BRIDGE_TLS_KEY_FILE": str(key)},
         f"tls_cert_file: cannot read {missing}: No such file or directory"),
        ({"BRIDGE_TLS_CERT_FILE": str(cert), "BRIDGE_TLS_KEY_FILE": str(tmp_path)},
         f"tls_key_file: cannot read {tmp_path}: Is a directory"),
        ({"BRIDGE_TLS_CERT_FILE": str(cert), "BRIDGE_TLS_KEY_FILE": str(encrypted_copy(key))},
         "tls_key_file: the private key in"),
        ({"BRIDGE_TLS_CERT_FILE": str(garbage), "BRIDGE_TLS_KEY_FILE": str(key)},
         "tls_cert_file, tls_key_file: "),
        ({"BRIDGE_TLS_CERT_FILE": str(other_cert), "BRIDGE_TLS_KEY_FILE": str(key)},
         "tls_cert_file, tls_key_file: "),
        ({"BRIDGE_TLS_CERT_FILE": str(cert)}, f"tls_cert_file: {cert}: no PEM"),  # no key
    ]  # fmt: skip


def test_a_tls_setting_that_cannot_work_is_a_config_error(tmp_path: Path) -> None:
    bad_setting = bridge_run({"BRIDGE_PORT": "eighty"}, tmp_path)
    assert bad_setting.returncode == 1, bad_setting.stderr
    for env, message in tls_cases(tmp_path):
        run = bridge_run(env, tmp_path)
        assert run.returncode == bad_setting.returncode, (env, run.stderr)
        assert message in run.stderr, (env, run.stderr)
        assert "Traceback" not in run.stderr, run.stderr


def test_check_config_reports_tls_problems_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = make_certificate(tmp_path)
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)
    monkeypatch.setenv("BRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BRIDGE_TLS_CERT_FILE", str(cert))
    monkeypatch.setenv("BRIDGE_TLS_KEY_FILE", str(encrypted_copy(key)))
    assert main(["check-config"]) == 1
    assert "is encrypted with a pass phrase" in capsys.readouterr().err
    monkeypatch.setenv("BRIDGE_TLS_KEY_FILE", str(key))
    assert main(["check-config"]) == 0


def test_links_default_to_https_when_the_bridge_serves_it(tmp_path: Path) -> None:
    assert Settings(port=9470).effective_public_url == "http://127.0.0.1:9470"
    served = Settings(port=9470, tls_cert_file=tmp_path / "tls.crt")
    assert served.effective_public_url == "https://127.0.0.1:9470"
    assert Settings(host="::1", port=1).effective_public_url == "http://[::1]:1"
    given = Settings(public_url="https://bridge.example", tls_cert_file=tmp_path / "tls.crt")
    assert given.effective_public_url == "https://bridge.example"
    # Empty (`BRIDGE_TLS_CERT_FILE=`) is no certificate, not the current directory.
    assert Settings(tls_cert_file="", tls_key_file="").tls_cert_file is None
