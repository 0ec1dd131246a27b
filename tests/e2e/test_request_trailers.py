"""Request trailers reach the backend, from HTTP/1.1 and HTTP/2 clients, to either backend."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from tests.e2e.conftest import Gateway, Port, SocketServer, free_port, http_gateway, wait_for

pytestmark = pytest.mark.e2e

ROUTES = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /h1}}]
    backendRefs: [{name: h1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /h2}}]
    backendRefs: [{name: h2, port: 80}]
"""


class RawHTTP1Backend(SocketServer):
    """Records each chunked request as the bytes it received; answers 200."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n0\r\n" not in data or not data.endswith(b"\r\n\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        self.requests.append(data)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")


class H2Backend(SocketServer):
    """An h2c server recording each request's body and trailers; answers 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, dict[bytes, bytes]]] = []
        super().__init__(concurrent=True)

    def handle(self, conn: socket.socket) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        h2conn = h2.connection.H2Connection(config)
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        bodies: dict[int, bytes] = {}
        trailers: dict[int, dict[bytes, bytes]] = {}
        while chunk := conn.recv(65536):
            for event in h2conn.receive_data(chunk):
                if isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
                    h2conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers[event.stream_id] = dict(event.headers)
                elif isinstance(event, h2.events.StreamEnded):
                    sid = event.stream_id
                    self.requests.append((bodies.get(sid, b""), trailers.get(sid, {})))
                    h2conn.send_headers(sid, [(b":status", b"200")])
                    h2conn.send_data(sid, b"ok", end_stream=True)
            conn.sendall(h2conn.data_to_send())


def h1_chunked_with_trailers(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
            "Trailer: x-checksum\r\nConnection: close\r\n\r\n"
            "5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n".encode()
        )
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        return data


def h2_with_trailers(port: int, path: str) -> dict[str, Any]:
    """POST ``hello`` then the trailers ``x-checksum: abc123`` over h2c; the response."""
    h2conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding=None))
    h2conn.initiate_connection()
    head = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"example.com")]
    h2conn.send_headers(1, [*head, (b":path", path.encode())])
    h2conn.send_data(1, b"hello")
    h2conn.send_headers(1, [(b"x-checksum", b"abc123")], end_stream=True)
    result: dict[str, Any] = {"status": None, "body": b"", "done": False}
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(h2conn.data_to_send())
        while not result["done"]:
            chunk = conn.recv(65536)
            assert chunk, "closed before the response ended"
            for event in h2conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    result["status"] = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    result["body"] += event.data
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    result["done"] = True
            conn.sendall(h2conn.data_to_send())
    return result


@pytest.fixture
def setup(gateway: Gateway) -> Iterator[tuple[int, RawHTTP1Backend, H2Backend]]:
    h1, h2b = RawHTTP1Backend(), H2Backend()
    port = free_port()
    gateway.service("h1", Port(h1.port))
    gateway.service("h2", Port(h2b.port), app_protocol="kubernetes.io/h2c")
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("routes.yaml", ROUTES)
    gateway.start()
    yield port, h1, h2b
    h1.close()
    h2b.close()


def test_http1_chunked_trailers_reach_an_http1_backend(
    setup: tuple[int, RawHTTP1Backend, H2Backend],
) -> None:
    port, h1, _ = setup
    assert h1_chunked_with_trailers(port, "/h1/upload").startswith(b"HTTP/1.1 200 ")
    wait_for(lambda: h1.requests, what="the backend to get the request")
    assert h1.requests[-1].endswith(b"\r\n5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n")


def test_http1_chunked_trailers_reach_an_h2c_backend(
    setup: tuple[int, RawHTTP1Backend, H2Backend],
) -> None:
    port, _, h2b = setup
    assert h1_chunked_with_trailers(port, "/h2/upload").startswith(b"HTTP/1.1 200 ")
    wait_for(lambda: h2b.requests, what="the backend to get the request")
    assert h2b.requests[-1] == (b"hello", {b"x-checksum": b"abc123"})


def test_h2_trailers_reach_both_kinds_of_backend(
    setup: tuple[int, RawHTTP1Backend, H2Backend],
) -> None:
    port, h1, h2b = setup
    to_h2 = h2_with_trailers(port, "/h2/upload")
    assert (to_h2["status"], to_h2["body"]) == (b"200", b"ok")
    assert h2b.requests[-1] == (b"hello", {b"x-checksum": b"abc123"})
    to_h1 = h2_with_trailers(port, "/h1/upload")
    assert (to_h1["status"], to_h1["body"]) == (b"200", b"ok")
    assert h1.requests[-1].endswith(b"\r\n5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n")
