"""BackendTrafficPolicy healthCheck and circuitBreaker: the pure state machines.

Outlier detection (consecutive errors, ejection time growth and forgiveness,
max ejection percent), active-check thresholds and judging, the panic rule of
the load balancer's healthy set, and the circuit breaker's counts.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from edgegw import ir
from edgegw.admin.client import render_table
from edgegw.net.clusters import Breaker, Clusters
from edgegw.net.connection import Overflow
from edgegw.policy.activehealth import ActiveRecord, apply, http_outcome, tcp_outcome
from edgegw.policy.outlier import OutlierDetector

A, B, C = (ir.Endpoint(address=f"192.0.2.{i}", port=80) for i in (1, 2, 3))


def _detector(**kw: object) -> OutlierDetector:
    config = ir.PassiveHealthCheck(
        **{"interval": 1.0, "base_ejection_time": 10.0, "max_ejection_percent": 100, **kw}  # type: ignore[arg-type]
    )
    detector = OutlierDetector(config, origin=0.0)
    detector.endpoints = 2
    return detector


# --- passive: outlier detection ----------------------------------------------------------------


def test_consecutive_5xx_eject_at_the_threshold_and_success_resets() -> None:
    d = _detector(consecutive_5xx=3)
    for _ in range(2):
        assert not d.on_status(A, 500, 0.1)
    assert not d.on_status(A, 200, 0.1)  # the run is broken
    assert not d.on_status(A, 500, 0.2)
    assert not d.on_status(A, 501, 0.2)
    assert d.on_status(A, 503, 0.3)
    assert d.is_ejected(A, 0.3)
    assert not d.is_ejected(B, 0.3)


def test_gateway_errors_count_only_when_enabled() -> None:
    off = _detector(consecutive_5xx=0)  # Envoy Gateway's consecutiveGatewayErrors unset
    assert not any(off.on_status(A, 502, 0.1) for _ in range(10))
    on = _detector(consecutive_5xx=0, consecutive_gateway=2)
    assert not on.on_status(A, 502, 0.1)
    assert not on.on_status(A, 500, 0.1)  # a 5xx that is not a gateway error resets that count
    assert not on.on_status(A, 504, 0.1)
    assert on.on_status(A, 503, 0.1)


def test_local_origin_failures_count_as_5xx_unless_split() -> None:
    d = _detector(consecutive_5xx=2, consecutive_gateway=0)
    assert not d.on_local_failure(A, "connect", 0.1)
    assert d.on_local_failure(A, "timeout", 0.1)
    split = _detector(consecutive_5xx=2, split_local_origin=True, consecutive_local_origin=3)
    assert not split.on_local_failure(A, "connect", 0.1)
    assert not split.on_local_failure(A, "reset", 0.1)
    split.on_connected(A, 0.1)  # a good connect resets the local-origin count
    assert not split.on_local_failure(A, "connect", 0.1)
    assert not split.on_local_failure(A, "connect", 0.1)
    assert split.on_local_failure(A, "connect", 0.1)


def test_ejection_time_grows_with_each_ejection_and_ends_on_a_tick() -> None:
    d = _detector(consecutive_5xx=1)
    assert d.on_status(A, 500, 0.5)  # multiplier 1: out for 10 s, back at the tick >= 10.5
    assert d.is_ejected(A, 10.9)
    assert not d.is_ejected(A, 11.0)
    assert d.on_status(A, 500, 11.0)  # again at once: multiplier 2, out for 20 s
    assert d.is_ejected(A, 30.9)
    assert not d.is_ejected(A, 31.0)
    assert d.records[A].ejections == 2


def test_ejection_multiplier_is_forgiven_one_per_interval_in_rotation() -> None:
    flapping = _detector(consecutive_5xx=1)
    flapping.on_status(A, 500, 0.0)
    flapping.on_status(A, 500, 10.0)  # back at 10.0, out again for 20 s
    assert not flapping.is_ejected(A, 30.0)
    assert flapping.on_status(A, 500, 30.0)  # at once again: 30 s
    assert flapping.is_ejected(A, 59.5)
    forgiven = _detector(consecutive_5xx=1)
    forgiven.on_status(A, 500, 0.0)
    forgiven.on_status(A, 500, 10.0)
    assert forgiven.on_status(A, 500, 32.0)  # two ticks in rotation since 30.0: 10 s
    assert forgiven.is_ejected(A, 41.5)
    assert not forgiven.is_ejected(A, 42.0)


def test_ejection_time_is_capped() -> None:
    d = _detector(consecutive_5xx=1, base_ejection_time=100.0)
    t = 0.0
    for _ in range(6):
        assert d.on_status(A, 500, t)
        while d.is_ejected(A, t):
            t += 1.0
    assert d.ejection_time(d.records[A]) == 300.0  # Envoy's max_ejection_time


def test_max_ejection_percent_bounds_the_ejected_share() -> None:
    d = _detector(consecutive_5xx=1, max_ejection_percent=50)
    d.endpoints = 3
    assert d.on_status(A, 500, 0.0)  # 1 of 3: 33 %
    assert not d.on_status(B, 500, 0.0)  # 2 of 3 would be 67 %
    assert d.ejected_count(0.0) == 1
    default = _detector(consecutive_5xx=1, max_ejection_percent=10)
    assert not default.on_status(A, 500, 0.0)  # Envoy Gateway's default ejects nothing of 2
    one = _detector(consecutive_5xx=1, max_ejection_percent=10, always_eject_one=True)
    assert one.on_status(A, 500, 0.0)
    assert not one.on_status(B, 500, 0.0)


# --- active checks -----------------------------------------------------------------------------


_HTTP = ir.ActiveHealthCheck(kind="HTTP", unhealthy_threshold=3, healthy_threshold=2)


def test_active_first_result_decides_then_thresholds_apply() -> None:
    rec = ActiveRecord()
    assert not apply(rec, "healthy", _HTTP)  # pending endpoints are served already
    assert (rec.healthy, rec.pending) == (True, False)
    assert not apply(rec, "network", _HTTP)
    assert not apply(rec, "network", _HTTP)
    assert apply(rec, "network", _HTTP)  # the third network failure in a row
    assert (rec.healthy, rec.failures) == (False, 3)
    assert not apply(rec, "healthy", _HTTP)
    assert apply(rec, "healthy", _HTTP)  # healthyThreshold 2
    assert (rec.healthy, rec.successes) == (True, 2)
    failed_first = ActiveRecord()
    assert apply(failed_first, "network", _HTTP)


def test_wrong_answers_fail_at_once_retriable_ones_count() -> None:
    rec = ActiveRecord(pending=False)
    assert apply(rec, "unhealthy", _HTTP)
    rec = ActiveRecord(pending=False)
    assert not apply(rec, "retriable", _HTTP)
    assert not apply(rec, "retriable", _HTTP)
    assert apply(rec, "retriable", _HTTP)


def test_http_and_tcp_outcomes() -> None:
    config = ir.ActiveHealthCheck(
        kind="HTTP", expected_statuses=(200, 204), retriable_statuses=(503,), receive=b"ok"
    )
    assert http_outcome(config, 200, b"all ok") == "healthy"
    assert http_outcome(config, 200, b"nope") == "unhealthy"
    assert http_outcome(config, 200, b"x" * 1024 + b"ok") == "unhealthy"  # first 1 KiB only
    assert http_outcome(config, 503, b"") == "retriable"
    assert http_outcome(config, 500, b"ok") == "unhealthy"
    tcp = ir.ActiveHealthCheck(kind="TCP", send=b"ping", receive=b"pong")
    assert tcp_outcome(tcp, b"po") is None
    assert tcp_outcome(tcp, b"...pong") == "healthy"
    assert tcp_outcome(tcp, b"x" * 1024) == "unhealthy"
    assert tcp_outcome(ir.ActiveHealthCheck(kind="TCP"), b"") == "healthy"


# --- the healthy set and panic -----------------------------------------------------------------


def _policy(panic: int = 50) -> ir.ClusterPolicy:
    return ir.ClusterPolicy(
        cluster="c", active=ir.ActiveHealthCheck(kind="TCP"), panic_threshold=panic
    )


@pytest.mark.parametrize(
    ("down", "panic", "expected"),
    [
        ((), 50, [A, B, C]),
        ((A,), 50, [B, C]),  # 67 % healthy
        ((A, B), 50, [A, B, C]),  # 33 % < 50 %: panic, every endpoint
        ((A, B, C), 50, [A, B, C]),
        ((A, B, C), 0, []),  # no panic: no healthy upstream
        ((A, B), 0, [C]),
    ],
)
def test_usable_endpoints_and_panic(
    down: tuple[ir.Endpoint, ...], panic: int, expected: list[ir.Endpoint]
) -> None:
    clusters = Clusters(lambda: 0.0)
    clusters.active["c"] = {e: ActiveRecord(healthy=False, pending=False) for e in down}
    assert clusters.usable(_policy(panic), (A, B, C), frozenset()) == expected


# --- circuit breaker ---------------------------------------------------------------------------


async def test_breaker_overflows_at_once_and_queues_boundedly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = Breaker(
        ir.CircuitBreaker(max_connections=1, max_pending_requests=1, max_parallel_requests=3)
    )
    with trio.fail_after(30):
        await breaker.enter(True, 5.0)  # holds the one connection
        entered = trio.Event()

        async def pending() -> None:
            await breaker.enter(True, 5.0)
            entered.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pending)
            await trio.testing.wait_all_tasks_blocked()
            assert breaker.pending == 1
            with pytest.raises(Overflow):
                await breaker.enter(True, 5.0)  # the pending queue is full
            await breaker.enter(False, 5.0)  # an HTTP/2 stream needs no connection slot
            with pytest.raises(Overflow):
                await breaker.enter(False, 5.0)  # three requests in flight
            breaker.leave(True)
            await entered.wait()
        assert (breaker.requests, breaker.connections, breaker.pending) == (2, 1, 0)
        assert breaker.overflows == {"maxPendingRequests": 1, "maxParallelRequests": 1}


async def test_breaker_pending_wait_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    breaker = Breaker(ir.CircuitBreaker(max_connections=0, max_pending_requests=5))
    with trio.fail_after(30):
        start = trio.current_time()
        with pytest.raises(Overflow):
            await breaker.enter(True, 2.0)
        assert trio.current_time() - start == pytest.approx(2.0)
        assert breaker.requests == breaker.pending == 0


def test_breaker_retries() -> None:
    breaker = Breaker(ir.CircuitBreaker(max_parallel_retries=1))
    assert breaker.start_retry()
    assert not breaker.start_retry()
    breaker.end_retry()
    assert breaker.start_retry()
    assert breaker.overflows == {"maxParallelRetries": 1}


def test_status_table_lists_endpoint_health() -> None:
    clusters = Clusters(lambda: 0.0)
    clusters.endpoints["httproute/default/app/rule/0/default/app:80"] = (A, B)
    clusters.active["httproute/default/app/rule/0/default/app:80"] = {
        A: ActiveRecord(healthy=False, pending=False)
    }
    text = render_table({"backendHealth": clusters.status()})
    rows = [line.split() for line in text.splitlines()]
    assert [
        "httproute/default/app/rule/0/default/app:80",
        "192.0.2.1:80",
        "no",
        "unhealthy",
        "no",
    ] in rows
    assert ["httproute/default/app/rule/0/default/app:80", "192.0.2.2:80", "yes", "-", "no"] in rows
