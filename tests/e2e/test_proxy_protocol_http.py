"""PROXY protocol in front of HTTP and HTTPS listeners: the header's client is the client."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import pytest
import trustme

from tests.e2e.conftest import GATEWAY_CLASS, Gateway, curl, echoed, free_port
from tests.e2e.test_https import tls_secret

pytestmark = pytest.mark.e2e

CLIENT = "203.0.113.7"  # TEST-NET-3: never the test's own address


def gateway_accepting_proxy(http_port: int, https_port: int) -> str:
    return (
        GATEWAY_CLASS
        + f"""\
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
  annotations: {{edgegw.io/accept-proxy-protocol: "true"}}
spec:
  gatewayClassName: edgegw
  listeners:
  - {{name: http, protocol: HTTP, port: {http_port}}}
  - name: https
    protocol: HTTPS
    port: {https_port}
    hostname: secure.example.com
    tls: {{certificateRefs: [{{name: cert}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: app, port: 80}}]}}]
"""
    )


def proxy_line(port: int) -> bytes:
    return f"PROXY TCP4 {CLIENT} 192.0.2.1 40000 {port}\r\n".encode()


def read_to_close(conn: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def get(host: str) -> bytes:
    return f"GET /who HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


@pytest.fixture
def setup(gateway: Gateway, echoes: Any) -> tuple[int, int, trustme.CA]:
    ca = trustme.CA()
    http_port, https_port = free_port(), free_port()
    gateway.service("app", echoes["a"])
    gateway.write("tls.yaml", tls_secret("cert", ca, "secure.example.com"))
    gateway.write("gateway.yaml", gateway_accepting_proxy(http_port, https_port))
    gateway.start()
    return http_port, https_port, ca


def test_http_client_address_comes_from_the_proxy_header(
    setup: tuple[int, int, trustme.CA],
) -> None:
    http_port, _, _ = setup
    with socket.create_connection(("127.0.0.1", http_port), timeout=10) as conn:
        conn.sendall(proxy_line(http_port) + get("example.com"))
        response = read_to_close(conn)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert echoed(body)["headers"]["x-forwarded-for"] == [CLIENT]


def test_http_without_the_proxy_header_is_not_served(setup: tuple[int, int, trustme.CA]) -> None:
    http_port, _, _ = setup
    with socket.create_connection(("127.0.0.1", http_port), timeout=10) as conn:
        conn.sendall(get("example.com"))
        assert read_to_close(conn) == b""


def test_https_client_address_comes_from_the_proxy_header(
    setup: tuple[int, int, trustme.CA],
) -> None:
    _, https_port, ca = setup
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with socket.create_connection(("127.0.0.1", https_port), timeout=10) as raw:
        raw.sendall(proxy_line(https_port))  # before the ClientHello, as a load balancer does
        with ctx.wrap_socket(raw, server_hostname="secure.example.com") as conn:
            conn.sendall(get("secure.example.com"))
            response = read_to_close(conn)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert echoed(body)["headers"]["x-forwarded-for"] == [CLIENT]


def test_h2c_after_a_proxy_header(setup: tuple[int, int, trustme.CA]) -> None:
    http_port, _, _ = setup
    result = curl(
        "--haproxy-protocol",
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_code} %{http_version}",
        f"http://127.0.0.1:{http_port}/who",
    )
    body, _, status = result.stdout.rpartition("\n")
    assert status == "200 2", result
    assert echoed(body)["headers"]["x-forwarded-for"] == ["127.0.0.1"]
