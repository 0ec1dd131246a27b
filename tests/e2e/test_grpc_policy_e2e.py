"""ClientTrafficPolicy headers, BackendTrafficPolicy faultInjection and the gRPC retry
triggers on gRPC calls: a grpcio client through ``edgegw run`` to a grpcio server, statuses as
Envoy gives them."""

from __future__ import annotations

import threading
from collections import Counter
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
  - name: retrying
    matches: [{method: {service: test.Retry}}]
    backendRefs: [{name: grpc-backend, port: 80}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: retrying, namespace: default}
spec:
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: GRPCRoute, name: grpc, sectionName: retrying}
  retry: {numRetries: 2, retryOn: {triggers: [unavailable]}}
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


class Flaky:
    """test.Retry: ``Flaky`` fails each message's first try with UNAVAILABLE, ``Busy`` always
    answers RESOURCE_EXHAUSTED; both count the tries they see per message."""

    def __init__(self) -> None:
        self.tries: Counter[bytes] = Counter()
        self.lock = threading.Lock()

    def _try(self, request: bytes) -> int:
        with self.lock:
            self.tries[request] += 1
            return self.tries[request]

    def flaky(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if self._try(request) == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return request

    def busy(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._try(request)
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy")

    def handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "test.Retry",
            {
                "Flaky": grpc.unary_unary_rpc_method_handler(self.flaky),
                "Busy": grpc.unary_unary_rpc_method_handler(self.busy),
            },
        )


FLAKY = Flaky()


@pytest.fixture
def channel(gateway: Gateway) -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=OPTIONS)
    server.add_generic_rpc_handlers((_handlers(Backend()), FLAKY.handlers()))
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
    # the gRPC retry triggers: unavailable retries (the client never sees the first try's
    # UNAVAILABLE), resource-exhausted is not in the policy and reaches the client at once
    assert _unary(channel, "/test.Retry/Flaky")(b"one", timeout=10) == b"one"
    assert FLAKY.tries[b"one"] == 2
    with pytest.raises(grpc.RpcError) as busy:
        _unary(channel, "/test.Retry/Busy")(b"two", timeout=10)
    assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert FLAKY.tries[b"two"] == 1
