"""HTTPS listeners: certificates from Secrets picked by SNI, checked with curl and Python ssl."""

from __future__ import annotations

import base64
import socket
import ssl
from pathlib import Path

import trustme

from tests.e2e.conftest import Echo, Gateway, curl, echoed, free_port, http_gateway


def tls_secret(name: str, ca: trustme.CA, *hosts: str) -> str:
    cert = ca.issue_cert(*hosts)
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    key = cert.private_key_pem.bytes()
    return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: default}}
type: kubernetes.io/tls
data:
  tls.crt: {base64.b64encode(chain).decode()}
  tls.key: {base64.b64encode(key).decode()}
"""


def https_listeners(port: int) -> str:
    return f"""\
- name: exact
  protocol: HTTPS
  port: {port}
  hostname: a.example.com
  tls: {{certificateRefs: [{{name: cert-a}}]}}
- name: wildcard
  protocol: HTTPS
  port: {port}
  hostname: "*.example.org"
  tls: {{certificateRefs: [{{name: cert-wild}}]}}
"""


def route(name: str, section: str, host: str, service: str) -> str:
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: {section}}}]
  hostnames: ["{host}"]
  rules:
  - backendRefs: [{{name: {service}, port: 80}}]
"""


def setup(gateway: Gateway, echoes: dict[str, Echo], ca: trustme.CA) -> int:
    port = free_port()
    gateway.service("svc-a", echoes["a"])
    gateway.service("svc-b", echoes["b"])
    gateway.write("gateway.yaml", http_gateway(port, listeners=https_listeners(port)))
    gateway.write("secret-a.yaml", tls_secret("cert-a", ca, "a.example.com"))
    gateway.write("secret-wild.yaml", tls_secret("cert-wild", ca, "*.example.org"))
    gateway.write("route-a.yaml", route("ra", "exact", "a.example.com", "svc-a"))
    gateway.write("route-b.yaml", route("rb", "wildcard", "shop.example.org", "svc-b"))
    gateway.start()
    return port


def test_sni_picks_certificate_and_listener(
    gateway: Gateway, echoes: dict[str, Echo], tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = setup(gateway, echoes, ca)

    for host, pod in (("a.example.com", "a"), ("shop.example.org", "b")):
        result = curl(
            "--cacert",
            str(ca_file),
            "--resolve",
            f"{host}:{port}:127.0.0.1",
            f"https://{host}:{port}/x",
        )
        assert result.returncode == 0, result.stderr
        body = echoed(result.stdout)
        assert body["pod"] == pod
        assert body["headers"]["x-forwarded-proto"] == ["https"]

    # SNI of one listener, Host of another: 421 Misdirected Request.
    result = curl(
        "--cacert",
        str(ca_file),
        "--resolve",
        f"a.example.com:{port}:127.0.0.1",
        "-H",
        "Host: shop.example.org",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        f"https://a.example.com:{port}/",
    )
    assert result.stdout == "421"


def test_broken_tls_clients_do_not_hurt_the_gateway(
    gateway: Gateway, echoes: dict[str, Echo], tmp_path: Path
) -> None:
    ca = trustme.CA()
    port = setup(gateway, echoes, ca)

    with socket.create_connection(("127.0.0.1", port), 5) as sock:  # garbage, not a ClientHello
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        sock.settimeout(5)
        try:
            answer = sock.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # not TLS: closed quietly, no alert, no hang
    stalled = socket.create_connection(("127.0.0.1", port), 5)  # never says anything

    context = ssl.create_default_context(cafile=None)
    ca.configure_trust(context)
    with (
        socket.create_connection(("127.0.0.1", port), 5) as raw,
        context.wrap_socket(raw, server_hostname="a.example.com") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    stalled.close()
