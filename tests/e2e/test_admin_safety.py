"""The admin API and the logs never carry key material; methods other than GET get 405."""

from __future__ import annotations

import base64
import socket
import subprocess
from pathlib import Path

import trustme

from tests.e2e.conftest import Echo, Gateway, edgegw_cmd, free_port, http_gateway
from tests.e2e.test_https import route

ADMIN_PATHS = ("/healthz", "/readyz", "/metrics", "/api/status", "/api/config", "/nowhere")
# Secret data that is not a usable key must not be echoed either (in an error message, say).
BROKEN_KEY = b"-----BEGIN PRIVATE KEY-----\nTm90QUtleUJ1dFN0aWxsU2VjcmV0RGF0YTEyMzQ1Njc4OQ==\n"


def _secret(name: str, chain: bytes, key: bytes) -> str:
    return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: default}}
type: kubernetes.io/tls
data:
  tls.crt: {base64.b64encode(chain).decode()}
  tls.key: {base64.b64encode(key).decode()}
"""


def _forms(secret: bytes) -> list[bytes]:
    """Every way a key could show: PEM, base64 of the PEM, and lines of the PEM body."""
    body = [line for line in secret.splitlines() if line and not line.startswith(b"-----")]
    encoded = base64.b64encode(secret)
    return [secret, encoded, encoded[:48], *(line[:40] for line in body)]


def _raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_no_admin_answer_log_or_status_file_holds_key_material(
    gateway: Gateway, echoes: dict[str, Echo], tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("a.example.com")
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    key = cert.private_key_pem.bytes()
    port = free_port()
    listeners = f"""\
- name: tls
  protocol: HTTPS
  port: {port}
  hostname: a.example.com
  tls: {{certificateRefs: [{{name: cert-a}}, {{name: cert-broken}}]}}
"""
    gateway.service("svc-a", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(port, listeners=listeners))
    gateway.write("secret-a.yaml", _secret("cert-a", chain, key))
    gateway.write("secret-broken.yaml", _secret("cert-broken", chain, BROKEN_KEY))
    gateway.write("route.yaml", route("ra", "tls", "a.example.com", "svc-a"))
    gateway.start("--log-level", "debug")

    answers = {path: gateway.admin(path)[1] for path in ADMIN_PATHS}
    assert b"a.example.com" in answers["/api/config"]  # the config is there, the key is not
    check = subprocess.run(
        edgegw_cmd("check", "-c", str(gateway.config), "-o", "yaml"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    gateway.stop()
    places = {
        **answers,
        "status.yaml": (gateway.state / "status.yaml").read_bytes(),
        "log": (gateway.tmp / "edgegw.log").read_bytes(),
        "edgegw check": check.stdout + check.stderr,
    }
    for where, text in places.items():
        for secret in (key, BROKEN_KEY):
            for form in _forms(secret):
                assert form not in text, f"{where} holds key material {form[:20]!r}"


def test_methods_other_than_get_get_405(gateway: Gateway) -> None:
    gateway.write("gateway.yaml", http_gateway(free_port()))
    gateway.start()
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        answer = _raw_request(
            gateway.admin_port,
            f"{method} /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".encode(),
        )
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 405 "), (method, answer)
        assert b"\r\nallow: get, head" in head
    # A body announced but never sent does not hold the answer back.
    huge = b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"
    answer = _raw_request(gateway.admin_port, huge)
    assert answer.startswith(b"HTTP/1.1 405 ")
    head_request = b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    head = _raw_request(gateway.admin_port, head_request)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert head.endswith(b"\r\n\r\n")  # no body
    assert gateway.admin("/healthz") == (200, b"ok\n")
