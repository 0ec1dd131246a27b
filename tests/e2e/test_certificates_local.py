"""A local development CA, as cert-manager users bootstrap one: selfSigned → CA → ca Issuer.

The gateway issues the root and then, from it, the certificate its annotated
Gateway's ``*.localhost`` listener names; curl trusting only that root gets a
verified HTTPS answer. The files are private, no key reaches the admin API
or the log, and a restart serves the same certificate without issuing again.
"""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

from tests.e2e.conftest import GATEWAY_CLASS, Echo, Gateway, curl, echoed, wait_for
from tests.ports import free_port

LOCAL_CA = """\
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: selfsigned}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: local-root}
spec:
  isCA: true
  commonName: edgegw development root
  secretName: local-root
  privateKey: {algorithm: ECDSA}
  issuerRef: {name: selfsigned}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: local-ca}
spec: {ca: {secretName: local-root}}
"""


def _site(port: int, backend: int) -> str:
    return (
        GATEWAY_CLASS
        + f"""\
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: dev
  annotations: {{cert-manager.io/issuer: local-ca, cert-manager.io/private-key-algorithm: ECDSA}}
spec:
  gatewayClassName: edgegw
  listeners:
  - name: https
    protocol: HTTPS
    port: {port}
    hostname: "*.dev.localhost"
    tls: {{certificateRefs: [{{name: localhost-tls}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app}}
spec:
  parentRefs: [{{name: dev}}]
  rules: [{{backendRefs: [{{name: app, port: 80}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: app, labels: {{kubernetes.io/service-name: app}}}}
addressType: IPv4
ports: [{{name: http, port: {backend}}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
"""
    )


def _get(port: int, root: Path) -> str:
    result = curl(
        "--cacert", str(root), "--resolve", f"app.dev.localhost:{port}:127.0.0.1",
        f"https://app.dev.localhost:{port}/",
    )  # fmt: skip
    return result.stdout if result.returncode == 0 else ""


def _served(port: int) -> str:
    """The leaf certificate the port serves, as PEM."""
    return ssl.get_server_certificate(("127.0.0.1", port), timeout=5)


def test_local_ca_serves_localhost(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    gateway.write("ca.yaml", LOCAL_CA)
    gateway.write("site.yaml", _site(port, echoes["app"].port))
    gateway.start()
    root = gateway.state / "certificates" / "default" / "local-root.crt"
    body = wait_for(lambda: _get(port, root), timeout=15, what="HTTPS with the local root")
    assert echoed(body)["host"].startswith("app.dev.localhost")

    cert = gateway.resource("Certificate", "localhost-tls", "default")
    ready = cert["status"]["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Ready")
    assert cert["status"]["dnsNames"] == ["*.dev.localhost"]
    assert cert["status"]["notAfter"] > cert["status"]["renewalTime"] > cert["status"]["notBefore"]
    for path in (gateway.state / "certificates").rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    _, metrics = gateway.admin("/metrics")
    labels = b'{namespace="default",name="localhost-tls"'
    assert b"edgegw_certificate_expiration_timestamp_seconds" + labels + b"} " in metrics
    assert b"edgegw_certificate_ready_status" + labels + b',condition="True"} 1' in metrics

    first = _served(port)
    assert gateway.process is not None
    assert gateway.process.output().count("issued by") == 2  # the root, then the leaf
    gateway.stop()
    gateway.start()
    wait_for(lambda: _get(port, root), timeout=10, what="HTTPS after a restart")
    assert _served(port) == first
    log = gateway.process.output()
    assert "issued by" not in log  # served from STATE_DIR, nothing ordered again
    for text in (
        log,
        gateway.admin("/api/status")[1].decode(),
        gateway.admin("/api/config")[1].decode(),
    ):
        assert "PRIVATE KEY" not in text


def test_workers_all_serve_what_one_issues(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    gateway.write("ca.yaml", LOCAL_CA)
    gateway.write("site.yaml", _site(port, echoes["app"].port))
    gateway.start("--workers", "2")
    root = gateway.state / "certificates" / "default" / "local-root.crt"
    wait_for(lambda: _get(port, root), timeout=15, what="HTTPS with the local root")
    # new connections land on either worker (SO_REUSEPORT): every one must verify
    wait_for(lambda: all(_get(port, root) for _ in range(12)), timeout=10, what="both workers")
    assert gateway.process is not None
    assert gateway.process.output().count("issued by") == 2  # one process ordered
