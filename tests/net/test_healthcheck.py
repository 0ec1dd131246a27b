"""Active health checkers across reloads, and the pool's choice under them (memory streams).

The dialler is a fake: endpoints in ``dead`` refuse, the others connect to a
memory stream, which a TCP check with nothing to receive counts as healthy.
"""

from __future__ import annotations

import msgspec
import pytest
import trio
import trio.testing

from edgegw import ir
from edgegw.net.dial import Dialer
from edgegw.net.healthcheck import HealthChecks
from edgegw.net.upstream import UpstreamPool

A, B, C = (ir.Endpoint(address=f"192.0.2.{i}", port=80) for i in (1, 2, 3))
CHECK = ir.ActiveHealthCheck(kind="TCP", interval=1.0, timeout=0.5, unhealthy_threshold=2)


class FakeDialer(Dialer):
    def __init__(self) -> None:
        super().__init__()
        self.dead: set[ir.Endpoint] = set()
        self.dials = 0

    async def open_stream(self, endpoint: ir.Endpoint) -> trio.abc.Stream:
        self.dials += 1
        await trio.sleep(0.01)
        if endpoint in self.dead:
            raise ConnectionRefusedError(endpoint.address)
        return trio.testing.memory_stream_pair()[0]


def _model(
    *routes: tuple[str, tuple[ir.Endpoint, ...]], check: ir.ActiveHealthCheck = CHECK
) -> ir.Model:
    http_routes = tuple(
        ir.HTTPRoute(
            namespace="default",
            name=name,
            rules=(
                ir.HTTPRouteRule(
                    index=0,
                    backends=(
                        ir.Backend(
                            name="default/svc:80",
                            endpoints=endpoints,
                            cluster=ir.ClusterPolicy(
                                cluster=f"httproute/default/{name}", active=check
                            ),
                        ),
                    ),
                ),
            ),
        )
        for name, endpoints in routes
    )
    listener = ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name="http",
        protocol="HTTP",
        port=80,
        http_routes=http_routes,
    )
    return ir.Model(ports=(ir.Port(address="0.0.0.0", port=80, listeners=(listener,)),))


def _backend(model: ir.Model, route: int = 0) -> ir.Backend:
    return model.ports[0].listeners[0].http_routes[route].rules[0].backends[0]


@pytest.fixture
def rig() -> tuple[UpstreamPool, FakeDialer, HealthChecks]:
    dialer = FakeDialer()
    pool = UpstreamPool(dialer=dialer)
    return pool, dialer, HealthChecks(pool.clusters.active, pool.clusters.endpoints, dialer)


async def test_checker_marks_a_dead_endpoint_and_survives_reloads(
    autojump_clock: trio.testing.MockClock, rig: tuple[UpstreamPool, FakeDialer, HealthChecks]
) -> None:
    pool, dialer, checks = rig
    dialer.dead.add(A)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(checks.serve)
            first = _model(("r1", (A, B)))
            checks.reconcile(first)
            await trio.sleep(0.1)  # the first round: a first failure decides at once
            assert {pool.choose(_backend(first)) for _ in range(4)} == {B}
            table = pool.clusters.active["httproute/default/r1"]

            # a reload that adds a route to the same backend: the same checker, nothing reset
            second = _model(("r1", (A, B)), ("r2", (A, B)))
            checks.reconcile(second)
            assert pool.clusters.active["httproute/default/r1"] is table
            assert pool.clusters.active["httproute/default/r2"] is table
            assert {pool.choose(_backend(second, 1)) for _ in range(4)} == {B}

            # new endpoints: a new checker, seeded with what the old one knew
            third = _model(("r1", (A, B, C)))
            checks.reconcile(third)
            assert not pool.clusters.active["httproute/default/r1"][A].healthy
            dialer.dead.discard(A)
            await trio.sleep(1.2)
            assert {pool.choose(_backend(third)) for _ in range(6)} == {A, B, C}

            # no policy left: the checker stops
            checks.reconcile(ir.Model())
            await trio.sleep(0.1)
            dials = dialer.dials
            await trio.sleep(5)
            assert dialer.dials == dials
            assert pool.clusters.active == {}
            nursery.cancel_scope.cancel()


async def test_thresholds_and_interval_over_time(
    autojump_clock: trio.testing.MockClock, rig: tuple[UpstreamPool, FakeDialer, HealthChecks]
) -> None:
    pool, dialer, checks = rig
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(checks.serve)
            model = _model(("r1", (A, B)))
            checks.reconcile(model)
            await trio.sleep(0.1)
            dialer.dead.add(A)
            await trio.sleep(1.0)  # one failure: under unhealthyThreshold 2
            assert pool.choose(_backend(model), frozenset({B})) == A
            await trio.sleep(1.0)
            assert pool.choose(_backend(model), frozenset({B})) == B  # A is out
            assert not pool.clusters.is_healthy(_backend(model).cluster, A)  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()


async def test_no_healthy_upstream_without_panic(
    autojump_clock: trio.testing.MockClock, rig: tuple[UpstreamPool, FakeDialer, HealthChecks]
) -> None:
    pool, dialer, checks = rig
    dialer.dead.update({A, B})
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(checks.serve)
            panic = _model(("r1", (A, B)))
            strict = ir.ClusterPolicy(
                cluster="httproute/default/r1", active=CHECK, panic_threshold=0
            )
            backend = msgspec.structs.replace(_backend(panic), cluster=strict)
            checks.reconcile(panic)
            await trio.sleep(0.1)
            assert pool.choose(_backend(panic)) in {A, B}  # panic: every endpoint again
            assert pool.choose(backend) is None  # panicThreshold 0: 503 no healthy upstream
            nursery.cancel_scope.cancel()
