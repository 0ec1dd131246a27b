"""Balancing and passive health of the upstream pool."""

from __future__ import annotations

import pytest
import trio

from edgegw import ir
from edgegw.net.upstream import ConnectError, UpstreamPool

ENDPOINTS = tuple(ir.Endpoint(address="127.0.0.1", port=p) for p in (1, 2, 3))
BACKEND = ir.Backend(name="b", endpoints=ENDPOINTS)


def test_round_robin_visits_every_endpoint() -> None:
    pool = UpstreamPool(policy="round_robin", clock=lambda: 0.0)
    assert {pool.choose(BACKEND) for _ in range(3)} == set(ENDPOINTS)


def test_least_request_avoids_the_busy_endpoint() -> None:
    pool = UpstreamPool(clock=lambda: 0.0)
    busy = ENDPOINTS[0]
    pool._state(("ip", busy.address, busy.port, None)).in_flight = 5
    assert busy not in {pool.choose(BACKEND) for _ in range(10)}


async def test_refused_endpoint_is_ejected_then_retried_after_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dead = ir.Endpoint(address="127.0.0.1", port=1)
    backend = ir.Backend(name="b", endpoints=(dead,))
    pool = UpstreamPool()
    with trio.fail_after(100):
        with pytest.raises(ConnectError):
            await pool.acquire(dead, backend)
        assert pool.is_ejected(dead, backend)
        assert pool.in_flight(dead, backend) == 0
        await trio.sleep(5.1)
        assert not pool.is_ejected(dead, backend)
        with pytest.raises(ConnectError):
            await pool.acquire(dead, backend)
        await trio.sleep(5.1)
        assert pool.is_ejected(dead, backend), "the second ejection lasts longer (10 s)"


def test_all_ejected_still_gives_an_endpoint() -> None:
    pool = UpstreamPool(clock=lambda: 0.0)
    for endpoint in ENDPOINTS:
        pool._eject(pool._state(("ip", endpoint.address, endpoint.port, None)))
    assert pool.choose(BACKEND) in ENDPOINTS
