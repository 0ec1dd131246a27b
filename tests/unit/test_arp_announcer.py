"""What the L2 speaker decides to announce where, from pools, advertisements and status."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from edgegw.l2.announcer import (
    AddLocal,
    L2Advertisement,
    Release,
    RemoveLocal,
    Take,
    diff,
    plan,
    withdraw_all,
)
from edgegw.l2.sources import StatusUnavailable, held_addresses, load_metallb
from edgegw.pools import Pool

LAN = Pool.from_spec("lan", ["192.0.2.100-192.0.2.110", "fd00::100/120"], labels={"zone": "a"})
DMZ = Pool.from_spec("dmz", ["198.51.100.0/28"], labels={"zone": "b"})
IFACES = ["eth0", "eth1"]


def ip(text: str):  # type: ignore[no-untyped-def]
    return ip_address(text)


def test_advertisement_without_selection_announces_every_pool_on_every_interface() -> None:
    decision = plan(["192.0.2.100", "198.51.100.1"], [LAN, DMZ], [L2Advertisement("all")], IFACES)
    both = frozenset({ip("192.0.2.100"), ip("198.51.100.1")})
    assert decision.announcements == {"eth0": both, "eth1": both}


def test_interfaces_and_pools_narrow_where_addresses_go() -> None:
    ads = [
        L2Advertisement("lan", ip_address_pools=("lan",), interfaces=("eth0",)),
        L2Advertisement(
            "dmz", pool_selectors=({"matchLabels": {"zone": "b"}},), interfaces=("eth1",)
        ),
    ]
    decision = plan(["192.0.2.100", "fd00::100", "198.51.100.1"], [LAN, DMZ], ads, IFACES)
    assert decision.announcements == {
        "eth0": frozenset({ip("192.0.2.100"), ip("fd00::100")}),
        "eth1": frozenset({ip("198.51.100.1")}),
    }


def test_addresses_outside_pools_or_advertisements_are_not_announced() -> None:
    ads = [L2Advertisement("lan", ip_address_pools=("lan",))]
    decision = plan(["203.0.113.1", "198.51.100.1"], [LAN, DMZ], ads, IFACES)
    assert decision.announcements == {}
    assert decision.skipped["203.0.113.1"] == "not in any IPAddressPool"
    assert "dmz" in decision.skipped["198.51.100.1"]


def test_no_advertisement_means_nothing_is_announced() -> None:
    assert plan(["192.0.2.100"], [LAN], [], IFACES).announcements == {}


def test_interface_the_speaker_does_not_run_on_is_ignored() -> None:
    ads = [L2Advertisement("x", interfaces=("wlan0",))]
    assert plan(["192.0.2.100"], [LAN], ads, IFACES).announcements == {}


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "c"]}, True),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, False),
        ({"key": "zone", "operator": "Exists"}, True),
        ({"key": "zone", "operator": "DoesNotExist"}, False),
        ({"key": "zone", "operator": "Bogus"}, False),
    ],
)
def test_pool_selector_expressions(expression: dict[str, object], selected: bool) -> None:
    ad = L2Advertisement("x", pool_selectors=({"matchExpressions": [expression]},))
    assert ad.selects(LAN) is selected


def test_diff_adds_local_before_taking_and_releases_before_removing() -> None:
    old = {"eth0": frozenset({ip("192.0.2.100"), ip("192.0.2.101")})}
    new = {
        "eth0": frozenset({ip("192.0.2.101"), ip("192.0.2.102")}),
        "eth1": frozenset({ip("192.0.2.101")}),
    }
    assert diff(old, new) == [
        AddLocal(ip("192.0.2.102")),
        Take("eth0", ip("192.0.2.102")),
        Take("eth1", ip("192.0.2.101")),
        Release("eth0", ip("192.0.2.100")),
        RemoveLocal(ip("192.0.2.100")),
    ]
    assert diff(new, new) == []


def test_withdraw_all_lets_go_of_everything() -> None:
    current = {"eth0": frozenset({ip("fd00::100"), ip("192.0.2.100")})}
    assert withdraw_all(current) == [
        Release("eth0", ip("192.0.2.100")),
        Release("eth0", ip("fd00::100")),
        RemoveLocal(ip("192.0.2.100")),
        RemoveLocal(ip("fd00::100")),
    ]


def test_status_gives_the_gateways_held_ip_addresses() -> None:
    status = {
        "generation": 3,
        "errors": [],
        "resources": [
            {
                "kind": "Gateway",
                "status": {"addresses": [{"type": "IPAddress", "value": "192.0.2.100"}]},
            },
            {
                "kind": "Gateway",
                "status": {"addresses": [{"type": "Hostname", "value": "gw.example"}]},
            },
            {"kind": "Gateway", "status": {}},
            {"kind": "HTTPRoute", "status": {"addresses": [{"value": "192.0.2.9"}]}},
        ],
    }
    assert held_addresses(status) == frozenset({"192.0.2.100"})
    with pytest.raises(StatusUnavailable):
        held_addresses({"generation": 1})


def test_metallb_resources_are_read_from_the_config_dir(tmp_path: Path) -> None:
    (tmp_path / "pools.yaml").write_text(
        """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system, labels: {zone: a}}
spec:
  addresses: [192.0.2.100-192.0.2.110]
  avoidBuggyIPs: true
  autoAssign: false
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web}
"""
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "l2.json").write_text(
        '{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "metallb.io/v1beta1",'
        ' "kind": "L2Advertisement", "metadata": {"name": "l2"},'
        ' "spec": {"ipAddressPools": ["lan"], "interfaces": ["eth0"]}}]}'
    )
    (tmp_path / ".hidden.yaml").write_text("kind: IPAddressPool\napiVersion: metallb.io/v1beta1\n")
    (tmp_path / "broken.yaml").write_text("a: [\n")
    (tmp_path / "badpool.yaml").write_text(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bad}\n"
        "spec: {addresses: [not-an-ip]}\n"
    )
    config = load_metallb(tmp_path)
    assert [p.name for p in config.pools] == ["lan"]
    assert config.pools[0].avoid_buggy_ips
    assert not config.pools[0].auto_assign
    assert config.pools[0].labels == {"zone": "a"}
    assert config.advertisements == (L2Advertisement("l2", "default", ("lan",), (), ("eth0",)),)
    assert len(config.errors) == 2
    assert any(e.startswith("broken.yaml") for e in config.errors)
    assert any("badpool.yaml" in e and "not-an-ip" in e for e in config.errors)
