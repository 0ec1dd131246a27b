"""ClientTrafficPolicy through ``edgegw run``: the homelab set (TLS 1.2+/1.3, ALPN, keepalive,
client IP from trusted proxies), checked with curl, openssl s_client and ss."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.e2e.conftest import Gateway, curl, echoed, free_port, http_gateway, wait_for
from tests.e2e.test_https import tls_secret

pytestmark = pytest.mark.e2e


def _setup(gateway: Gateway, echoes: Any, ca: trustme.CA, tls: str) -> tuple[int, int]:
    https, plain = free_port(), free_port()
    listeners = f"""\
- name: https
  protocol: HTTPS
  port: {https}
  hostname: a.example.com
  tls: {{certificateRefs: [{{name: cert-a}}]}}
- name: http
  protocol: HTTP
  port: {plain}
"""
    gateway.service("echo", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(https, listeners=listeners))
    gateway.write("secret.yaml", tls_secret("cert-a", ca, "a.example.com"))
    gateway.write(
        "route.yaml",
        """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: echo, port: 80}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {name: lan-only, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  authorization:
    defaultAction: Deny
    rules: [{action: Allow, principal: {clientCIDRs: [192.168.0.0/16, 127.0.0.0/8]}}]
""",
    )
    gateway.write(
        "client.yaml",
        f"""\
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {{name: homelab, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]
  tcpKeepalive: {{idleTime: 20m, interval: 60s, probes: 3}}
  clientIPDetection:
    xForwardedFor: {{trustedCIDRs: [127.0.0.2/32]}}
  tls: {tls}
""",
    )
    gateway.start()
    status = gateway.resource("ClientTrafficPolicy", "homelab")["status"]
    assert status["ancestors"][0]["conditions"][0]["status"] == "True", status
    return https, plain


def _s_client(port: int, ca: Path, *args: str) -> str:
    out = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            "a.example.com",
            "-CAfile",
            str(ca),
            "-brief",
            *args,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return out.stdout + out.stderr


def test_tls_versions_and_alpn(gateway: Gateway, echoes: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    https, _ = _setup(gateway, echoes, ca, '{minVersion: "1.3", alpnProtocols: [http/1.1]}')
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    assert "Protocol version: TLSv1.3" in _s_client(https, ca_file, "-tls1_3")
    assert "Protocol version" not in _s_client(https, ca_file, "-tls1_2")
    out = curl(
        "--cacert",
        str(ca_file),
        "--resolve",
        f"a.example.com:{https}:127.0.0.1",
        "--http2",
        "-w",
        "%{http_version}",
        "-o",
        "/dev/null",
        f"https://a.example.com:{https}/",
    )
    assert out.stdout == "1.1"


def test_keepalive_and_client_ip_from_trusted_proxy(
    gateway: Gateway, echoes: Any, tmp_path: Path
) -> None:
    ca = trustme.CA()
    _, plain = _setup(gateway, echoes, ca, '{minVersion: "1.2", alpnProtocols: [h2, http/1.1]}')
    url = f"http://127.0.0.1:{plain}/"
    spoof = ("-H", "X-Forwarded-For: 203.0.113.9")
    # from the trusted proxy, the address it forwards for is the client: not on the LAN list
    assert (
        curl(
            "--interface", "127.0.0.2", *spoof, "-o", "/dev/null", "-w", "%{http_code}", url
        ).stdout
        == "403"
    )
    # anyone else's X-Forwarded-For is not believed: the peer address is the client
    got = curl("--interface", "127.0.0.3", *spoof, url)
    assert echoed(got.stdout)["headers"]["x-forwarded-for"] == ["203.0.113.9, 127.0.0.3"]
    # a kept-alive connection has the kernel's keepalive timer armed, at idleTime (20m)
    with socket.create_connection(("127.0.0.1", plain)) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        timers = wait_for(
            lambda: "keepalive" in (out := _ss(plain)) and out,
            what="a connection with a keepalive timer",
        )
        assert "timer:(keepalive,19min" in timers or "timer:(keepalive,20min" in timers, timers


def _ss(port: int) -> str:
    return subprocess.run(
        ["ss", "-tnoH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
