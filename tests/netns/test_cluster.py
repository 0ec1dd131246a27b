"""Three nodes, one set of addresses: L2 failover coordinated by a three-member etcd.

Each node runs an etcd member, ``edgegw run --cluster`` and ``edgegw l2 --cluster`` in its own
namespace; a client namespace watches ARP and asks over HTTP all the time (see
`cluster_rig.Watch`). One cluster serves every test of this module, in order; a test that
kills a node brings it back before it ends. Each test asserts what a user would check: one
node answers for each address, a dead node's addresses reach another node within the lease
TTL plus 1 s, SIGTERM hands over within 1 s, a returning node moves nothing, and no ARP request
is ever answered by two nodes. The measured figures are printed (``pytest -s``).
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from .cluster_rig import TTL, Cluster, Node, Watch, ndp_answers, run, wait_for
from .conftest import REPO, _netns_usable

pytestmark = pytest.mark.netns

GATEWAYS = {"g1": "{}", "g2": "{}", "g6": "{metallb.io/address-pool: lan6}"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    reason = _netns_usable()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="egc-"))
    cluster = Cluster(uuid.uuid4().hex[:6], root)
    try:
        cluster.build_network()
        cluster.write_config(GATEWAYS)
        cluster.etcd.start_all()
        for node in cluster.nodes.values():
            cluster.start_node(node)
        for node in cluster.nodes.values():
            wait_for(partial(settled, cluster, node), 30, f"{node.name} to see the cluster")
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop_all()
        cluster.teardown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def up(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The shared cluster with every node up; its logs printed when the test fails."""
    for node in cluster.nodes.values():
        if not node.processes:
            bring_back(cluster, node)
    failed = request.session.testsfailed
    yield cluster
    if request.session.testsfailed > failed:
        print(cluster.logs())
        print(cluster.etcd.etcdctl("get", "--prefix", "edgegw/", "-w", "json"))
        print(cluster.etcd.etcdctl("endpoint", "status", "-w", "table"))


def settled(cluster: Cluster, via: Node) -> bool:
    """``via`` sees three live speakers and an owner for each of the three addresses."""
    return len(cluster.live_members(via)) == 3 and len(cluster.owners(via)) == 3


def answered_requests(watch: Watch, address: str, count: int) -> bool:
    return sum(1 for r in watch.arp_answers if watch.arp_asked[r] == address) >= count


def addresses(cluster: Cluster, via: Node) -> dict[str, str]:
    """Gateway name → its address, as ``via``'s gateway holds it."""
    found = {}
    for resource in cluster.status(via)["resources"]:
        if resource["kind"] == "Gateway":
            held = resource.get("status", {}).get("addresses", [])
            found[resource["metadata"]["name"]] = held[0]["value"] if held else ""
    return found


def owner_of(cluster: Cluster, address: str, *, besides: Node | None = None) -> Node:
    via = next(n for n in cluster.nodes.values() if n is not besides and n.processes)
    return cluster.nodes[cluster.owners(via)[address]]


def others(cluster: Cluster, node: Node) -> list[Node]:
    return [n for n in cluster.nodes.values() if n is not node]


def neighbour_mac(cluster: Cluster, address: str) -> str:
    return run("ip", "-n", cluster.client_ns, "neigh", "show", address)


def report(name: str, text: str) -> None:
    print(f"\n[{name}] {text}")


def bring_back(cluster: Cluster, node: Node) -> None:
    cluster.reboot(node)
    for other in cluster.nodes.values():
        wait_for(partial(settled, cluster, other), 30, f"{node.name} back, seen by {other.name}")


