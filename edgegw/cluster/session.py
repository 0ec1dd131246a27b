"""One speaker's membership in the cluster: its lease, its view of etcd, and its claims.

Theory of operation
-------------------
Three tasks share one `Session`:

- `_keep_lease` grants a lease of ``--lease-ttl`` seconds and renews it every TTL/3.
  ``renewed_at`` is when the last successful renewal was *sent*: etcd renewed the lease after
  that moment, so the lease lives at least until ``renewed_at + TTL``. The node counts as
  `healthy` only until ``renewed_at + TTL - margin``; past that it announces nothing, so it has
  stopped answering before etcd can expire its lease and let another node claim the address.
  A renewal that answers TTL 0 means the lease is gone: a new one is granted at once.
- `_mirror` reads every key under ``edgegw/`` and then watches them from the next revision, so
  ``kvs`` is etcd's state as of the last event. Whenever the client has moved to another member
  (a renewal or any call failed over), the mirror restarts there: a watch on a member whose
  host vanished would otherwise wait forever, seeing nothing.
- `_act` runs `election.decide` whenever anything changed (and at the health deadline), then
  writes the member key, claims and releases, and calls ``on_change`` so the speaker re-reads
  `announced`. Claims are transactions on the owner key's absence, so they are safe to race.

A gateway (``edgegw run --cluster``) runs a session with ``speaker=False``: the same lease and
view, without a member key or claims; `edgegw.cluster.shared` builds on it.

`revoke` (on SIGTERM, after the speaker stopped answering) revokes the lease: the member and
owner keys vanish at once and the next node takes over within a watch round trip.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import msgspec
import trio

from edgegw.cluster import keys
from edgegw.cluster.election import Owner, Plan, decide
from edgegw.net.etcd import (
    Compare,
    Delete,
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    Event,
    KeyValue,
    Put,
)

log = logging.getLogger(__name__)

RETRY = 0.25
SETTLE = 0.5
"""A node that just joined (or just became able to announce) waits this long before claiming,
so that nodes starting together see each other and the hash ranking spreads the addresses
instead of the first one taking them all."""


@dataclass(slots=True)
class Session:
    """This node's lease and view of the cluster; see the module docstring."""

    client: EtcdClient
    node: str
    ttl: int = 2
    speaker: bool = True
    on_change: Callable[[], None] = lambda: None
    lease: int = 0
    renewed_at: float = -math.inf
    eligible: frozenset[str] = frozenset()
    kvs: dict[bytes, KeyValue] = field(default_factory=dict)
    synced: bool = False
    unowned_since: dict[str, float] = field(default_factory=dict)
    _registered: tuple[int, frozenset[str]] | None = None
    _wake: trio.Event = field(default_factory=trio.Event)
    _resync: trio.CancelScope | None = None
    _lease_error: str = ""
    _joined_at: float = math.inf
    _eligible_since: float = math.inf
    _watching: str = ""

    @property
    def margin(self) -> float:
        """How long before its lease can expire a node stops answering."""
        return max(0.2, self.ttl * 0.15)

    def healthy(self, now: float | None = None) -> bool:
        """Whether etcd certainly still holds our lease."""
        now = trio.current_time() if now is None else now
        return bool(self.lease) and now < self.renewed_at + self.ttl - self.margin

    def members(self) -> dict[str, frozenset[str]]:
        """Every live member and the addresses it can announce."""
        found = {}
        for key, kv in self.kvs.items():
            if key.startswith(keys.MEMBERS):
                value = _member_value(kv.value)
                found[key[len(keys.MEMBERS) :].decode()] = frozenset(value.addresses)
        return found

    def owners(self) -> dict[str, Owner]:
        """Every owned address and its owner key."""
        return {
            key[len(keys.OWNERS) :].decode(): Owner(kv.value.decode(errors="replace"), kv.lease)
            for key, kv in self.kvs.items()
            if key.startswith(keys.OWNERS)
        }

    def plan(self, now: float | None = None) -> Plan:
        """This node's part now (`election.decide` on the current view)."""
        now = trio.current_time() if now is None else now
        owners = self.owners()
        for address in list(self.unowned_since):
            if address in owners or address not in self.eligible:
                del self.unowned_since[address]
        for address in self.eligible - set(owners):
            self.unowned_since.setdefault(address, now)
        settled = self._settled_at()  # a rank's stagger counts from when it may claim
        return decide(
            self.node,
            self.lease,
            healthy=self.synced and self.healthy(now),
            eligible=self.eligible,
            members=self.members(),
            owners=owners,
            unowned_for={a: now - max(t, settled) for a, t in self.unowned_since.items()},
        )

    def _settled_at(self) -> float:
        """When this node may start claiming (a rank's stagger counts from then on)."""
        return max(self._joined_at, self._eligible_since) + SETTLE

    def announced(self) -> frozenset[str]:
        """The addresses this node should answer for right now."""
        return self.plan().announce

    def set_eligible(self, addresses: frozenset[str]) -> None:
        """The addresses this node can announce (its gateway holds them, an ad selects them)."""
        if addresses != self.eligible:
            if not self.eligible:
                self._eligible_since = trio.current_time()
            self.eligible = addresses
            self._wake.set()

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Keep the lease, the view and the claims until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep_lease)
            nursery.start_soon(self._mirror)
            nursery.start_soon(self._act)
            task_status.started()
            await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def revoke(self) -> None:
        """Give everything up at once (call after the speaker stopped answering)."""
        lease, self.lease = self.lease, 0
        if lease:
            try:
                await self.client.revoke(lease)
                log.info("lease revoked: addresses handed over")
            except EtcdError as exc:
                log.warning("cannot revoke the lease (%s); it expires in %d s", exc, self.ttl)

    # --- the lease ------------------------------------------------------------------------

    async def _keep_lease(self) -> NoReturn:
        while True:
            sent = trio.current_time()
            try:
                await self._renew(sent)
            except EtcdError as exc:
                self._lease_failed(str(exc))
            if self._resync is not None and self._watching != self.client.endpoint:
                self._resync.cancel()  # the watch may hang on the member left behind
            await trio.sleep_until(sent + self.ttl / 3)

    async def _renew(self, sent: float) -> None:
        was_healthy = self.healthy(sent)
        if not self.lease:
            self.lease, granted = await self.client.grant(self.ttl)
            self._joined_at = sent
            if granted > self.ttl:  # etcd's minimum: the lease lives longer, so count on that
                log.warning(
                    "%s: etcd grants leases of %d s at least, not %d s (its minimum is 1.5 "
                    "election timeouts); using %d s", self.node, granted, self.ttl, granted,
                )  # fmt: skip
                self.ttl = granted
            log.info("%s: joined the cluster (lease %x)", self.node, self.lease)
        elif await self.client.keepalive(self.lease, per_try=self.ttl / 3) <= 0:
            log.warning("%s: lease %x expired; joining again", self.node, self.lease)
            self.lease, self.renewed_at = 0, -math.inf
            self._wake.set()
            return await self._renew(trio.current_time())
        self.renewed_at = sent
        if self._lease_error:
            log.info("%s: etcd reachable again", self.node)
            self._lease_error = ""
        if not was_healthy:
            self._wake.set()

    def _lease_failed(self, error: str) -> None:
        if not self._lease_error:
            log.warning("%s: cannot renew the lease: %s", self.node, error)
        self._lease_error = error

    # --- the view -------------------------------------------------------------------------

    async def _mirror(self) -> NoReturn:
        while True:
            with trio.CancelScope() as self._resync:
                try:
                    revision, kvs = await self.client.range(keys.PREFIX, prefix=True)
                    self.kvs = {kv.key: kv for kv in kvs}
                    self.synced = True
                    self._wake.set()
                    self._watching = self.client.endpoint
                    async for events in self.client.watch(keys.PREFIX, revision + 1):
                        self._apply_events(events)
                except EtcdCompacted:
                    continue
                except EtcdError as exc:
                    log.debug("cannot read etcd: %s", exc)
            await trio.sleep(RETRY)

    def _apply_events(self, events: list[Event]) -> None:
        for event in events:
            known = self.kvs.get(event.kv.key)
            if known is not None and known.mod_revision > event.kv.mod_revision:
                continue  # our own write, recorded before its event arrived
            if event.type == "DELETE":
                self.kvs.pop(event.kv.key, None)
            else:
                self.kvs[event.kv.key] = event.kv
        self._wake.set()

    # --- acting ---------------------------------------------------------------------------

    async def _act(self) -> NoReturn:
        while True:
            self._wake = trio.Event()
            retry = False
            try:
                await self._carry_out(self.plan())
            except EtcdError as exc:
                log.debug("cannot write to etcd: %s", exc)
                retry = True
            self.on_change()
            await self._sleep(retry)

    async def _sleep(self, retry: bool) -> None:
        deadline = math.inf
        if self.healthy():
            deadline = self.renewed_at + self.ttl - self.margin
        if retry or self.unowned_since:
            deadline = min(deadline, trio.current_time() + RETRY)
        with trio.move_on_at(deadline):
            await self._wake.wait()

    async def _carry_out(self, plan: Plan) -> None:
        if not self.lease or not self.synced or not self.speaker:
            return
        await self._register()
        settled = trio.current_time() >= self._settled_at()
        for address in plan.claim if settled else ():
            await self._claim(address)
        for address, owner in plan.release:
            key = keys.owner_key(address)
            await self.client.txn([Compare(key, "LEASE", owner.lease)], [Delete(key)])
            log.info("%s: released %s", self.node, address)

    async def _register(self) -> None:
        wanted = (self.lease, self.eligible)
        if self._registered == wanted:
            return
        value = msgspec.json.encode(keys.MemberValue(tuple(sorted(self.eligible))))
        await self.client.put(keys.member_key(self.node), value, lease=self.lease)
        self._registered = wanted

    async def _claim(self, address: str) -> None:
        key, lease = keys.owner_key(address), self.lease
        put = Put(key, self.node.encode(), lease)
        result = await self.client.txn([Compare(key, "CREATE", 0)], [put])
        if result.succeeded:
            self.kvs[key] = KeyValue(key, put.value, lease, result.revision, result.revision)
            log.info("%s: took %s", self.node, address)


def _member_value(raw: bytes) -> keys.MemberValue:
    try:
        return msgspec.json.decode(raw, type=keys.MemberValue)
    except msgspec.DecodeError:
        return keys.MemberValue()
