"""circuitBreaker ``perEndpoint.maxConnections`` and ``retryBudget``: the breaker's counts."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from edgegw import ir
from edgegw.net.clusters import Breaker
from edgegw.net.connection import Overflow

A, B = (ir.Endpoint(address=f"192.0.2.{i}", port=80) for i in (1, 2))


async def test_per_endpoint_connections_queue_only_that_endpoint(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = Breaker(ir.CircuitBreaker(per_endpoint_max_connections=1, max_pending_requests=1))
    with trio.fail_after(30):
        await breaker.enter(True, 5.0, A)  # A's one connection
        await breaker.enter(True, 5.0, B)  # B has its own
        entered = trio.Event()

        async def second_to_a() -> None:
            await breaker.enter(True, 5.0, A)
            entered.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second_to_a)
            await trio.testing.wait_all_tasks_blocked()
            assert breaker.pending == 1
            with pytest.raises(Overflow):
                await breaker.enter(True, 5.0, A)  # one pending at most
            breaker.leave(True, B)  # B's connection back: A's waiter stays
            await trio.testing.wait_all_tasks_blocked()
            assert not entered.is_set()
            breaker.leave(True, A)
            await entered.wait()
        assert breaker.per_endpoint == {A: 1}
        breaker.leave(True, A)
        assert breaker.per_endpoint == {}
        assert breaker.overflows == {"maxPendingRequests": 1}


async def test_per_endpoint_wait_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    breaker = Breaker(ir.CircuitBreaker(per_endpoint_max_connections=0))
    with trio.fail_after(30), pytest.raises(Overflow):
        await breaker.enter(True, 2.0, A)
    assert breaker.requests == breaker.pending == 0


async def test_retry_budget_scales_with_requests_in_flight() -> None:
    breaker = Breaker(ir.CircuitBreaker(retry_budget_percent=20.0, retry_budget_min_concurrency=2))
    assert breaker.start_retry()
    assert breaker.start_retry()
    assert not breaker.start_retry()  # the minimum with nothing in flight
    for _ in range(15):
        await breaker.enter(False, 1.0)
    assert breaker.start_retry()  # 20 % of 15 is 3
    assert not breaker.start_retry()
    assert breaker.overflows == {"retryBudget": 2}


def test_retry_budget_replaces_max_parallel_retries() -> None:
    breaker = Breaker(
        ir.CircuitBreaker(
            max_parallel_retries=0, retry_budget_percent=0.0, retry_budget_min_concurrency=1
        )
    )
    assert breaker.start_retry()
    assert not breaker.start_retry()
