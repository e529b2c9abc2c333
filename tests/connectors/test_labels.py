"""The shared label helpers: host derivation for cross-source correlation."""

from __future__ import annotations

import pytest

from connectors.labels import host_of, with_host


@pytest.mark.parametrize(
    ("instance", "host"),
    [
        ("web-01.e2e.example:9100", "web-01.e2e.example"),
        ("10.0.0.7:9100", "10.0.0.7"),
        ("[2001:db8::1]:9100", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("db-01", "db-01"),
        ("https://shop.example:8443/health", "shop.example"),
    ],
)
def test_host_of_an_instance(instance: str, host: str) -> None:
    assert host_of(instance) == host


def test_a_host_label_the_sender_gave_wins() -> None:
    labels = {"instance": "web-01:9100", "host": "web-01.prod"}
    assert with_host(labels) == labels


def test_no_instance_no_host() -> None:
    assert with_host({"alertname": "X"}) == {"alertname": "X"}
