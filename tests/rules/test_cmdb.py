"""`rules.cmdb`: lookups over the item graph, and every load problem as `file:line: message`."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.cmdb import Cmdb, CmdbLoadError, ConfigItem, Service, load_cmdb
from rules.priority import Level
from tests.files import write

SHIPPED_CMDB = Path(__file__).resolve().parents[2] / "config" / "cmdb.yaml"

H, M, L = Level.HIGH, Level.MEDIUM, Level.LOW

EXAMPLE = """
services:
  billing: {criticality: high, description: "Customer billing"}
  intranet: {criticality: low}
items:
  core-switch-1: {type: switch}
  switch-2: {type: switch, parent: core-switch-1}
  db-1: {type: server, parent: core-switch-1, service: billing}
  app-1: {type: server, parents: [core-switch-1], service: billing}
  web-1: {type: vm, parent: app-1, service: intranet, criticality: medium}
  vm-2: {type: vm, parents: [switch-2, app-1]}
  vm-3: {type: vm, parent: vm-2}
"""


@pytest.fixture(scope="module")
def cmdb(tmp_path_factory: pytest.TempPathFactory) -> Cmdb:
    return load_cmdb(Path(write(tmp_path_factory.mktemp("cmdb"), "cmdb.yaml", EXAMPLE)))


def load_errors(path: str) -> list[str]:
    with pytest.raises(CmdbLoadError) as info:
        load_cmdb(Path(path))
    assert str(info.value).splitlines()[1:] == info.value.errors
    return info.value.errors


def test_items_and_services_compile(cmdb: Cmdb) -> None:
    assert cmdb.item("app-1") == ConfigItem("app-1", "server", ("core-switch-1",), "billing")
    assert cmdb.item("web-1") == ConfigItem("web-1", "vm", ("app-1",), "intranet", M)
    assert cmdb.item("nope") is None
    assert list(cmdb.items) == [
        "core-switch-1",
        "switch-2",
        "db-1",
        "app-1",
        "web-1",
        "vm-2",
        "vm-3",
    ]
    assert cmdb.services == {
        "billing": Service("billing", H, "Customer billing"),
        "intranet": Service("intranet", L),
    }


@pytest.mark.parametrize(
    ("name", "ancestors"),
    [
        ("core-switch-1", ()),
        ("db-1", ("core-switch-1",)),
        ("web-1", ("app-1", "core-switch-1")),
        # Breadth-first: both parents before the grandparent they share, which comes once.
        ("vm-2", ("switch-2", "app-1", "core-switch-1")),
        ("vm-3", ("vm-2", "switch-2", "app-1", "core-switch-1")),
        ("unknown", ()),
    ],
)
def test_ancestors_nearest_first(cmdb: Cmdb, name: str, ancestors: tuple[str, ...]) -> None:
    assert cmdb.ancestors(name) == ancestors


@pytest.mark.parametrize(
    ("name", "service", "criticality"),
    [
        ("core-switch-1", None, None),
        ("db-1", "billing", H),
        ("web-1", "intranet", M),  # the item's own criticality wins over its service's
        ("vm-2", "billing", H),  # inherited from app-1; switch-2 has no service
        ("vm-3", "billing", H),  # from the nearest ancestor that has one
        ("unknown", None, None),
    ],
)
def test_service_and_criticality(
    cmdb: Cmdb, name: str, service: str | None, criticality: Level | None
) -> None:
    assert cmdb.service_of(name) == service
    assert cmdb.criticality_of(name) is criticality


def test_nearest_service_follows_the_order_of_parents(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cmdb.yaml",
        """
        services: {a: {criticality: low}, b: {criticality: high}}
        items:
          x: {type: server, service: a}
          y: {type: server, service: b}
          vm: {type: vm, parents: [y, x]}
        """,
    )
    cmdb = load_cmdb(Path(path))
    assert cmdb.service_of("vm") == "b"
    assert cmdb.criticality_of("vm") is H


def test_empty_cmdb() -> None:
    cmdb = Cmdb.empty()
    assert (cmdb.items, cmdb.services) == ({}, {})
    assert cmdb.item("db-1") is None
    assert cmdb.ancestors("db-1") == ()
    assert cmdb.service_of("db-1") is None
    assert cmdb.criticality_of("db-1") is None


@pytest.mark.parametrize(
    "text", ["", "# nothing yet\n", "{}\n", "services:\nitems:\n", "items: {}\n"]
)
def test_empty_files_give_an_empty_cmdb(tmp_path: Path, text: str) -> None:
    assert load_cmdb(Path(write(tmp_path, "cmdb.yaml", text))) == Cmdb.empty()


def test_build_from_compiled_values() -> None:
    cmdb = Cmdb.build(
        [Service("shop", H)],
        [ConfigItem("sw", "switch"), ConfigItem("web", "vm", ("sw",)), ConfigItem("x", "vm")],
    )
    assert cmdb.ancestors("web") == ("sw",)
    assert cmdb.service_of("web") is None
    assert cmdb.criticality_of("x") is None


def test_identical_files_load_equal(cmdb: Cmdb, tmp_path: Path) -> None:
    assert load_cmdb(Path(write(tmp_path, "again.yaml", EXAMPLE))) == cmdb


def test_missing_file_is_one_error(tmp_path: Path) -> None:
    missing = tmp_path / "cmdb.yaml"
    assert load_errors(str(missing)) == [f"{missing}:1: CMDB file does not exist"]


def test_unreadable_file_is_one_error(tmp_path: Path) -> None:
    assert load_errors(str(tmp_path)) == [f"{tmp_path}:1: cannot read file: Is a directory"]


def test_yaml_errors_report_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "cmdb.yaml", "items:\n  a: {type: switch}\n  a: {type: vm}\n")
    assert load_errors(path) == [f"{path}:3: invalid YAML: duplicate key 'a' (first at line 2)"]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "cmdb.yaml", "- db-1\n")
    assert load_errors(path) == [
        f"{path}:1: the top level must be a mapping with 'services' and 'items'"
    ]


def test_reference_errors_point_at_their_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cmdb.yaml",
        """
        services:
          billing: {criticality: high}
        items:
          core-switch-1: {type: switch}
          db-1: {type: server, parent: core-switch-9, service: billing}
          app-1:
            type: server
            parents:
              - core-switch-1
              - rack-2
              - core-switch-1
            service: biling
          web-1:
            type: vm
            parent: app-1
            parents: [core-switch-1]
        """,
    )
    assert load_errors(path) == [
        f"{path}:5: items.db-1.parent: unknown configuration item 'core-switch-9'",
        f"{path}:10: items.app-1.parents[1]: unknown configuration item 'rack-2'",
        f"{path}:11: items.app-1.parents[2]: parent 'core-switch-1' is listed twice",
        f"{path}:12: items.app-1.service: unknown service 'biling'",
        f"{path}:16: items.web-1: give either 'parent' or 'parents', not both",
    ]


def test_cycles_are_named_once_each(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cmdb.yaml",
        """
        items:
          ok: {type: switch}
          vm-1: {type: vm, parent: hv-2}
          hv-1: {type: server, parents: [ok, vm-1]}
          hv-2: {type: server, parent: hv-1}
          loop: {type: vm, parent: loop}
          a: {type: vm, parent: b}
          b: {type: vm, parent: a}
          c: {type: vm, parent: a}
        """,
    )
    assert load_errors(path) == [
        f"{path}:3: items.vm-1: dependency cycle vm-1 -> hv-2 -> hv-1 -> vm-1",
        f"{path}:6: items.loop: dependency cycle loop -> loop",
        f"{path}:7: items.a: dependency cycle a -> b -> a",
    ]


def test_cycle_through_a_parents_list_points_at_the_list_item(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cmdb.yaml",
        """
        items:
          a:
            type: vm
            parents:
              - c
              - b
          b: {type: vm, parent: a}
          c: {type: vm}
        """,
    )
    assert load_errors(path) == [f"{path}:6: items.a: dependency cycle a -> b -> a"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("items:\n  a: {type: vm, rack: 2}", ":2: items.a: unknown key 'rack'"),
        ("items:\n  a: {parent: b}", ":2: items.a: missing required key 'type'"),
        ("items:\n  a: {type: ''}", ":2: items.a.type: String should have at least 1 character"),
        (
            "items:\n  a: {type: vm, criticality: urgent}",
            ":2: items.a.criticality: unknown level 'urgent': use high, medium or low",
        ),
        (
            "items:\n  a: {type: vm, parents: b}",
            ":2: items.a.parents: Input should be a valid list",
        ),
        (
            "items:\n  a: {type: 5}",
            ":2: items.a.type: expected a string (quote numbers and booleans in YAML)",
        ),
        ("services:\n  s: {}", ":2: services.s: missing required key 'criticality'"),
        ("services:\n  s: {criticality: low, owner: x}", ":2: services.s: unknown key 'owner'"),
        ("hosts: {}", ":1: unknown key 'hosts'"),
        ("items: [a, b]", ":1: items: Input should be a valid dictionary"),
    ],
)
def test_field_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "cmdb.yaml", text + "\n")
    assert load_errors(path) == [path + expected]


def test_field_errors_come_in_line_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cmdb.yaml",
        """
        items:
          a: {type: vm, colour: red}
        services:
          s: {criticality: none}
        """,
    )
    assert load_errors(path) == [
        f"{path}:2: items.a: unknown key 'colour'",
        f"{path}:4: services.s.criticality: unknown level 'none': use high, medium or low",
    ]


def test_shipped_cmdb_loads() -> None:
    cmdb = load_cmdb(SHIPPED_CMDB)
    assert set(cmdb.services) == {"shop", "billing", "intranet"}
    assert {service.criticality for service in cmdb.services.values()} == {H, M, L}
    assert cmdb.ancestors("web-1") == ("hv-1", "switch-1", "core-switch-1", "fw-1")
    assert cmdb.ancestors("db-2") == ("switch-2", "switch-1", "core-switch-1", "fw-1")
    assert cmdb.criticality_of("db-1") is H
    assert cmdb.service_of("billing-db-1") == "billing"
    assert cmdb.criticality_of("billing-db-1") is M
    assert cmdb.criticality_of("backup-1") is M
    assert cmdb.criticality_of("core-switch-1") is None
    # Every item hangs off the firewall, so a cycle or a dangling parent would show here.
    assert all(cmdb.ancestors(name)[-1:] == ("fw-1",) for name in cmdb.items if name != "fw-1")
