"""Address allocation from IPAddressPools, as a user reading Gateway statuses sees it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from edgegw.pools import (
    NOT_ASSIGNED,
    NOT_USABLE,
    POOL_ANNOTATION,
    GatewayRequest,
    Pool,
    PoolAssignment,
    allocate,
    load_allocations,
    save_allocations,
)

AUTO = GatewayRequest()


def held(result: Mapping[tuple[str, str], PoolAssignment], ns: str, name: str) -> tuple[str, ...]:
    return result[(ns, name)].addresses


def test_lowest_free_address_in_namespace_name_order() -> None:
    pools = [Pool.from_spec("lan", ["192.0.2.10-192.0.2.12"])]
    gateways = {("b", "gw"): AUTO, ("a", "zz"): AUTO, ("a", "gw"): AUTO}
    result = allocate(pools, gateways, {})
    assert held(result, "a", "gw") == ("192.0.2.10",)
    assert held(result, "a", "zz") == ("192.0.2.11",)
    assert held(result, "b", "gw") == ("192.0.2.12",)
    assert result[("a", "gw")].pools == {"192.0.2.10": "lan"}
    assert result[("a", "gw")].reason == ""


def test_address_stays_with_its_gateway_when_an_earlier_one_appears() -> None:
    pools = [Pool.from_spec("lan", ["192.0.2.0/30"])]
    first = allocate(pools, {("b", "web"): AUTO}, {})
    assert held(first, "b", "web") == ("192.0.2.0",)
    previous = {k: v.addresses for k, v in first.items()}
    second = allocate(pools, {("a", "new"): AUTO, ("b", "web"): AUTO}, previous)
    assert held(second, "b", "web") == ("192.0.2.0",)
    assert held(second, "a", "new") == ("192.0.2.1",)


def test_address_of_a_deleted_gateway_is_free_again() -> None:
    pools = [Pool.from_spec("lan", ["192.0.2.1-192.0.2.2"])]
    previous = {("a", "gone"): ("192.0.2.1",), ("b", "stays"): ("192.0.2.2",)}
    result = allocate(pools, {("b", "stays"): AUTO, ("c", "new"): AUTO}, previous)
    assert held(result, "c", "new") == ("192.0.2.1",)
    assert ("a", "gone") not in result


def test_exhausted_pool_reports_address_not_assigned() -> None:
    pools = [Pool.from_spec("tiny", ["192.0.2.7/32"])]
    result = allocate(pools, {("a", "one"): AUTO, ("a", "two"): AUTO}, {})
    assert held(result, "a", "one") == ("192.0.2.7",)
    assert held(result, "a", "two") == ()
    assert result[("a", "two")].reason == NOT_ASSIGNED
    assert "tiny" in result[("a", "two")].message


def test_no_pool_at_all_is_not_assigned() -> None:
    result = allocate([], {("a", "gw"): AUTO}, {})
    assert result[("a", "gw")].reason == NOT_ASSIGNED


def test_non_auto_pool_only_through_the_annotation() -> None:
    pools = [
        Pool.from_spec("manual", ["192.0.2.50/32"], auto_assign=False),
        Pool.from_spec("public", ["198.51.100.1/32"]),
    ]
    picked = GatewayRequest(annotations={POOL_ANNOTATION: "manual"})
    result = allocate(pools, {("a", "auto"): AUTO, ("a", "picked"): picked}, {})
    assert held(result, "a", "auto") == ("198.51.100.1",)
    assert held(result, "a", "picked") == ("192.0.2.50",)


def test_annotation_naming_a_missing_pool() -> None:
    pools = [Pool.from_spec("lan", ["192.0.2.0/24"])]
    request = GatewayRequest(annotations={POOL_ANNOTATION: "nope"})
    result = allocate(pools, {("a", "gw"): request}, {})
    assert result[("a", "gw")].addresses == ()
    assert result[("a", "gw")].reason == NOT_ASSIGNED
    assert "'nope' does not exist" in result[("a", "gw")].message


def test_changing_the_annotation_moves_the_gateway_to_the_new_pool() -> None:
    pools = [Pool.from_spec("p1", ["192.0.2.1/32"]), Pool.from_spec("p2", ["192.0.2.9/32"])]
    request = GatewayRequest(annotations={POOL_ANNOTATION: "p2"})
    result = allocate(pools, {("a", "gw"): request}, {("a", "gw"): ("192.0.2.1",)})
    assert held(result, "a", "gw") == ("192.0.2.9",)


def test_avoid_buggy_ips_skips_dot_zero_and_dot_255() -> None:
    pools = [Pool.from_spec("lan", ["192.0.2.255-192.0.3.1"], avoid_buggy_ips=True)]
    result = allocate(pools, {("a", "one"): AUTO, ("a", "two"): AUTO}, {})
    assert held(result, "a", "one") == ("192.0.3.1",)
    assert result[("a", "two")].reason == NOT_ASSIGNED


def test_requested_address_inside_a_pool_is_honoured() -> None:
    pools = [Pool.from_spec("lan", ["192.0.2.0/24"])]
    request = GatewayRequest(addresses=("192.0.2.77",))
    result = allocate(pools, {("a", "gw"): request, ("b", "auto"): AUTO}, {})
    assert held(result, "a", "gw") == ("192.0.2.77",)
    assert result[("a", "gw")].pools == {"192.0.2.77": "lan"}
    assert held(result, "b", "auto") == ("192.0.2.0",)


def test_requested_address_held_by_another_gateway_is_not_usable() -> None:
    pools = [Pool.from_spec("lan", ["192.0.2.5/32"])]
    request = GatewayRequest(addresses=("192.0.2.5",))
    previous = {("z", "owner"): ("192.0.2.5",)}
    result = allocate(pools, {("a", "late"): request, ("z", "owner"): AUTO}, previous)
    assert held(result, "z", "owner") == ("192.0.2.5",)
    assert held(result, "a", "late") == ()
    assert result[("a", "late")].reason == NOT_USABLE
    assert "z/owner" in result[("a", "late")].message


def test_two_gateways_requesting_one_address_first_by_name_wins() -> None:
    pools = [Pool.from_spec("lan", ["192.0.2.0/24"])]
    request = GatewayRequest(addresses=("192.0.2.5",))
    result = allocate(pools, {("b", "gw"): request, ("a", "gw"): request}, {})
    assert held(result, "a", "gw") == ("192.0.2.5",)
    assert result[("b", "gw")].reason == NOT_USABLE


def test_requested_address_outside_every_pool_passes_through() -> None:
    pools = [Pool.from_spec("lan", ["192.0.2.0/24"])]
    request = GatewayRequest(addresses=("203.0.113.9",))
    result = allocate(pools, {("a", "gw"): request}, {})
    assert held(result, "a", "gw") == ("203.0.113.9",)
    assert result[("a", "gw")].pools == {}


def test_ipv6_pool_in_a_big_range() -> None:
    pools = [Pool.from_spec("v6", ["fd00::/64"])]
    previous = {("a", "one"): ("fd00::",)}
    result = allocate(pools, {("a", "one"): AUTO, ("a", "two"): AUTO}, previous)
    assert held(result, "a", "one") == ("fd00::",)
    assert held(result, "a", "two") == ("fd00::1",)


def test_first_pool_by_name_before_later_pools() -> None:
    pools = [Pool.from_spec("b-pool", ["198.51.100.1/32"]), Pool.from_spec("a-pool", ["fd00::1"])]
    result = allocate(pools, {("a", "gw"): AUTO, ("a", "gx"): AUTO}, {})
    assert held(result, "a", "gw") == ("fd00::1",)
    assert held(result, "a", "gx") == ("198.51.100.1",)


@pytest.mark.parametrize(
    "entry", ["192.0.2.9-192.0.2.1", "192.0.2.1-fd00::1", "nonsense", "192.0.2.0/33"]
)
def test_bad_pool_entries_are_rejected_with_the_entry_named(entry: str) -> None:
    with pytest.raises(ValueError, match="invalid pool address"):
        Pool.from_spec("bad", [entry])


def test_allocations_survive_a_restart(tmp_path: Path) -> None:
    pools = [Pool.from_spec("lan", ["192.0.2.0/29"])]
    first = allocate(pools, {("z", "gw"): AUTO}, {})
    save_allocations(tmp_path, first)
    assert [p.name for p in tmp_path.iterdir()] == ["allocations.json"]
    restored = load_allocations(tmp_path)
    assert restored == {("z", "gw"): ("192.0.2.0",)}
    second = allocate(pools, {("a", "gw"): AUTO, ("z", "gw"): AUTO}, restored)
    assert held(second, "z", "gw") == ("192.0.2.0",)


def test_missing_or_broken_allocations_file_reads_as_empty(tmp_path: Path) -> None:
    assert load_allocations(tmp_path) == {}
    (tmp_path / "allocations.json").write_text("{broken")
    assert load_allocations(tmp_path) == {}


def test_saved_file_is_readable_json(tmp_path: Path) -> None:
    save_allocations(tmp_path / "state", {("ns", "gw"): ("192.0.2.1", "fd00::1")})
    data = json.loads((tmp_path / "state" / "allocations.json").read_text())
    assert data["gateways"] == [
        {"namespace": "ns", "name": "gw", "addresses": ["192.0.2.1", "fd00::1"]}
    ]
