"""ClientTrafficPolicy ``tls.ciphers`` and ``tls.ecdhCurves`` through ``edgegw run``, checked
with openssl s_client: the listed suite and group are negotiated, others are refused; and the
``headers``/``path`` rules on HTTP/2 over TLS, with curl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.e2e.conftest import Gateway, curl, echoed, free_port, http_gateway
from tests.e2e.test_client_policy_e2e import _s_client, _setup
from tests.e2e.test_https import tls_secret

pytestmark = pytest.mark.e2e

_TLS = """{minVersion: "1.2", maxVersion: "1.2", ciphers: [ECDHE-ECDSA-AES256-GCM-SHA384],
  ecdhCurves: [P-384], signatureAlgorithms: [ecdsa_secp256r1_sha256]}"""


def test_ciphers_and_curves(gateway: Gateway, echoes: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    https, _ = _setup(gateway, echoes, ca, _TLS)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ok = _s_client(https, ca_file, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384")
    assert "Ciphersuite: ECDHE-ECDSA-AES256-GCM-SHA384" in ok, ok
    other = _s_client(https, ca_file, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "Protocol version" not in other
    # in TLS 1.2 the client's groups also name the curve of the (P-256) certificate
    assert "Protocol version" in _s_client(https, ca_file, "-tls1_2", "-groups", "P-384:P-256")
    refused = _s_client(https, ca_file, "-tls1_2", "-groups", "X25519:P-256")
    assert "Protocol version" not in refused


def test_header_and_path_rules_over_tls_h2(gateway: Gateway, echoes: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    port = free_port()
    listeners = f"""\
- name: https
  protocol: HTTPS
  port: {port}
  hostname: a.example.com
  tls: {{certificateRefs: [{{name: cert-a}}]}}
"""
    gateway.service("echo", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(port, listeners=listeners))
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
kind: ClientTrafficPolicy
metadata: {name: tls-rules, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  headers: {requestID: Generate}
  path: {escapedSlashesAction: RejectRequest}
""",
    )
    gateway.start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = ("--cacert", str(ca_file), "--resolve", f"a.example.com:{port}:127.0.0.1", "--http2")
    base = f"https://a.example.com:{port}"
    out = curl(*tls, "-w", "\n%{http_version} %{http_code}", "-H", "x_a: 1", f"{base}/x")
    assert out.stdout.endswith("2 400")  # over TLS h2: an underscored name is refused
    assert curl(*tls, "-o", "/dev/null", "-w", "%{http_code}", f"{base}/a%2Fb").stdout == "400"
    got = echoed(curl(*tls, f"{base}/x").stdout)
    assert len(got["headers"]["x-request-id"][0]) == 36
