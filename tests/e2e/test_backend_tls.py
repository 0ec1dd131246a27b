"""BackendTLSPolicy: HTTP/1.1 re-encrypted to a TLS backend, verified against a ConfigMap CA."""

from __future__ import annotations

import http.server
import json
import ssl
import textwrap
import threading
from collections.abc import Iterator

import pytest
import trustme

from tests.e2e.conftest import Gateway, Port, free_port, http_gateway, request


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        sni = getattr(self.server, "last_sni", None)
        body = json.dumps({"path": self.path, "sni": sni}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_backend() -> Iterator[tuple[int, trustme.CA]]:
    """An HTTPS server whose certificate names backend.example.com, signed by a test CA."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("backend.example.com").configure_cert(ctx)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)

    def remember_sni(
        sock: ssl.SSLSocket | ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        server.last_sni = name  # type: ignore[attr-defined]

    ctx.sni_callback = remember_sni
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], ca
    server.shutdown()
    server.server_close()


def _config(gateway: Gateway, port: int, backend_port: int, ca: trustme.CA, hostname: str) -> None:
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.service("secure", Port(backend_port))
    ca_pem = textwrap.indent(ca.cert_pem.bytes().decode(), "    ")
    gateway.write(
        "backend-tls.yaml",
        f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: backend-ca, namespace: default}}
data:
  ca.crt: |
{ca_pem}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: secure, namespace: default}}
spec:
  targetRefs: [{{group: "", kind: Service, name: secure}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: backend-ca}}]
    hostname: {hostname}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: secure, port: 80}}]}}]
""",
    )


def test_requests_are_reencrypted_to_a_verified_backend(
    gateway: Gateway, tls_backend: tuple[int, trustme.CA]
) -> None:
    backend_port, ca = tls_backend
    port = free_port()
    _config(gateway, port, backend_port, ca, "backend.example.com")
    gateway.start()

    status, _, body = request(port, "/over/tls?x=1")
    assert status == 200, body
    seen = json.loads(body)
    assert seen == {"path": "/over/tls?x=1", "sni": "backend.example.com"}
    policy = gateway.resource("BackendTLSPolicy", "secure")
    conditions = {c["type"]: c for c in policy["status"]["ancestors"][0]["conditions"]}
    assert conditions["Accepted"]["status"] == "True"


def test_a_backend_failing_verification_gets_no_request(
    gateway: Gateway, tls_backend: tuple[int, trustme.CA]
) -> None:
    backend_port, ca = tls_backend
    port = free_port()
    _config(
        gateway, port, backend_port, ca, "other.example.com"
    )  # the certificate does not say this
    gateway.start()
    status, _, _ = request(port, "/")
    assert status == 503
