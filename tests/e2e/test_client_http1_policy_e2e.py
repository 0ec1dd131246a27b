"""ClientTrafficPolicy ``http1.enableTrailers: false`` and ``timeout.http.requestReceivedTimeout``
through ``edgegw run``: trailers are dropped on the way to the backend, and a request body
that does not arrive in time ends the request (HTTP/1.1 connection, HTTP/2 stream)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hyperframe.frame import RstStreamFrame

from tests.e2e.conftest import Gateway, Port, free_port, http_gateway
from tests.e2e.h2wire import Wire

pytestmark = pytest.mark.e2e

CONFIG = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: h1, port: 80}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: h1, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  http1: {enableTrailers: false}
  timeout: {http: {requestReceivedTimeout: 1s}}
"""


class RawHTTP1Backend:
    """Records each chunked request as the bytes it received; answers 200.

    Its accept loop wakes every 0.2 s to see whether it is to stop, so ``close``
    ends it: a thread left blocked in accept(2) on a closed socket stalled
    in-process servers of later tests.
    """

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n0\r\n" not in data or not data.endswith(b"\r\n\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        self.requests.append(data)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def setup(gateway: Gateway) -> Iterator[tuple[int, RawHTTP1Backend]]:
    backend = RawHTTP1Backend()
    port = free_port()
    gateway.service("h1", Port(backend.port))
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("routes.yaml", CONFIG)
    gateway.start()
    yield port, backend
    backend.close()


def _closed(conn: socket.socket) -> bool:
    """Whether the peer closes the connection (anything it sends first is read over)."""
    try:
        while conn.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_trailers_dropped(setup: tuple[int, RawHTTP1Backend]) -> None:
    port, backend = setup
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(
            b"POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nhi\r\n0\r\nx-sum: 1\r\n\r\n"
        )
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
    (sent,) = backend.requests
    assert b"2\r\nhi\r\n" in sent
    assert b"x-sum" not in sent.lower()


def test_request_received_timeout(setup: tuple[int, RawHTTP1Backend]) -> None:
    port, _ = setup
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
        assert _closed(conn)
    assert time.monotonic() - start < 8  # the 1 s policy, not the 60 s body timeout
    with socket.create_connection(("127.0.0.1", port)) as sock:
        wire = Wire(sock, f"127.0.0.1:{port}", "http")
        wire.handshake()
        wire.send(wire.headers(1, wire.request_fields("POST", "/slow"), end_stream=False))
        assert wire.until(RstStreamFrame).stream_id == 1  # the stream ends, within 5 s
