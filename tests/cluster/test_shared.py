"""`ClusterLink` on a real etcd: one allocator writes, every gateway adopts the same addresses."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import trio

from edgegw.cluster.session import Session
from edgegw.cluster.shared import AllocationMap, ClusterLink
from edgegw.net.etcd import EtcdClient
from tests.etcdrig import EtcdRig


async def test_the_allocators_record_is_what_every_gateway_adopts(etcd: EtcdRig) -> None:
    url = [etcd.members[0].client_url]
    tag = uuid.uuid4().hex[:6]
    adopted: dict[str, list[AllocationMap]] = {"a": [], "b": []}

    def adopter(name: str) -> Callable[[AllocationMap], Awaitable[None]]:
        async def adopt(allocations: AllocationMap) -> None:
            adopted[name].append(allocations)

        return adopt

    with trio.fail_after(20):
        async with EtcdClient(url) as c1, EtcdClient(url) as c2, trio.open_nursery() as nursery:
            first = ClusterLink(Session(c1, f"a-{tag}", speaker=False), adopter("a"))
            await nursery.start(first.serve)
            await first.wait_synced()
            while not first.is_allocator():
                await trio.sleep(0.02)
            # History made "web" first: it holds the lowest address although "api" sorts first.
            history = {("default", "web"): ("192.0.2.100",), ("default", "api"): ("192.0.2.101",)}
            await first.publish(history)

            second = ClusterLink(Session(c2, f"b-{tag}", speaker=False), adopter("b"))
            await nursery.start(second.serve)
            await second.wait_synced()
            assert second.adopted == history  # what a fresh gateway starts from
            assert not second.is_allocator()
            await second.publish({("default", "api"): ("192.0.2.100",)})  # not its to write
            assert first.shared_allocations() == history

            status = second.status()
            assert status["allocator"] == f"a-{tag}"
            await first.session.revoke()  # the allocator leaves: the other takes the role
            while not second.is_allocator():
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
