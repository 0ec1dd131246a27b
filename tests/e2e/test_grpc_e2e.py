"""gRPC through a GRPCRoute: a real grpcio server behind ``edgegw run``, a real grpcio client.

The service is generic (bytes in, bytes out, no generated stubs): ``test.Echo``
with one method per call shape, plus ``Slow`` (sleeps, for deadlines) and
``Ticks`` (streams until cancelled, for cancellation reaching the backend).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from tests.e2e.conftest import Gateway, free_port, http_gateway
from tests.e2e.test_h2_e2e import h2_request, service

pytestmark = pytest.mark.e2e

BIG = 16 * 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", BIG), ("grpc.max_send_message_length", BIG)]


class Backend:
    """The grpcio server's handlers and what they observed."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.deadlines: list[float | None] = []

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_trailing_metadata((("x-trailer", "t1"),))
        metadata = dict(context.invocation_metadata())
        return request + b"|" + str(metadata.get("x-client", "")).encode()

    def server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for i in range(int(request)):
            yield b"%d" % i

    def client_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return b"%d" % sum(len(r) for r in requests)

    def bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for r in requests:
            yield r.upper()

    def big(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return request[::-1]

    def slow(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.deadlines.append(context.time_remaining())
        time.sleep(float(request))
        return b"late"

    def ticks(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        context.add_callback(self.cancelled.set)
        while context.is_active():
            yield b"tick"
            time.sleep(0.05)

    def fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "nope: " + request.decode())


def _handlers(b: Backend) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(b.unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(b.server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(b.client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(b.bidi),
            "Big": grpc.unary_unary_rpc_method_handler(b.big),
            "Slow": grpc.unary_unary_rpc_method_handler(b.slow),
            "Ticks": grpc.unary_stream_rpc_method_handler(b.ticks),
            "Fail": grpc.unary_unary_rpc_method_handler(b.fail),
        },
    )


GRPC_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{method: {service: test.Echo}}]
    backendRefs: [{name: grpc-backend, port: 80}]
  - matches: [{method: {service: test.Missing}}]
    backendRefs: [{name: no-such-service, port: 80}]
"""


@pytest.fixture
def grpc_env(gateway: Gateway) -> Iterator[tuple[grpc.Channel, Backend, int]]:
    backend = Backend()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=OPTIONS)
    server.add_generic_rpc_handlers((_handlers(backend),))
    backend_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port = free_port()
    service(gateway, "grpc-backend", backend_port, "kubernetes.io/h2c")
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("grpcroute.yaml", GRPC_ROUTE)
    gateway.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS)
    try:
        yield channel, backend, port
    finally:
        channel.close()
        server.stop(None)


def _call(channel: grpc.Channel, kind: str, method: str) -> Any:
    return getattr(channel, kind)(f"/test.Echo/{method}")


def _unary(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    """A unary call of raw bytes to ``method`` (no serializers: requests and answers are bytes)."""
    return channel.unary_unary(method)


def test_unary_with_metadata_and_trailers(grpc_env: tuple[grpc.Channel, Backend, int]) -> None:
    channel, _, _ = grpc_env
    response, call = _call(channel, "unary_unary", "Unary").with_call(
        b"hello", metadata=(("x-client", "c1"),), timeout=10
    )
    assert response == b"hello|c1"
    assert ("x-trailer", "t1") in call.trailing_metadata()
    assert call.code() == grpc.StatusCode.OK


def test_streaming_shapes(grpc_env: tuple[grpc.Channel, Backend, int]) -> None:
    channel, _, _ = grpc_env
    assert list(_call(channel, "unary_stream", "ServerStream")(b"50", timeout=10)) == [
        b"%d" % i for i in range(50)
    ]
    parts = (b"x" * n for n in range(100))
    assert _call(channel, "stream_unary", "ClientStream")(parts, timeout=10) == b"4950"
    words = [b"alpha", b"beta", b"gamma"]
    assert list(_call(channel, "stream_stream", "Bidi")(iter(words), timeout=10)) == [
        w.upper() for w in words
    ]


def test_eight_megabyte_message(grpc_env: tuple[grpc.Channel, Backend, int]) -> None:
    channel, _, _ = grpc_env
    payload = bytes(range(256)) * (8 * 1024 * 1024 // 256)
    assert _call(channel, "unary_unary", "Big")(payload, timeout=30) == payload[::-1]


def test_status_from_backend_passes_through(grpc_env: tuple[grpc.Channel, Backend, int]) -> None:
    channel, _, _ = grpc_env
    with pytest.raises(grpc.RpcError) as info:
        _call(channel, "unary_unary", "Fail")(b"why", timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == "nope: why"


def test_deadline_exceeded(grpc_env: tuple[grpc.Channel, Backend, int]) -> None:
    channel, backend, port = grpc_env
    with pytest.raises(grpc.RpcError) as info:
        _call(channel, "unary_unary", "Slow")(b"2", timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    remaining = backend.deadlines[-1]
    assert remaining is not None
    assert remaining < 1.0
    # The gateway enforces grpc-timeout itself too: status 4 without the client's help.
    started = time.monotonic()
    head, _, trailers = h2_request(
        port,
        "/test.Echo/Slow",
        method="POST",
        headers=[
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", "300m"),
        ],
        body=b"\0\0\0\0\x011",
    )
    assert time.monotonic() - started < 0.9
    assert head[":status"] == "200"
    assert {**head, **trailers}["grpc-status"] == "4"


def test_cancellation_reaches_backend(grpc_env: tuple[grpc.Channel, Backend, int]) -> None:
    channel, backend, _ = grpc_env
    call = _call(channel, "unary_stream", "Ticks")(b"", timeout=30)
    assert next(call) == b"tick"
    call.cancel()
    assert backend.cancelled.wait(5), "the backend never saw the cancellation"


def test_no_route_is_unimplemented(grpc_env: tuple[grpc.Channel, Backend, int]) -> None:
    channel, _, _ = grpc_env
    with pytest.raises(grpc.RpcError) as info:
        _unary(channel, "/other.Service/Method")(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unresolved_backend_is_unavailable(grpc_env: tuple[grpc.Channel, Backend, int]) -> None:
    channel, _, _ = grpc_env
    with pytest.raises(grpc.RpcError) as info:
        _unary(channel, "/test.Missing/Method")(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
