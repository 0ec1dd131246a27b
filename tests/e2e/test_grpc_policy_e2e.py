"""ClientTrafficPolicy headers and BackendTrafficPolicy faultInjection on gRPC calls: a
grpcio client through ``edgegw run`` to a grpcio server, statuses as Envoy gives them."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from tests.e2e.conftest import Gateway, free_port, http_gateway
from tests.e2e.test_grpc_e2e import OPTIONS, Backend, _handlers, _unary
from tests.e2e.test_h2_e2e import service

pytestmark = pytest.mark.e2e

CONFIG = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - name: faulty
    matches: [{method: {service: test.Echo, method: Fail}}]
    backendRefs: [{name: grpc-backend, port: 80}]
  - matches: [{method: {service: test.Echo}}]
    backendRefs: [{name: grpc-backend, port: 80}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: faulty, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: GRPCRoute, name: grpc, sectionName: faulty}]
  faultInjection: {abort: {grpcStatus: 14}}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: strict, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  headers: {withUnderscoresAction: RejectRequest}
"""


@pytest.fixture
def channel(gateway: Gateway) -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=OPTIONS)
    server.add_generic_rpc_handlers((_handlers(Backend()),))
    backend_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port = free_port()
    service(gateway, "grpc-backend", backend_port, "kubernetes.io/h2c")
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("grpcroute.yaml", CONFIG)
    gateway.start()
    chan = grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS)
    try:
        yield chan
    finally:
        chan.close()
        server.stop(None)


def _code(
    channel: grpc.Channel, method: str, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.StatusCode:
    try:
        _unary(channel, f"/test.Echo/{method}")(b"x", metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_grpc_fault_abort_and_underscores(channel: grpc.Channel) -> None:
    assert _code(channel, "Unary") == grpc.StatusCode.OK
    assert _code(channel, "Fail") == grpc.StatusCode.UNAVAILABLE  # aborted before the backend
    assert _code(channel, "Unary", (("x_user", "mallory"),)) == grpc.StatusCode.INTERNAL
