"""ClientTrafficPolicy ``http1.preserveHeaderCase`` and ``http2.onInvalidMessage`` through
``edgegw run``, one gateway for every case: a port with the policy and a port without.

With ``preserveHeaderCase`` an HTTP/1.1 backend receives the request's header names as the
client spelled them, and the HTTP/1.1 client gets the response's as the backend spelled them
(checked on the raw bytes, with curl and a raw socket); names the gateway adds are lower-case,
routing still matches names case-insensitively, and HTTP/2 clients stay lower-case. Without
the policy every name is lower-case, as before. With ``onInvalidMessage: TerminateConnection``
a malformed HTTP/2 request ends the connection (RST_STREAM, then GOAWAY PROTOCOL_ERROR) and a
request in flight on it is cut off, upstream too; without it only the stream is reset.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

from tests.e2e.conftest import Gateway, curl, free_port, http_gateway, wait_for
from tests.e2e.h2wire import PROTOCOL_ERROR, Wire

pytestmark = pytest.mark.e2e

RESPONSE = b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend-Case: Yes\r\nETag: "v1"\r\n\r\nok'

ROUTES = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /match}, headers: [{name: X-Route, value: blue}]}]
    backendRefs: [{name: raw, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /any}}]
    backendRefs: [{name: raw, port: 80}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: cased, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: cased}]
  http1: {preserveHeaderCase: true}
  http2: {onInvalidMessage: TerminateConnection}
"""


