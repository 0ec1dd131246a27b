"""The remote JWKS cache: fetched in the background, refreshed, kept across failures.

A fake pool stands in for the upstream: it answers from a list the test
changes, and counts what it was asked. Time is trio's autojump clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import pytest
import trio
import trio.testing

from edgegw import ir
from edgegw.net.jwks import MAX_JWKS_BYTES, JWKSStore
from edgegw.net.upstream import UpstreamError, UpstreamPool
from edgegw.policy.jwt import remote_id
from edgegw.proto.events import DataReceived, MessageEnded, ResponseReceived

EC_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "kIRVgSVHJH7-l71m1IupfrD9K01N6Cyp8h_JPA0pONA",
    "y": "Qr4UyePNqz7Teh2i4-UZQ7_rZ-jMmyzGeCYz0UMM_18",
}


def jwks(*kids: str) -> bytes:
    return json.dumps({"keys": [{**EC_JWK, "kid": kid} for kid in kids]}).encode()


@dataclass
class _Reply:
    status: int
    body: bytes

    def __post_init__(self) -> None:
        self.head = ResponseReceived(
            status_code=self.status,
            reason=b"",
            headers=(),
            http_version=b"1.1",
            keep_alive=True,
            content_length=len(self.body),
            chunked=False,
            body_expected=True,
        )
        self._events: list[Any] = [DataReceived(self.body), MessageEnded()]

    async def next_event(self) -> Any:
        return self._events.pop(0)

    def pending(self) -> bool:
        return False


class FakePool:
    """Answers each exchange with ``answer`` (status, body) or raises it."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes] | Exception = (200, jwks("k1"))
        self.asked: list[tuple[bytes, bytes, list[tuple[bytes, bytes]]]] = []
        self.stall = False

    def choose(self, backend: ir.Backend) -> ir.Endpoint | None:
        return backend.endpoints[0]

    async def exchange(
        self, endpoint: Any, backend: Any, head: Any, body: Any, deliver: Any
    ) -> Any:
        self.asked.append(head)
        if self.stall:
            await trio.sleep_forever()
        if isinstance(self.answer, Exception):
            raise self.answer
        return await deliver(_Reply(*self.answer))


def remote(**changes: Any) -> ir.RemoteJWKS:
    backend = ir.Backend(name="jwks", endpoints=(ir.Endpoint(address="192.0.2.1", port=80),))
    fields: dict[str, Any] = {
        "uri": "http://idp.example.com/keys?v=1",
        "backend": backend,
        "host": "idp.example.com",
        "target": "/keys?v=1",
    }
    return ir.RemoteJWKS(**{**fields, **changes})


async def _until(predicate: Any) -> None:
    while not predicate():
        await trio.sleep(0.05)  # virtual time: the autojump clock


def kids(store: JWKSStore, config: ir.RemoteJWKS) -> list[str | None] | None:
    keys = store.keys(remote_id(config))
    return None if keys is None else [k.kid for k in keys]


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_fetched_cached_and_refreshed(clock: trio.testing.MockClock) -> None:
    pool, config = FakePool(), remote(cache_duration=300.0)
    fetches: list[tuple[str, str]] = []
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            store = JWKSStore(cast(UpstreamPool, pool), nursery, lambda *a: fetches.append(a))
            assert kids(store, config) is None  # nothing before the first fetch: fail closed
            store.reconcile([config, config])
            await _until(lambda: kids(store, config) == ["k1"])
            method, target, fields = pool.asked[0]
            assert (method, target) == (b"GET", b"/keys?v=1")
            assert (b"host", b"idp.example.com") in fields
            pool.answer = (200, jwks("k2"))
            start = trio.current_time()
            await _until(lambda: kids(store, config) == ["k2"])
            assert trio.current_time() - start == pytest.approx(300, abs=1)  # cacheDuration
            assert len(pool.asked) == 2
            assert fetches == [(config.uri, "success")] * 2
            nursery.cancel_scope.cancel()


async def test_unknown_kid_refetches_at_most_every_five_seconds(
    clock: trio.testing.MockClock,
) -> None:
    pool, config = FakePool(), remote()
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            store = JWKSStore(cast(UpstreamPool, pool), nursery)
            store.reconcile([config])
            await _until(lambda: kids(store, config) == ["k1"])
            first = trio.current_time()
            pool.answer = (200, jwks("k1", "k2"))
            for _ in range(50):  # a client inventing kids
                store.unknown_kid(remote_id(config))
            await _until(lambda: kids(store, config) == ["k1", "k2"])
            assert trio.current_time() - first == pytest.approx(5, abs=0.1)
            await trio.sleep(60)
            assert len(pool.asked) == 2
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "failure",
    [
        (500, b"oops"),
        (200, b"<html>"),
        (200, b"x" * (MAX_JWKS_BYTES + 1)),
        UpstreamError("refused"),
        OSError("anything else the exchange raises"),
        "stall",
    ],
)
async def test_failures_keep_the_keys_and_retry(
    clock: trio.testing.MockClock, failure: Any
) -> None:
    pool, config = FakePool(), remote(failed_refetch=2.0, cache_duration=10.0, timeout=3.0)
    results: list[str] = []
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            store = JWKSStore(cast(UpstreamPool, pool), nursery, lambda u, r: results.append(r))
            store.reconcile([config])
            await _until(lambda: kids(store, config) == ["k1"])
            if failure == "stall":
                pool.stall = True
            else:
                pool.answer = failure
            await _until(lambda: results.count("failure") == 2)
            assert kids(store, config) == ["k1"]  # still the old keys
            pool.stall, pool.answer = False, (200, jwks("k3"))
            await _until(lambda: kids(store, config) == ["k3"])
            nursery.cancel_scope.cancel()


async def test_reconcile_forgets_what_is_gone(clock: trio.testing.MockClock) -> None:
    pool, one, two = FakePool(), remote(), remote(uri="http://other.example.com/keys")
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            store = JWKSStore(cast(UpstreamPool, pool), nursery)
            store.reconcile([one, two])
            await _until(lambda: kids(store, one) == kids(store, two) == ["k1"])
            store.reconcile([two])
            assert kids(store, one) is None
            asked = len(pool.asked)
            await trio.sleep(1000)
            assert len(pool.asked) == asked + 3  # only ``two``, every 300 s
            nursery.cancel_scope.cancel()
