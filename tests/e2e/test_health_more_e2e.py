"""BackendTrafficPolicy healthCheck GRPC, failurePercentageThreshold and circuitBreaker
perEndpoint / retryBudget through ``edgegw run``, on one gateway for the module.

gRPC checks probe real grpcio servers running grpcio's own ``grpc.health.v1``
servicer, whose status the test flips (and whose server it stops); clients
are grpcio and curl. Every wait is on a condition (the admin API, the
backends' own counts).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.e2e.conftest import Gateway, Port, free_port, http_gateway, wait_for

pytestmark = pytest.mark.e2e

GRPC_SERVICE = "test.Who"


class GrpcBackend:
    """A grpcio server: ``test.Who/Name`` answers its name; grpcio's Health servicer beside."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.health = health.HealthServicer()
        self.health.set(GRPC_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self.calls = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    GRPC_SERVICE, {"Name": grpc.unary_unary_rpc_method_handler(self._name)}
                ),
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _name(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls += 1
        return self.name.encode()

    def serving(self, yes: bool) -> None:
        status = health_pb2.HealthCheckResponse
        self.health.set(GRPC_SERVICE, status.SERVING if yes else status.NOT_SERVING)


def _btp(name: str, kind: str, body: str) -> str:
    return f"""\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: {kind}, name: {name}}}]
{body}"""


GRPC_ROUTE = f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: grpchc, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{method: {{service: {GRPC_SERVICE}}}}}]
    backendRefs: [{{name: grpcpair, port: 80}}]
"""
POLICIES = _btp(
    "grpchc",
    "GRPCRoute",
    f"""\
  healthCheck:
    active:
      timeout: 500ms
      interval: 100ms
      unhealthyThreshold: 2
      type: GRPC
      grpc: {{service: {GRPC_SERVICE}}}
""",
)


@pytest.fixture(scope="module")
def grpc_backends() -> Iterator[dict[str, GrpcBackend]]:
    started = {name: GrpcBackend(name) for name in ("a", "b")}
    yield started
    for backend in started.values():
        backend.server.stop(None)


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory, grpc_backends: dict[str, GrpcBackend]
) -> Iterator[tuple[Gateway, int]]:
    gateway = Gateway(tmp_path_factory.mktemp("gw"))
    port = free_port()
    pair = [Port(b.port) for b in grpc_backends.values()]
    gateway.service("grpcpair", pair, app_protocol="kubernetes.io/h2c")
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("routes.yaml", GRPC_ROUTE)
    gateway.write("policies.yaml", POLICIES)
    gateway.start()
    try:
        for kind, name in [("BackendTrafficPolicy", "grpchc")]:
            status = gateway.resource(kind, name)["status"]
            assert status["ancestors"][0]["conditions"][0]["status"] == "True", status
        yield gateway, port
    finally:
        gateway.stop()


def _health(gateway: Gateway, route_name: str) -> dict[int, bool]:
    """endpoint port → healthy, as the admin API's ``backendHealth`` says for a route."""
    out = {}
    for item in gateway.status().get("backendHealth", []):
        if f"/default/{route_name}/" in item["cluster"]:
            out[int(item["endpoint"].rsplit(":", 1)[1])] = item["healthy"]
    return out


def _names(port: int, n: int) -> set[str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/{GRPC_SERVICE}/Name"
        )
        return {call(b"", timeout=5).decode() for _ in range(n)}


def test_grpc_health_check_follows_the_servicer(
    rig: tuple[Gateway, int], grpc_backends: dict[str, GrpcBackend]
) -> None:
    gateway, port = rig
    a, b = grpc_backends["a"], grpc_backends["b"]
    both = {a.port: True, b.port: True}
    wait_for(lambda: _health(gateway, "grpchc") == both, what="both SERVING")
    assert _names(port, 8) == {"a", "b"}
    a.serving(False)  # NOT_SERVING: out at the next probe
    wait_for(lambda: _health(gateway, "grpchc")[a.port] is False, what="a NOT_SERVING")
    calls = a.calls
    assert _names(port, 10) == {"b"}
    assert a.calls == calls
    a.serving(True)
    wait_for(lambda: _health(gateway, "grpchc")[a.port] is True, what="a SERVING again")
    assert _names(port, 8) == {"a", "b"}
