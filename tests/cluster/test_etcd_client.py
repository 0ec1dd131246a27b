"""`edgegw.net.etcd` against a real etcd 3.4: leases, transactions, keys and the watch stream."""

from __future__ import annotations

import uuid

import pytest
import trio

from edgegw.net.etcd import (
    Compare,
    EtcdClient,
    EtcdUnavailable,
    Get,
    Put,
    parse_cluster,
)
from tests.etcdrig import EtcdRig
from tests.ports import free_port


def unique() -> bytes:
    return f"test/{uuid.uuid4().hex}/".encode()


async def test_lease_grant_keepalive_revoke_takes_its_keys(etcd: EtcdRig) -> None:
    with trio.fail_after(10):
        async with EtcdClient([etcd.members[0].client_url]) as client:
            key = unique() + b"k"
            lease, ttl = await client.grant(2)
            assert lease
            assert ttl == 2
            await client.put(key, b"v", lease=lease)
            assert await client.keepalive(lease) == 2
            _, kvs = await client.range(key)
            assert [(kv.value, kv.lease) for kv in kvs] == [(b"v", lease)]
            await client.revoke(lease)
            assert (await client.range(key))[1] == []
            assert await client.keepalive(lease) == 0  # gone: the caller grants a new one
            await client.revoke(lease)  # revoking a gone lease is not an error


async def test_txn_on_absence_has_one_winner(etcd: EtcdRig) -> None:
    with trio.fail_after(10):
        async with EtcdClient([etcd.members[0].client_url]) as client:
            key = unique() + b"owner"
            winners = []

            async def claim(name: bytes) -> None:
                result = await client.txn([Compare(key, "CREATE", 0)], [Put(key, name)], [Get(key)])
                if result.succeeded:
                    winners.append(name)
                else:
                    assert result.kvs[0].value != name

            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(claim, f"n{i}".encode())
            assert len(winners) == 1
            _, kvs = await client.range(key)
            assert kvs[0].value == winners[0]
            # Compare on the lease: deleting someone else's key does nothing.
            lost = await client.txn([Compare(key, "LEASE", 12345)], [Put(key, b"x")])
            assert not lost.succeeded


async def test_range_prefix_put_delete(etcd: EtcdRig) -> None:
    with trio.fail_after(10):
        async with EtcdClient([etcd.members[0].client_url]) as client:
            base = unique()
            for name in (b"a", b"b", b"c"):
                await client.put(base + name, name * 2)
            await client.put(base[:-1] + b"x", b"outside")  # same text, not under the prefix
            revision, kvs = await client.range(base, prefix=True)
            assert [kv.key for kv in kvs] == [base + b"a", base + b"b", base + b"c"]
            assert revision >= max(kv.mod_revision for kv in kvs)
            await client.delete(base + b"b")
            _, kvs = await client.range(base, prefix=True)
            assert [kv.value for kv in kvs] == [b"aa", b"cc"]


async def test_a_dead_member_is_skipped(etcd: EtcdRig) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with trio.fail_after(10):
        async with EtcdClient([dead, etcd.members[0].client_url], timeout=1) as client:
            lease, _ = await client.grant(2)
            assert lease
            assert client.endpoint == etcd.members[0].client_url
        async with EtcdClient([dead], timeout=0.5) as client:
            with pytest.raises(EtcdUnavailable):
                await client.grant(2)


async def test_watch_streams_and_resumes_after_its_member_restarts(etcd: EtcdRig) -> None:
    member = etcd.members[0]
    with trio.fail_after(40):
        async with EtcdClient([member.client_url], timeout=1) as client:
            base = unique()
            revision, _ = await client.range(base, prefix=True)
            seen: list[tuple[str, bytes]] = []
            first = trio.Event()
            done = trio.Event()

            async def watch() -> None:
                async for events in client.watch(base, revision + 1):
                    seen.extend((e.type, e.kv.key[len(base) :]) for e in events)
                    if len(seen) >= 1:
                        first.set()
                    if len(seen) >= 3:
                        done.set()
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await client.put(base + b"one", b"1")
                await first.wait()
                etcd.kill(member)  # the stream breaks; the watch reconnects and resumes
                etcd.start(member)
                await trio.to_thread.run_sync(etcd.wait_healthy, member)
                await client.put(base + b"two", b"2")
                await client.delete(base + b"one")
                await done.wait()
            assert seen == [("PUT", b"one"), ("PUT", b"two"), ("DELETE", b"one")]


def test_cluster_urls() -> None:
    assert parse_cluster("etcd://a:2379,b:2379") == (["http://a:2379", "http://b:2379"], False)
    assert parse_cluster("etcds://a:2379") == (["https://a:2379"], True)
    for bad in ("http://a:2379", "etcd://", "a:2379"):
        with pytest.raises(ValueError, match="--cluster"):
            parse_cluster(bad)
