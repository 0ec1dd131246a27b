"""HTTP/2 end to end: h2c prior knowledge and TLS ALPN h2 from curl and h2load, h2c backends."""

from __future__ import annotations

import base64
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import trustme

from tests.e2e.conftest import (
    Echo,
    Gateway,
    Port,
    SocketServer,
    curl,
    echoed,
    free_port,
    http_gateway,
)
from tests.h2text import text_headers

pytestmark = pytest.mark.e2e


def service(gateway: Gateway, name: str, port: int, app_protocol: str) -> None:
    """A Service with an ``appProtocol`` and its EndpointSlice on 127.0.0.1:``port``."""
    gateway.service(name, Port(port), app_protocol=app_protocol)


def route(name: str, service: str, prefix: str = "/", *, kind: str = "HTTPRoute") -> str:
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
    backendRefs: [{{name: {service}, port: 80}}]
"""


def h2_request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    timeout: float = 10,
) -> tuple[dict[str, str], bytes, dict[str, str]]:
    """One h2c prior-knowledge request with the ``h2`` library: (headers, body, trailers)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration())
    conn.initiate_connection()
    result: dict[str, Any] = {"head": {}, "data": b"", "trailers": {}, "done": False}

    def pump(sock: socket.socket) -> None:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the stream ended"
        for event in conn.receive_data(chunk):
            if isinstance(event, h2.events.ResponseReceived):
                result["head"] = text_headers(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                result["data"] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, 1)
            elif isinstance(event, h2.events.TrailersReceived):
                result["trailers"] = text_headers(event.headers)
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                result["done"] = True
        sock.sendall(conn.data_to_send())

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        fields = [(":method", method), (":scheme", "http"), (":authority", "example.com")]
        fields += [(":path", path), *(headers or [])]
        conn.send_headers(1, fields, end_stream=not body)
        while body:
            window = min(conn.local_flow_control_window(1), conn.max_outbound_frame_size)
            if window <= 0:
                sock.sendall(conn.data_to_send())
                pump(sock)
                continue
            conn.send_data(1, body[:window], end_stream=len(body) <= window)
            body = body[window:]
        sock.sendall(conn.data_to_send())
        while not result["done"]:
            pump(sock)
    return result["head"], result["data"], result["trailers"]


@pytest.fixture
def h2_setup(gateway: Gateway, echoes: dict[str, Echo]) -> tuple[int, Echo]:
    port = free_port()
    gateway.service("plain", echoes["a"])
    service(gateway, "h2c", echoes["a"].port, "kubernetes.io/h2c")
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("route-h2c.yaml", route("to-h2c", "h2c", "/h2c"))
    gateway.write("route-plain.yaml", route("to-plain", "plain", "/"))
    gateway.start()
    return port, echoes["a"]


def test_h2c_prior_knowledge_to_http1_backend(h2_setup: tuple[int, Echo]) -> None:
    port, _echo = h2_setup
    result = curl(
        "--http2-prior-knowledge",
        "-H",
        "cookie: a=1",
        "-H",
        "cookie: b=2",
        f"http://127.0.0.1:{port}/x?y=1",
        "-H",
        "Host: example.com",
    )
    assert result.returncode == 0, result.stderr
    doc = echoed(result.stdout)
    assert doc["proto"] == "HTTP/1.1"
    assert doc["path"] == "/x?y=1"
    assert doc["host"] == "example.com"
    assert doc["headers"]["cookie"] == ["a=1; b=2"]


def test_http1_client_to_h2c_backend(h2_setup: tuple[int, Echo]) -> None:
    port, _echo = h2_setup
    result = curl(f"http://127.0.0.1:{port}/h2c/one", "-d", "body")
    assert result.returncode == 0, result.stderr
    doc = echoed(result.stdout)
    assert doc["proto"] == "HTTP/2.0"
    assert doc["method"] == "POST"


def test_h2c_both_ways_many_streams(h2_setup: tuple[int, Echo]) -> None:
    port, _echo = h2_setup
    out = subprocess.run(
        ["h2load", "-n", "400", "-c", "2", "-m", "20", f"http://127.0.0.1:{port}/h2c/load"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    assert "400 succeeded" in out, out
    assert "400 2xx" in out, out


def test_h2_request_body_and_head(h2_setup: tuple[int, Echo]) -> None:
    port, _echo = h2_setup
    head, body, _ = h2_request(port, "/h2c/post", method="POST", body=b"x" * 300_000)
    assert head[":status"] == "200"
    assert echoed(body)["method"] == "POST"
    head, body, _ = h2_request(port, "/nothing", method="HEAD")
    assert head[":status"] == "200"
    assert body == b""


def _tls_secret(ca: trustme.CA) -> str:
    cert = ca.issue_cert("h2.example.com")
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: cert, namespace: default}}
type: kubernetes.io/tls
data:
  tls.crt: {base64.b64encode(chain).decode()}
  tls.key: {base64.b64encode(cert.private_key_pem.bytes()).decode()}
"""


def test_https_alpn_h2_and_http11_fallback(gateway: Gateway, echoes: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    listeners = f"""\
- name: https
  protocol: HTTPS
  port: {port}
  tls: {{certificateRefs: [{{name: cert}}]}}
"""
    gateway.service("plain", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(port, listeners=listeners))
    gateway.write("secret.yaml", _tls_secret(ca))
    gateway.write("route.yaml", route("r", "plain"))
    gateway.start()
    base = ["--cacert", str(ca_file), "--resolve", f"h2.example.com:{port}:127.0.0.1"]
    url = f"https://h2.example.com:{port}/tls"
    for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
        result = curl(*base, flag, "-w", "\n%{http_version}", url)
        assert result.returncode == 0, result.stderr
        body, _, got = result.stdout.rpartition("\n")
        assert got == version
        assert echoed(body)["headers"]["x-forwarded-proto"] == ["https"]


class OneShotH2Backend(SocketServer):
    """An h2c server that answers one request per connection, echoing its body, then
    drops the connection without GOAWAY: every pooled connection it leaves is dead."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        body = b""
        while chunk := conn.recv(65536):
            for event in h2conn.receive_data(chunk):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    self.bodies.append(body)
                    h2conn.send_headers(event.stream_id, [(":status", "200")])
                    h2conn.send_data(event.stream_id, body, end_stream=True)
                    conn.sendall(h2conn.data_to_send())
                    time.sleep(0.05)  # let the proxy read it all, then go dead
                    return
            conn.sendall(h2conn.data_to_send())


def test_request_body_is_resent_when_a_pooled_h2c_connection_is_dead(gateway: Gateway) -> None:
    backend = OneShotH2Backend()
    try:
        port = free_port()
        service(gateway, "oneshot", backend.port, "kubernetes.io/h2c")
        gateway.write("gateway.yaml", http_gateway(port))
        gateway.write("route.yaml", route("to-oneshot", "oneshot"))
        gateway.start()
        for text in (b"first body", b"second body", b"third body"):
            head, data, _ = h2_request(port, "/echo", method="POST", body=text)
            assert head[":status"] == "200"
            assert data == text
        assert backend.bodies == [b"first body", b"second body", b"third body"]
        assert backend.connections == 3  # each retry went to a fresh connection
    finally:
        backend.close()
