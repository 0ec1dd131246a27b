"""The gateway's side of ``--cluster``: pool allocations shared through etcd, and its status.

Theory of operation
-------------------
Every node allocates pool addresses itself (`edgegw.pools.allocate` is deterministic), but
allocation is stable: what a Gateway held before stays with it. Nodes that started at different
times, or saw Gateways appear in a different order, would then disagree. So one node's gateway
is elected *allocator* (an ``edgegw/allocator`` key bound to its lease, created by a
transaction on its absence) and writes its allocations to ``edgegw/allocations`` after each
reload; every node, the allocator included, adopts what it finds there as its "previous"
allocations and reloads, so each gives a Gateway the same address. A new allocator starts from
the previous one's record, so addresses survive the allocator's death too. Without etcd a node
keeps serving what it has (its state directory) and catches up when etcd returns.

`ClusterLink.status` is the ``cluster`` section of ``/api/status``: per address the node
announcing it, the speakers (members) and whether they are alive, every etcd member's health
and a warning when etcd cannot survive the loss of a member.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import msgspec
import trio

from edgegw.cluster import keys
from edgegw.cluster.certificates import ClusterCertificates
from edgegw.cluster.session import Session
from edgegw.net.etcd import Compare, EtcdError, Put

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 5.0
SYNC_WAIT = 2.0
GatewayKey = tuple[str, str]
AllocationMap = dict[GatewayKey, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class EtcdMemberHealth:
    """One etcd member as last probed."""

    name: str
    endpoint: str
    healthy: bool
    leader: bool = False
    version: str = ""


@dataclass(slots=True)
class ClusterLink:
    """The gateway's lease, its allocator campaign and its view of the cluster."""

    session: Session
    adopt: Callable[[AllocationMap], Awaitable[None]]
    adopted: AllocationMap | None = None
    seen_members: set[str] = field(default_factory=set)
    etcd_members: tuple[EtcdMemberHealth, ...] = ()
    certificates: ClusterCertificates | None = None
    _changed: trio.Event = field(default_factory=trio.Event)
    _ready: trio.Event = field(default_factory=trio.Event)

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Keep the session, campaign, adopt and probe etcd's health until cancelled."""
        self.session.on_change = self._wake
        async with trio.open_nursery() as nursery:
            await nursery.start(self.session.serve)
            nursery.start_soon(self._probe_health)
            task_status.started()
            while True:
                await self._changed.wait()
                self._changed = trio.Event()
                if self.session.synced and self.session.lease:
                    self._ready.set()
                try:
                    await self._step()
                except EtcdError as exc:
                    log.debug("cluster step: %s", exc)

    def _wake(self) -> None:
        self._changed.set()

    async def wait_synced(self) -> None:
        """Wait briefly for the first view of etcd (so the first reload uses it)."""
        with trio.move_on_after(SYNC_WAIT):
            await self._ready.wait()
        found = self.shared_allocations()
        if found is not None:
            self.adopted = found

    async def _step(self) -> None:
        session = self.session
        self.seen_members |= set(session.members())
        if session.lease and session.healthy() and keys.ALLOCATOR not in session.kvs:
            put = Put(keys.ALLOCATOR, session.node.encode(), session.lease)
            result = await session.client.txn([Compare(keys.ALLOCATOR, "CREATE", 0)], [put])
            if result.succeeded:
                log.info("%s: this gateway writes the pool allocations", session.node)
        if self.certificates is not None:
            await self.certificates.step()
        found = self.shared_allocations()
        if found is not None and found != self.adopted:
            self.adopted = found
            await self.adopt(found)

    def is_allocator(self) -> bool:
        kv = self.session.kvs.get(keys.ALLOCATOR)
        session = self.session
        return (
            kv is not None
            and kv.value == session.node.encode()
            and kv.lease == session.lease
            and session.healthy()
        )

    def shared_allocations(self) -> AllocationMap | None:
        """What ``edgegw/allocations`` holds, or None when absent or unreadable."""
        kv = self.session.kvs.get(keys.ALLOCATIONS)
        if kv is None:
            return None
        try:
            record = msgspec.json.decode(kv.value, type=keys.Allocations)
        except msgspec.DecodeError:
            log.warning("edgegw/allocations in etcd is not readable; ignoring it")
            return None
        return {(g.namespace, g.name): g.addresses for g in record.gateways}

    async def publish(self, allocations: Mapping[GatewayKey, Sequence[str]]) -> None:
        """After a reload: the allocator writes its allocations when etcd's differ."""
        mine = {k: tuple(v) for k, v in allocations.items()}
        if not self.is_allocator() or mine == self.shared_allocations():
            return
        entries = tuple(
            keys.GatewayAllocation(ns, name, mine[(ns, name)]) for ns, name in sorted(mine)
        )
        value = msgspec.json.encode(keys.Allocations(self.session.node, entries))
        try:
            await self.session.client.put(keys.ALLOCATIONS, value)
            self.adopted = mine
        except EtcdError as exc:
            log.warning("cannot write the pool allocations to etcd: %s", exc)

    # --- status ---------------------------------------------------------------------------

    async def _probe_health(self) -> NoReturn:
        client = self.session.client
        while True:
            try:
                members = await client.members()
            except EtcdError as exc:
                log.debug("etcd member list: %s", exc)
                members = []
            found = []
            for member in members:
                if member.isLearner or not member.clientURLs:
                    continue
                url = member.clientURLs[0]
                try:
                    status = await client.status(url)
                except EtcdError:
                    found.append(EtcdMemberHealth(member.name, url, healthy=False))
                    continue
                leader = status.leader == member.ID
                found.append(EtcdMemberHealth(member.name, url, True, leader, status.version))
            if found or not self.etcd_members:
                self.etcd_members = tuple(found)
            await trio.sleep(HEALTH_INTERVAL)

    def status(self) -> dict[str, Any]:
        """The ``cluster`` section of ``/api/status``."""
        session = self.session
        members = session.members()
        allocator = session.kvs.get(keys.ALLOCATOR)
        return {
            "node": session.node,
            "etcdReachable": session.healthy(),
            "allocator": allocator.value.decode(errors="replace") if allocator else None,
            "certificateOrderer": self.certificates.orderer() if self.certificates else None,
            "addresses": [
                {"address": a, "node": o.node} for a, o in sorted(session.owners().items())
            ],
            "members": [
                {
                    "name": name,
                    "healthy": name in members,
                    "addresses": sorted(members.get(name, ())),
                }
                for name in sorted(self.seen_members | set(members))
            ],
            "etcd": [
                {"name": m.name, "endpoint": m.endpoint, "healthy": m.healthy, "leader": m.leader}
                for m in self.etcd_members
            ],
            "warnings": warnings(self.etcd_members),
        }


def warnings(etcd_members: Sequence[EtcdMemberHealth]) -> list[str]:
    """What an operator should know about the cluster's ability to survive a loss."""
    found = []
    voters = len(etcd_members)
    if voters and voters < 3:
        found.append(
            f"etcd has {voters} voting member{'s' if voters > 1 else ''}: losing one stops "
            "every failover (a majority is needed); three members survive the loss of one"
        )
    down = [m.name for m in etcd_members if not m.healthy]
    if down:
        found.append(f"etcd member{'s' if len(down) > 1 else ''} not answering: {', '.join(down)}")
    return found
