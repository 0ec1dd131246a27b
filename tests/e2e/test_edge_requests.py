"""Requests an attacker sends first, as raw bytes to a real ``edgegw run`` (issue "Safe at the
edge", items 1-3 and 6): dot segments, HTTP/2 pseudo-headers that are not HTTP, HTTP/1.0
chunked keep-alive, and a forwarding loop."""

from __future__ import annotations

import base64
import os
import socket
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes

from tests.e2e.conftest import (
    Echo,
    Gateway,
    Port,
    SocketServer,
    echoed,
    free_port,
    http_gateway,
    wait_for,
)

pytestmark = pytest.mark.e2e


def route(name: str, service: str, prefix: str) -> str:
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
    backendRefs: [{{name: {service}, port: 80}}]
"""


def exchange(port: int, raw: bytes, timeout: float = 10) -> bytes:
    """Send ``raw`` on a fresh connection and read until the gateway closes it."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        while chunk := sock.recv(65536):
            out += chunk
    return out


def get(port: int, path: str, extra: str = "") -> tuple[int, bytes]:
    """One HTTP/1.1 GET of ``path``, sent exactly as given: (status, body)."""
    raw = f"GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n{extra}\r\n"
    answer = exchange(port, raw.encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@dataclass
class H2Answer:
    status: int | None = None
    body: bytes = b""
    error: str | None = None  # a stream reset or GOAWAY, by error code name
    headers: dict[bytes, bytes] = field(default_factory=dict)


def h2_raw(port: int, fields: list[tuple[bytes, bytes]], timeout: float = 10) -> H2Answer:
    """One HTTP/2 request whose fields go out unchecked (h2's validation off)."""
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    conn.send_headers(1, fields, end_stream=True)
    answer = H2Answer()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(conn.data_to_send())
        while chunk := sock.recv(65536):
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    answer.headers = dict(event.headers)
                    answer.status = int(answer.headers[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    answer.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    code = event.error_code
                    answer.error = code.name if isinstance(code, ErrorCodes) else str(code)
                    return answer
                elif isinstance(event, h2.events.StreamEnded):
                    return answer
            sock.sendall(conn.data_to_send())
    answer.error = answer.error or "closed"
    return answer


def h2_get(port: int, path: str, authority: str = "example.com") -> H2Answer:
    return h2_raw(
        port,
        [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ],
    )


@pytest.fixture
def public_only(gateway: Gateway, echoes: dict[str, Echo]) -> int:
    """A gateway whose one route allows ``/public`` only, to the echo backend."""
    port = free_port()
    gateway.service("public", echoes["public"])
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("route.yaml", route("public", "public", "/public"))
    gateway.start()
    return port


ESCAPES = [
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/.%2e/admin",
    "/public/./../admin",
    "/public/x/../../admin",
]


def test_dot_segments_leave_the_public_route_over_http1(public_only: int) -> None:
    for path in ESCAPES:
        status, _ = get(public_only, path)
        assert status == 404, path  # "/admin": no route allows it


def test_the_backend_sees_the_normalized_path(public_only: int) -> None:
    status, body = get(public_only, "/public/./a//b/%7e/c/..?q=/../x")
    assert status == 200
    assert echoed(body)["path"] == "/public/a/b/~/?q=/../x"  # the query is left alone
    status, body = get(public_only, "/public/..%2Fadmin")  # an encoded slash: kept as sent
    assert status == 200
    assert echoed(body)["path"] == "/public/..%2Fadmin"


def test_dot_segments_leave_the_public_route_over_http2(public_only: int) -> None:
    for path in ESCAPES:
        assert h2_get(public_only, path).status == 404, path
    answer = h2_get(public_only, "/public/%2e/x//y")
    assert answer.status == 200
    assert echoed(answer.body)["path"] == "/public/x/y"


def test_dot_segments_leave_the_public_route_in_websocket_upgrades(public_only: int) -> None:
    key = base64.b64encode(os.urandom(16)).decode()

    def upgrade(path: str) -> bytes:
        raw = (
            f"GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
            f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", public_only), timeout=10) as sock:
            sock.sendall(raw.encode())
            return sock.recv(65536).split(b"\r\n", 1)[0]

    assert upgrade("/public/ws").startswith(b"HTTP/1.1 101 ")
    for path in ESCAPES:
        assert upgrade(path).startswith(b"HTTP/1.1 404 "), path


class Recorder(SocketServer):
    """An HTTP/1.1 backend that keeps every request head it receives and answers 200."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        super().__init__(concurrent=True)

    def handle(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        if data:
            self.heads.append(data.partition(b"\r\n\r\n")[0])
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


BAD_HEADS = [
    [(b":method", b"GET /admin"), (b":path", b"/public/x")],
    [(b":method", b"GET"), (b":path", b"/admin /public/x")],
    [(b":method", b"GET"), (b":path", b"/public/x HTTP/1.1\r\nX-Evil: 1")],
    [(b":method", b"GET"), (b":path", b"public")],
    [(b":method", b"GET"), (b":path", b"*")],
    [(b":method", b"GET"), (b":path", b"/public/\x00")],
]


def test_http2_heads_that_are_not_http_never_reach_an_http1_backend(gateway: Gateway) -> None:
    port = free_port()
    backend = Recorder()
    try:
        gateway.service("rec", Port(backend.port))
        gateway.write("gateway.yaml", http_gateway(port))
        gateway.write("route.yaml", route("all", "rec", "/"))
        gateway.start()
        for fields in BAD_HEADS:
            answer = h2_raw(port, [*fields, (b":scheme", b"http"), (b":authority", b"x")])
            assert answer.status == 400 or answer.error == "PROTOCOL_ERROR", (fields, answer)
        cases = [(b"a evil", b"v"), (b"a@b", b"v"), (b"ok", b"a\r\nX-Evil: 1"), (b"ok", b"a\x0cb")]
        for authority, value in cases:
            answer = h2_raw(
                port,
                [
                    *[(b":method", b"GET"), (b":path", b"/public/x"), (b":scheme", b"http")],
                    *[(b":authority", authority), (b"x-value", value)],
                ],
            )
            assert answer.status == 400 or answer.error == "PROTOCOL_ERROR", answer
        assert backend.heads == []
        assert h2_get(port, "/public/ok").status == 200  # the harness does reach the backend
        assert backend.heads[0].startswith(b"GET /public/ok HTTP/1.1\r\n")
    finally:
        backend.close()


def test_http10_chunked_keep_alive_closes_after_the_response(
    public_only: int,
) -> None:
    smuggled = b"GET /public/smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"
    answer = exchange(
        public_only,
        b"POST /public/first HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + smuggled,
    )
    head, _, rest = answer.partition(b"\r\n\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    assert fields[b"connection"] == b"close"
    assert echoed(rest[:length])["path"] == "/public/first"
    assert rest[length:] == b""  # one response, then the gateway closed: nothing smuggled


def _requests_counted(gateway: Gateway) -> int:
    _, text = gateway.admin("/metrics")
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.decode().splitlines()
        if line.startswith("edgegw_http_requests_total{")
    )


def test_a_forwarding_loop_costs_one_hop_then_508(gateway: Gateway) -> None:
    port = free_port()
    gateway.service("itself", Port(port))  # an EndpointSlice naming the gateway's own listener
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("route.yaml", route("loop", "itself", "/"))
    gateway.start()
    start = time.monotonic()
    answer = exchange(
        port, b"GET /x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    ).lower()
    took = time.monotonic() - start
    assert answer.startswith(b"http/1.1 508 loop detected\r\n")
    assert answer.count(b"\r\nvia: 1.1 edgegw-") == 1  # added by the one hop that relayed it
    wait_for(lambda: _requests_counted(gateway) == 2, what="two requests: client's and one hop")
    assert took < 2, took
