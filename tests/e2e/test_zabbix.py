"""Zabbix -> bridge, all real (Zabbix 6.0.14 server and API from the Debian packages).

A private Zabbix (see `tests/e2e/zabbix.py`) is configured through its API only: the SHIPPED
media type `config/zabbix/media_type_bridge.yaml` is imported unchanged, user
`bridge-receiver` gets it as media with "Send to" the test bridge's webhook URL, and an action
messages that user on problem, recovery and update, as `config/zabbix/README.md` says. Values
reach trapper items through `zabbix_sender`; acknowledgements are made through the API as a
second user, `bridge-operator`, because Zabbix does not notify the author of an update.

The push test and the polling test use their own trigger and alert name, so their order does
not matter; the polling test runs a second bridge of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import REPO, Peers, open_peers
from tests.e2e.harness import BridgeAPI, Json, metric_value, wait_until
from tests.e2e.zabbix import (
    Trigger,
    Zabbix,
    ZabbixAPI,
    add_action,
    add_host,
    add_trapper_trigger,
    add_user,
    api_token,
    import_media_type,
    media,
    require_zabbix,
    scratch_database,
    start_zabbix,
)

pytestmark = pytest.mark.e2e

SHIPPED_MEDIA_TYPE = REPO / "config" / "zabbix" / "media_type_bridge.yaml"
MEDIA_TYPE_NAME = "alert-bridge"
WEBHOOK_PATH = "/api/v1/webhooks/zabbix"
HOST = "e2e-zabbix-host"
HIGH = 4
RECEIVER = ("bridge-receiver", "Qx7-vanilla-Tide-42")
OPERATOR = ("bridge-operator", "Wp3-copper-Kite-58", "Bridge Operator")
ADMIN_USER_ID = "1"
ACK_MESSAGE = 'looking at it (the "db-02" pool & <eu-west>)'
# The escalator and the alerters work on one-second cycles; the margin is for a loaded machine.
WITHIN = 30.0


@dataclass(frozen=True)
class Private:
    """One Zabbix for the module, with the test host; each test adds its own trigger."""

    zabbix: Zabbix
    host_id: str


@pytest.fixture(scope="module")
def private(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Private]:
    directory = tmp_path_factory.mktemp("zabbix")
    psql = require_zabbix()[3]
    with scratch_database(psql) as database, open_peers(directory, request.config) as peers:
        zabbix = start_zabbix(peers.stack, database)
        zabbix.admin.call(
            "usermacro.createglobal", {"macro": "{$ZABBIX.URL}", "value": zabbix.frontend.url}
        )
        yield Private(zabbix, add_host(zabbix.admin, HOST, "e2e hosts"))


def timeline_kinds(incident: Json) -> list[str]:
    return [entry["kind"] for entry in incident["timeline"]]


def open_problem_id(zabbix: Zabbix, trigger: Trigger) -> str:
    [problem] = wait_until(
        lambda: [p for p in zabbix.problems(trigger.trigger_id) if p["r_eventid"] == "0"],
        WITHIN,
        f"Zabbix to open a problem for {trigger.name!r}",
        watch=zabbix.processes,
    )
    return str(problem["eventid"])


def test_problem_acknowledgement_and_recovery_through_the_shipped_media_type(
    private: Private, peers: Peers
) -> None:
    zabbix, admin = private.zabbix, private.zabbix.admin
    receiving = peers.start_bridge()
    bridge, watch = BridgeAPI(receiving.url), [receiving, *zabbix.processes]
    trigger = add_trapper_trigger(admin, private.host_id, HOST, "e2e.push", "E2E pushed High", HIGH)
    # config/zabbix/README.md steps 1-5, through the API, with the shipped file unchanged.
    media_type_id = import_media_type(admin, SHIPPED_MEDIA_TYPE, MEDIA_TYPE_NAME)
    receiver_id = add_user(admin, *RECEIVER, [media(media_type_id, receiving.url + WEBHOOK_PATH)])
    add_user(admin, *OPERATOR[:2], [], name=OPERATOR[2])
    add_action(admin, "alert-bridge e2e", media_type_id, receiver_id, trigger.trigger_id)
    # The action must be in the server's configuration cache before the problem happens, or
    # Zabbix opens the problem and sends nothing: an item created after the action and accepted
    # by the trapper proves a cache sync since then.
    probe = add_trapper_trigger(admin, private.host_id, HOST, "e2e.sync", "E2E sync probe", HIGH)
    zabbix.push(probe.host, probe.key, "0")

    zabbix.push(trigger.host, trigger.key, "1")
    event_id = open_problem_id(zabbix, trigger)

    incident = wait_until(
        lambda: bridge.incident_of(trigger.name),
        WITHIN,
        f"an incident holding the {trigger.name!r} alert after the item went to 1",
        watch=watch,
    )
    assert incident["status"] == "new"
    assert incident["severity"] == "major"
    assert incident["resolved_at"] is None
    [alert] = incident["alerts"]
    assert alert["source"] == "zabbix"
    assert alert["status"] == "firing"
    assert alert["fingerprint"] == f"zabbix:{event_id}"
    assert alert["labels"]["alertname"] == trigger.name
    assert alert["labels"]["host"] == HOST
    assert alert["labels"]["severity"] == "major"
    assert alert["labels"]["service"] == "e2e"
    assert alert["labels"]["zabbix_trigger_id"] == trigger.trigger_id
    assert timeline_kinds(incident)[0] == "opened"

    operator = ZabbixAPI(zabbix.api_url).login(OPERATOR[0], OPERATOR[1])
    operator.call(
        "event.acknowledge", {"eventids": [event_id], "action": 2 | 4, "message": ACK_MESSAGE}
    )
    acknowledged = wait_until(
        lambda: bridge.incident_of(trigger.name, lambda i: i["status"] == "acknowledged"),
        WITHIN,
        f"the {trigger.name!r} incident to be acknowledged after event.acknowledge",
        watch=watch,
    )
    assert acknowledged["id"] == incident["id"]
    [entry] = [e for e in acknowledged["timeline"] if e["kind"] == "acknowledged"]
    assert entry["actor"].startswith("zabbix:"), entry
    assert entry["actor"] == f"zabbix:{OPERATOR[2]} ({OPERATOR[0]})"
    assert entry["message"] == ACK_MESSAGE

    zabbix.push(trigger.host, trigger.key, "0")
    resolved = wait_until(
        lambda: bridge.incident_of(trigger.name, lambda i: i["status"] == "resolved"),
        WITHIN,
        f"the {trigger.name!r} incident to resolve after the item went back to 0",
        watch=watch,
    )
    assert resolved["id"] == incident["id"]
    assert resolved["resolved_at"] is not None
    assert [a["status"] for a in resolved["alerts"]] == ["resolved"]
    assert resolved["alerts"][0]["fingerprint"] == f"zabbix:{event_id}"
    kinds = timeline_kinds(resolved)
    assert (kinds[0], kinds[-1]) == ("opened", "resolved"), kinds

    # PROBLEM, update (acknowledged), RECOVERY; Zabbix delivered every one of them.
    assert metric_value(bridge.metrics(), "bridge_events_received_total", source="zabbix") >= 3
    delivered = wait_until(
        lambda: zabbix.delivered(event_id, count=3),
        WITHIN,
        f"Zabbix to record its 3 webhooks about event {event_id} as sent (alert.get)",
        watch=watch,
    )
    assert [a["acknowledgeid"] != "0" for a in delivered] == [False, True, False], delivered


def test_polling_mode_follows_a_problem(private: Private, peers: Peers) -> None:
    zabbix = private.zabbix
    trigger = add_trapper_trigger(
        zabbix.admin, private.host_id, HOST, "e2e.poll", "E2E polled High", HIGH
    )
    token = api_token(zabbix.admin, "alert-bridge e2e polling", ADMIN_USER_ID)
    polling = peers.start_bridge(
        BRIDGE_ZABBIX_API_URL=zabbix.api_url,
        BRIDGE_ZABBIX_API_TOKEN=token,
        BRIDGE_ZABBIX_POLL_INTERVAL="1s",
        BRIDGE_ZABBIX_FRONTEND_URL=zabbix.frontend.url,
    )
    bridge, watch = BridgeAPI(polling.url), [polling, *zabbix.processes]

    zabbix.push(trigger.host, trigger.key, "1")
    event_id = open_problem_id(zabbix, trigger)
    firing = wait_until(
        lambda: bridge.incident_of(trigger.name),
        WITHIN,
        f"the polling bridge to open an incident for {trigger.name!r}",
        watch=watch,
    )
    [alert] = firing["alerts"]
    assert alert["source"] == "zabbix"
    assert alert["status"] == "firing"
    assert alert["fingerprint"] == f"zabbix:{event_id}"
    assert alert["labels"]["alertname"] == trigger.name
    assert alert["labels"]["host"] == HOST
    assert alert["labels"]["severity"] == "major"
    assert firing["severity"] == "major"

    zabbix.push(trigger.host, trigger.key, "0")
    resolved = wait_until(
        lambda: bridge.incident_of(trigger.name, lambda i: i["status"] == "resolved"),
        WITHIN,
        f"the polling bridge to resolve the {trigger.name!r} incident",
        watch=watch,
    )
    assert resolved["id"] == firing["id"]
    assert [a["status"] for a in resolved["alerts"]] == ["resolved"]
    metrics = bridge.metrics()
    assert metric_value(metrics, "bridge_events_received_total", source="zabbix") >= 2
