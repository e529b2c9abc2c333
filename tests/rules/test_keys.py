"""`rules.keys`: keys made of label values stay under `MAX_KEY_BYTES` bytes of UTF-8 (what a
PostgreSQL index row can hold), deterministically, and keys that fit are unchanged; and the
incident, inhibit and problem keys and the CMDB's CI names all keep to it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rules.cmdb import CmdbLoadError, load_cmdb
from rules.correlate import incident_key
from rules.evaluate import lookups
from rules.inhibit import key_of
from rules.keys import MAX_KEY_BYTES, bounded
from rules.problems import problem_key
from rules.ruleset import RuleSet
from tests.files import write
from tests.rules.builders import at, correlate, firing, inhibit, labels, problem, resolved
from tests.rules.world import Pipeline


def noise(seed: str, chars: int) -> str:
    """Text that does not compress (PostgreSQL compresses repetitive index values)."""
    blocks = (hashlib.sha256(f"{seed}{i}".encode()).hexdigest() for i in range(chars // 64 + 1))
    return "".join(blocks)[:chars]


def size(text: str) -> int:
    return len(text.encode())


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("per-alert{alertname='DiskFull',instance='db-1:9100'}", id="usual"),
        pytest.param("a" * MAX_KEY_BYTES, id="exactly the limit"),
        pytest.param("é" * (MAX_KEY_BYTES // 2), id="exactly the limit in two-byte characters"),
    ],
)
def test_a_key_that_fits_is_unchanged(key: str) -> None:
    assert bounded(key) == key


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("a" * (MAX_KEY_BYTES + 1), id="one byte over"),
        pytest.param(noise("x", 4000), id="a 4,000-character label value"),
        pytest.param("é" * 600, id="two-byte characters"),
        pytest.param("a" + "😀" * 1000, id="four-byte characters, cut inside one"),
        pytest.param("a" * 950 + "\ud800" * 100, id="lone surrogates"),
    ],
)
def test_a_longer_key_becomes_a_prefix_and_the_digest_of_the_whole(key: str) -> None:
    got = bounded(key)
    assert size(got) <= MAX_KEY_BYTES
    prefix, digest = got.removesuffix("]").split("...[sha256:")
    assert key.startswith(prefix)
    assert size(prefix) >= MAX_KEY_BYTES - 80 - 3  # as much of the key as fits, to the character
    assert digest == hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    assert bounded(key) == got  # deterministic: the same values meet in the same key


def test_long_keys_with_a_common_prefix_stay_apart() -> None:
    common = noise("common", 2000)
    assert bounded(common + "a") != bounded(common + "b")


def test_another_limit() -> None:
    assert size(bounded("x" * 500, limit=200)) == 200
    assert bounded("x" * 200, limit=200) == "x" * 200


LONG = noise("instance", 4000)


def test_incident_keys_of_short_values_keep_their_form() -> None:
    # Keys stored before the bound was introduced must still match.
    rule = correlate("per-alert", group_by=("alertname", "instance"))
    key = incident_key(rule, {"alertname": "DiskFull", "instance": "db-1:9100"})
    assert key == "per-alert{alertname='DiskFull',instance='db-1:9100'}"


def test_an_incident_key_of_long_values_is_bounded_and_stable() -> None:
    rule = correlate("per-alert", group_by=("alertname", "instance"))
    key = incident_key(rule, {"alertname": "DiskFull", "instance": LONG})
    assert size(key) <= MAX_KEY_BYTES
    assert key.startswith("per-alert{alertname='DiskFull',instance='")
    assert key == incident_key(rule, {"alertname": "DiskFull", "instance": LONG, "x": "y"})
    assert key != incident_key(rule, {"alertname": "DiskFull", "instance": LONG + "2"})


def test_several_labels_that_fit_alone_are_bounded_together() -> None:
    rule = correlate("many", group_by=("a", "b", "c"))
    key = incident_key(rule, {"a": noise("a", 900), "b": noise("b", 900), "c": noise("c", 900)})
    assert size(key) <= MAX_KEY_BYTES


def test_inhibit_keys_are_bounded_and_short_ones_unchanged() -> None:
    rule = inhibit(
        "host-down", ('alertname="HostDown"',), ('alertname!="HostDown"',), ("host", "dc")
    )
    assert key_of(rule, {"host": "db-1", "dc": "fra"}) == ("host-down", "db-1\x1ffra")
    name, values = key_of(rule, {"host": LONG}, both=True)
    assert (name, size(values) <= MAX_KEY_BYTES) == ("host-down|both", True)
    assert values == key_of(rule, {"host": LONG, "other": "x"})[1]


def test_problem_keys_are_bounded_and_short_ones_unchanged() -> None:
    assert problem_key("recurring", "disk{alertname='DiskFull'}") == (
        "recurring:disk{alertname='DiskFull'}"
    )
    assert size(problem_key("x" * 200, bounded(LONG))) <= MAX_KEY_BYTES


def test_the_keys_the_store_is_asked_for_are_the_keys_the_stages_write() -> None:
    # The shell loads only the incident and problem keys `lookups` names: a long key must be
    # bounded the same way in both places, or the next alert would not find its incident.
    rules = RuleSet(
        correlate=(correlate("per-alert", group_by=("alertname", "instance")),),
        problems=(problem("recurring", count=2, within=86400),),
    )
    pipeline = Pipeline(rules)
    alert = labels("DiskFull", instance=LONG)
    for start in (0, 7200):
        pipeline.send(firing("a", alert, since=start), at(start))
        pipeline.send(resolved("a", alert, since=start, until=start + 60), at(start + 60))
    [found] = pipeline.problems()
    incidents = pipeline.incidents()
    assert [i.problem_id for i in incidents] == [found.id, found.id]
    wanted = lookups(rules, [firing("a", alert, since=9000)])
    assert {i.key for i in incidents} == wanted.incident_keys
    assert found.key in wanted.problem_keys
    assert all(size(k) <= MAX_KEY_BYTES for k in (*wanted.incident_keys, *wanted.problem_keys))


def test_a_cmdb_item_name_over_the_limit_is_a_load_error(tmp_path: Path) -> None:
    name = "h" * (MAX_KEY_BYTES + 1)
    path = write(
        tmp_path, "cmdb.yaml", f"items:\n  ok-1: {{type: server}}\n  {name}: {{type: vm}}\n"
    )
    with pytest.raises(CmdbLoadError) as info:
        load_cmdb(Path(path))
    [error] = info.value.errors
    assert error.endswith(f"item name of {MAX_KEY_BYTES + 1} bytes: at most 1000 bytes of UTF-8")
    fits = write(tmp_path, "fits.yaml", f"items:\n  {'h' * MAX_KEY_BYTES}: {{type: vm}}\n")
    assert load_cmdb(Path(fits)).item("h" * MAX_KEY_BYTES) is not None
