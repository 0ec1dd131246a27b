"""Two `Session`s on one real etcd: one owner per address, handover on revoke, health."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable

import trio

from edgegw.cluster.election import rank
from edgegw.cluster.session import Session
from edgegw.net.etcd import EtcdClient
from tests.etcdrig import EtcdRig


async def wait_until(check: Callable[[], object], what: str) -> None:
    while not check():
        await trio.sleep(0.02)


async def test_one_owner_then_handover_on_revoke(etcd: EtcdRig) -> None:
    address = f"192.0.2.{uuid.uuid4().int % 100 + 100}"
    tag = uuid.uuid4().hex[:6]
    names = [f"a-{tag}", f"b-{tag}"]
    first, second = rank(address, names)
    url = [etcd.members[0].client_url]
    with trio.fail_after(20):
        async with EtcdClient(url) as c1, EtcdClient(url) as c2, trio.open_nursery() as nursery:
            sessions = {first: Session(c1, first), second: Session(c2, second)}
            for session in sessions.values():
                session.set_eligible(frozenset({address}))
                await nursery.start(session.serve)
            await wait_until(lambda: sessions[first].announced() == {address}, "first owns")
            assert sessions[second].announced() == frozenset()
            await wait_until(lambda: first in sessions[second].members(), "membership seen")

            revoked = trio.current_time()
            await sessions[first].revoke()
            await wait_until(lambda: sessions[second].announced() == {address}, "handover")
            assert trio.current_time() - revoked < 1.0
            assert sessions[first].announced() == frozenset()
            nursery.cancel_scope.cancel()


async def test_healthy_only_while_the_lease_cannot_have_expired(etcd: EtcdRig) -> None:
    async with EtcdClient([etcd.members[0].client_url]) as client:
        session = Session(client, "n", ttl=2)
        assert not session.healthy(0.0)
        session.lease, session.renewed_at = 1, 10.0
        assert session.healthy(10.0 + 2 - session.margin - 0.01)
        assert not session.healthy(10.0 + 2 - session.margin)
        session.renewed_at = -math.inf
        assert not session.healthy(10.0)


async def test_a_ttl_under_etcds_minimum_counts_on_what_etcd_grants(etcd: EtcdRig) -> None:
    """etcd (election timeout 1 s here) grants 2 s at least: health must use the 2 s."""
    with trio.fail_after(10):
        async with EtcdClient([etcd.members[0].client_url]) as client, trio.open_nursery() as n:
            session = Session(client, f"short-{uuid.uuid4().hex[:6]}", ttl=1, speaker=False)
            await n.start(session.serve)
            await wait_until(lambda: session.lease, "a lease")
            assert session.ttl == 2
            await session.revoke()
            n.cancel_scope.cancel()