class RawBackend:
    """An HTTP/1.1 backend that keeps every request head as the bytes it received.

    It reads a body by Content-Length or chunked framing before answering ``RESPONSE``, and
    notes connections that ended in the middle of a request (``cut``).
    """

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.cut = 0
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
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            conn.settimeout(20)
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        if not (chunk := conn.recv(65536)):
                            if buffer:
                                self.cut += 1
                            return
                        buffer += chunk
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    self.heads.append(head)
                    buffer = self._body(conn, head.lower(), buffer)
                    conn.sendall(RESPONSE)
            except (OSError, EOFError):
                self.cut += 1

    def _body(self, conn: socket.socket, head: bytes, buffer: bytes) -> bytes:
        if b"transfer-encoding: chunked" in head:
            end = b"0\r\n\r\n"
        elif b"content-length: " in head:
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(buffer) < length:
                buffer += self._more(conn)
            return buffer[length:]
        else:
            return buffer
        while end not in buffer:
            buffer += self._more(conn)
        return buffer.split(end, 1)[1]

    @staticmethod
    def _more(conn: socket.socket) -> bytes:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError
        return chunk

    def head_for(self, path: bytes) -> bytes:
        """The head of the last request for ``path``."""
        return wait_for(
            lambda: next((h for h in reversed(self.heads) if b" " + path + b" " in h), None),
            what=f"a request for {path!r} at the backend",
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@dataclass(frozen=True)
class Rig:
    cased: int  # the listener with the policy
    plain: int  # the listener without
    backend: RawBackend


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("headercase")
    backend = RawBackend()
    gateway = Gateway(tmp)
    cased, plain = free_port(), free_port()
    listeners = f"""\
- {{name: cased, protocol: HTTP, port: {cased}}}
- {{name: plain, protocol: HTTP, port: {plain}}}
"""
    gateway.write("gateway.yaml", http_gateway(0, listeners=listeners))
    gateway.service("raw", backend)
    gateway.write("routes.yaml", ROUTES)
    try:
        gateway.start()
        policy = gateway.resource("ClientTrafficPolicy", "cased")
        (ancestor,) = policy["status"]["ancestors"]
        accepted = next(c for c in ancestor["conditions"] if c["type"] == "Accepted")
        assert accepted["status"] == "True", accepted
        yield Rig(cased, plain, backend)
    finally:
        if gateway.process is not None:
            gateway.stop()
        backend.close()


def raw_exchange(port: int, request: bytes) -> bytes:
    """One request on a raw socket; the response head and body as received."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while not data.endswith(b"\r\n\r\nok") and not data.endswith(b"\n"):
            if not (chunk := conn.recv(65536)):
                break
            data += chunk
        return data


REQUEST = (
    b"GET /any/raw HTTP/1.1\r\nHost: a.example\r\nX-Custom-Header: Value\r\n"
    b"user-AGENT: raw/1\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n"
)


def test_policy_keeps_both_directions_case_on_http1(rig: Rig) -> None:
    response = raw_exchange(rig.cased, REQUEST)
    head = rig.backend.head_for(b"/any/raw")
    assert b"\r\nHost: a.example\r\n" in head
    assert b"\r\nX-Custom-Header: Value\r\n" in head
    assert b"\r\nuser-AGENT: raw/1\r\n" in head
    assert b"\r\nX-Forwarded-For: 192.0.2.1, 127.0.0.1\r\n" in head  # the client's spelling
    assert b"\r\nvia: 1.1 edgegw-" in head  # a name only the gateway writes: lower-case
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nX-Backend-Case: Yes\r\n" in response
    assert b'\r\nETag: "v1"\r\n' in response
    assert b"\r\nContent-Length: 2\r\n" in response


def test_without_the_policy_names_are_lower_case(rig: Rig) -> None:
    response = raw_exchange(rig.plain, REQUEST.replace(b"/any/raw", b"/any/plain"))
    head = rig.backend.head_for(b"/any/plain")
    assert b"\r\nhost: a.example\r\n" in head
    assert b"\r\nx-custom-header: Value\r\n" in head
    assert b"\r\nuser-agent: raw/1\r\n" in head
    assert b"\r\nx-backend-case: Yes\r\n" in response
    assert b"X-Backend-Case" not in response


def test_curl_sees_the_backends_case(rig: Rig) -> None:
    url = f"http://127.0.0.1:{rig.cased}/any/curl"
    done = curl("-i", "-H", "X-Mixed-Case: 1", "-d", "body=1", url)
    assert done.returncode == 0, done.stderr
    assert "\nX-Backend-Case: Yes\n" in done.stdout  # (text mode made CRLF LF)
    head = rig.backend.head_for(b"/any/curl")
    assert b"\r\nUser-Agent: curl/" in head
    assert b"\r\nAccept: */*\r\n" in head
    assert b"\r\nX-Mixed-Case: 1\r\n" in head
    assert b"\r\nContent-Type: application/x-www-form-urlencoded\r\n" in head
    assert b"\r\nContent-Length: 6\r\n" in head


def test_routing_matches_names_case_insensitively(rig: Rig) -> None:
    routed = raw_exchange(rig.cased, b"GET /match HTTP/1.1\r\nHost: a\r\nx-ROUTE: blue\r\n\r\n")
    assert routed.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nx-ROUTE: blue\r\n" in rig.backend.head_for(b"/match")
    unrouted = raw_exchange(rig.cased, b"GET /match HTTP/1.1\r\nHost: a\r\nX-Route: red\r\n\r\n")
    assert unrouted.startswith(b"HTTP/1.1 404 ")


def test_http2_clients_stay_lower_case(rig: Rig) -> None:
    url = f"http://127.0.0.1:{rig.cased}/any/h2"
    done = curl("-i", "--http2-prior-knowledge", "-H", "X-Mixed-Case: 1", url)
    assert done.returncode == 0, done.stderr
    assert "\nx-backend-case: Yes\n" in done.stdout
    head = rig.backend.head_for(b"/any/h2")
    assert b"\r\nx-mixed-case: 1\r\n" in head
    assert b"X-Mixed-Case" not in head


def _in_flight_then_malformed(port: int, path: str, backend: RawBackend) -> Wire:
    """A POST on stream 1 whose body is not sent yet (its head reached the backend), then a
    malformed request (an upper-case field name) on stream 3."""
    sock = socket.create_connection(("127.0.0.1", port))
    wire = Wire(sock, f"127.0.0.1:{port}", "http")
    wire.handshake()
    fields = wire.request_fields("POST", path, [("content-length", "4")])
    wire.send(wire.headers(1, fields, end_stream=False))
    backend.head_for(path.encode())
    bad = wire.request_fields("GET", "/any/x", [("X-Bad", "1")])
    wire.send(wire.headers(3, bad, end_stream=True))
    return wire


def test_terminate_connection_ends_it_with_goaway(rig: Rig) -> None:
    cut_before = rig.backend.cut
    wire = _in_flight_then_malformed(rig.cased, "/any/inflight-cased", rig.backend)
    seen = []
    while not isinstance(frame := wire.frame(), GoAwayFrame):
        seen.append(frame)
    assert (frame.last_stream_id, frame.error_code) == (3, PROTOCOL_ERROR)
    assert [(f.stream_id, f.error_code) for f in seen if isinstance(f, RstStreamFrame)] == [
        (3, PROTOCOL_ERROR)
    ]
    assert not [f for f in seen if isinstance(f, HeadersFrame | DataFrame)]  # no answer on 1
    assert wire.closed()
    wait_for(lambda: rig.backend.cut > cut_before, what="the upstream request cut off")


def test_terminate_stream_resets_only_that_stream(rig: Rig) -> None:
    wire = _in_flight_then_malformed(rig.plain, "/any/inflight-plain", rig.backend)
    rst = wire.until(RstStreamFrame)
    assert (rst.stream_id, rst.error_code) == (3, PROTOCOL_ERROR)
    wire.send(DataFrame(1, b"data", flags=["END_STREAM"]))
    fields, body = wire.response(1)
    assert (fields[":status"], body) == ("200", b"ok")
    wire.ping()  # the connection goes on