def test_every_address_has_exactly_one_announcer(up: Cluster) -> None:
    cluster = up
    n1 = cluster.nodes["n1"]
    held = addresses(cluster, n1)
    assert set(held) == set(GATEWAYS)
    for node in cluster.nodes.values():  # allocations shared: every node, the same address
        assert addresses(cluster, node) == held
    owners = cluster.owners(n1)
    assert set(owners) == set(held.values())
    for node in cluster.nodes.values():
        assert cluster.owners(node) == owners

    v4 = [held["g1"], held["g2"]]
    with Watch(cluster, v4) as watch:
        for address in v4:
            wait_for(partial(watch.served_by, address, owners[address], 0), 10, address)
            wait_for(partial(answered_requests, watch, address, 5), 10, f"ARP for {address}")
    for address in v4:
        answered = {
            mac for r, macs in watch.arp_answers.items() if watch.arp_asked[r] == address
            for mac in macs
        }  # fmt: skip
        assert answered == {cluster.nodes[owners[address]].mac}, address
    assert watch.double_answers() == []
    v6 = held["g6"]
    assert ndp_answers(cluster, v6) == {cluster.nodes[owners[v6]].mac}

    cluster_status = cluster.status(n1)["cluster"]
    assert cluster_status["allocator"] in cluster.nodes
    assert [m["healthy"] for m in cluster_status["members"]] == [True, True, True]
    assert len(cluster_status["etcd"]) == 3
    assert cluster_status["warnings"] == []
    table = subprocess.run(
        [sys.executable, "-m", "edgegw", "status", "--admin", n1.admin],
        capture_output=True, text=True, timeout=30, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout  # fmt: skip
    for address, name in owners.items():
        assert any(line.split() == [address, name] for line in table.splitlines()), table


def new_server(watch: Watch, cluster: Cluster, old: Node, address: str, since: float) -> Node:
    """The node other than ``old`` that answered HTTP for ``address`` after ``since``."""
    found: Node | None = wait_for(
        lambda: next(
            (n for n in others(cluster, old) if watch.served_by(address, n.name, since)), None
        ),
        15,
        f"HTTP to {address} answered by another node",
    )
    assert found is not None
    return found


def pick(cluster: Cluster, held: dict[str, str], *, on_leader: bool) -> tuple[str, Node]:
    """An IPv4 address and its owner, the owner's etcd member leading or not as asked."""
    leader = cluster.etcd.leader()
    candidates = [(held[g], owner_of(cluster, held[g])) for g in ("g1", "g2")]
    for address, owner in candidates:
        if (owner.etcd is leader) == on_leader:
            return address, owner
    address, owner = candidates[0]
    assert owner.etcd is not None
    target = owner.etcd if on_leader else next(n.etcd for n in others(cluster, owner) if n.etcd)
    cluster.etcd.move_leader(target)
    # A new leader extends every lease by an election timeout; once renewed (every TTL/3)
    # they are back to TTL, and the kill measures a leader's death, not this move.
    time.sleep(TTL / 3 + cluster.etcd.election_ms / 1000)
    return address, owner


def kill_and_measure(cluster: Cluster, *, etcd_leader: bool) -> None:
    held = addresses(cluster, cluster.nodes["n1"])
    address, old = pick(cluster, held, on_leader=etcd_leader)
    other = held["g2"] if address == held["g1"] else held["g1"]
    with Watch(cluster, [address, other]) as watch:
        wait_for(lambda: watch.served_by(address, old.name, 0), 10, "HTTP to the old node")
        killed, killed_at = time.monotonic(), time.time()
        cluster.kill9(old)
        new = new_server(watch, cluster, old, address, killed)
        last_old, first_new = watch.gap(address, old.name, new.name)
        garp = watch.first_garp(address, new.mac, killed)
    assert owner_of(cluster, address, besides=old) is new
    mac = ":".join(f"{b:02x}" for b in new.mac)
    wait_for(lambda: mac in neighbour_mac(cluster, address), 5, "the neighbour entry to move")
    assert watch.double_answers() == []
    gap = first_new - last_old
    assert garp is not None, "no gratuitous ARP from the new node"
    name = "takeover-kill9-etcd-leader" if etcd_leader else "takeover-kill9"
    report(
        name,
        f"{old.name} -> {new.name}: gap {gap:.2f} s (last answer from the old node to first "
        f"from the new), first gratuitous ARP {garp - killed:.2f} s after the kill, "
        f"first answer {first_new - killed:.2f} s after the kill (TTL {TTL} s); "
        + timeline(cluster, old, new, address, killed_at),
    )
    limit: float = TTL + 1
    if etcd_leader:  # found dead after 1-2 election timeouts; the new leader adds one to leases
        limit += 3 * cluster.etcd.election_ms / 1000
    assert first_new - killed <= limit, name
    bring_back(cluster, old)


def _logged_at(line: str) -> float | None:
    """The wall time of an edgegw log line (local time) or an etcd one (zap's JSON, UTC)."""
    match = re.search(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)[.,](\d+)(Z?)", line)
    if match is None:
        return None
    when = datetime.datetime.strptime(f"{match[1]} {match[2]}", "%Y-%m-%d %H:%M:%S")
    if match[4]:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp() + float("0." + match[3])


def _first(path: Path, needle: str, since: float) -> float | None:
    for line in path.read_text(errors="replace").splitlines():
        at = _logged_at(line)
        if at is not None and at >= since and needle in line:
            return at
    return None


def timeline(cluster: Cluster, old: Node, new: Node, address: str, killed_at: float) -> str:
    """Where the time went, from the logs: etcd's election, then the claim of the address."""
    elected = [
        at
        for node in others(cluster, old)
        if node.etcd is not None
        and (at := _first(cluster.etcd.root / f"{node.etcd.name}.log", "became leader", killed_at))
    ]
    took = _first(new.root / "l2.log", f"{new.name}: took {address}", killed_at)
    parts = []
    if elected:
        parts.append(f"etcd leader elected at +{min(elected) - killed_at:.2f} s")
    if took is not None:
        parts.append(f"address claimed at +{took - killed_at:.2f} s")
    return ", ".join(parts) or "no timeline in the logs"


def test_kill9_of_the_announcing_node_moves_the_address(up: Cluster) -> None:
    cluster = up
    kill_and_measure(cluster, etcd_leader=False)


def test_kill9_of_the_node_holding_the_etcd_leader(up: Cluster) -> None:
    cluster = up
    kill_and_measure(cluster, etcd_leader=True)


def test_sigterm_hands_over_at_once_and_the_return_moves_nothing(up: Cluster) -> None:
    cluster = up
    held = addresses(cluster, cluster.nodes["n1"])
    address = held["g2"]
    old = owner_of(cluster, address)
    with Watch(cluster, [address, held["g1"]]) as watch:
        wait_for(lambda: watch.served_by(address, old.name, 0), 10, "HTTP to the old node")
        stopped = time.monotonic()
        assert cluster.sigterm(old, "l2") == 0
        new = new_server(watch, cluster, old, address, stopped)
        last_old, first_new = watch.gap(address, old.name, new.name)
        assert cluster.sigterm(old, "run") == 0
        # Every address of the stopped node has its new owner before it returns.
        before = wait_for(lambda: len(owners := cluster.owners(new)) == 3 and owners, 10, "owners")
        cluster.sigterm(old, "echo")
        cluster.start_node(old)
        for node in cluster.nodes.values():
            wait_for(partial(settled, cluster, node), 30, f"{old.name} back")
        time.sleep(2 * TTL)  # an observation window: a preempting node would have acted by now
        assert cluster.owners(new) == before
        assert cluster.owners(old) == before
        assert watch.served_by(address, new.name, time.monotonic() - 0.5)
    assert watch.double_answers() == []
    report("handover-sigterm", f"{old.name} -> {new.name}: gap {first_new - last_old:.2f} s")
    assert first_new - last_old <= 1.0


def test_a_node_cut_off_from_etcd_withdraws(up: Cluster) -> None:
    cluster = up
    held = addresses(cluster, cluster.nodes["n1"])
    address = held["g1"]
    old = owner_of(cluster, address)
    with Watch(cluster, [address, held["g2"]]) as watch:
        wait_for(lambda: watch.served_by(address, old.name, 0), 10, "HTTP to the old node")
        cut = time.monotonic()
        cluster.cut_from_etcd(old, cut=True)
        try:
            new = new_server(watch, cluster, old, address, cut)
            time.sleep(1)  # an observation window: the cut node stays silent
            recent = {s.node for s in watch.http[address] if s.at > time.monotonic() - 0.5}
            assert recent - {None} == {new.name}  # None: a connection begun before the move
        finally:
            cluster.cut_from_etcd(old, cut=False)
        wait_for(lambda: settled(cluster, old), 30, f"{old.name} rejoining")
        time.sleep(TTL)  # an observation window: a preempting node would have acted by now
        assert cluster.owners(old)[address] == new.name  # no preemption on return
    assert watch.double_answers() == []
    last_old, first_new = watch.gap(address, old.name, new.name)
    report("cut-off", f"{old.name} -> {new.name}: gap {first_new - last_old:.2f} s")
