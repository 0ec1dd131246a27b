"""ACME against a real server (pebble): a Gateway annotated for a ClusterIssuer gets served.

pebble validates HTTP-01 by connecting to the gateway's HTTP listener (its
``httpPort``) and TLS-ALPN-01 through its HTTPS listener (``tlsPort``);
every name resolves to 127.0.0.1 through pebble-challtestsrv. The DNS-01
test uses BIND instead, updated with TSIG.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.acme_rig import ZONE, Bind, Pebble, start_bind, start_pebble
from tests.e2e.conftest import GATEWAY_CLASS, Echo, Gateway, wait_for
from tests.ports import free_port

HOST = "app.example.test"


def _issuer(pebble: Pebble, *, name: str = "pebble", notes: str = "", solvers: str = "") -> str:
    return f"""\
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {{name: {name}{notes}}}
spec:
  acme:
    server: {pebble.directory}
    email: ops@example.test
    caBundle: {pebble.ca_bundle}
    privateKeySecretRef: {{name: {name}-account}}
    solvers: {solvers or "[{http01: {gatewayHTTPRoute: {parentRefs: [{name: web}]}}}]"}
"""


def _site(http_port: int, https_port: int, backend: int, host: str = HOST) -> str:
    return (
        GATEWAY_CLASS
        + f"""\
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
  annotations:
    cert-manager.io/cluster-issuer: pebble
    cert-manager.io/private-key-algorithm: ECDSA
spec:
  gatewayClassName: edgegw
  listeners:
  - {{name: http, protocol: HTTP, port: {http_port}}}
  - name: https
    protocol: HTTPS
    port: {https_port}
    hostname: "{host}"
    tls: {{certificateRefs: [{{name: web-tls}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app}}
spec:
  parentRefs: [{{name: web}}]
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


class Client:
    """One keep-alive HTTPS connection, trusting only pebble's root."""

    def __init__(self, port: int, root: bytes, host: str = HOST) -> None:
        context = ssl.create_default_context(cadata=root.decode())
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.tls = context.wrap_socket(sock, server_hostname=host)
        self.conn = http.client.HTTPConnection(host, port, timeout=5)
        self.conn.sock = self.tls

    def get(self) -> int:
        self.conn.request("GET", "/")
        response = self.conn.getresponse()
        response.read()
        return response.status

    def certificate(self) -> bytes:
        der = self.tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    def close(self) -> None:
        self.conn.close()


def _connect(port: int, root: bytes, host: str = HOST) -> Client | None:
    try:
        client = Client(port, root, host)
    except (OSError, ssl.SSLError):
        return None
    return client if client.get() == 200 else None


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture
def pebble(
    tmp_path: Path, ports: tuple[int, int], request: pytest.FixtureRequest
) -> Iterator[Pebble]:
    validity = getattr(request, "param", 3600)
    server = start_pebble(tmp_path, http_port=ports[0], tls_port=ports[1], validity=validity)
    yield server
    server.stop()


@pytest.mark.parametrize("pebble", [18], indirect=True)
def test_http01_issue_renew_restart(
    gateway: Gateway, echoes: dict[str, Echo], pebble: Pebble, ports: tuple[int, int]
) -> None:
    """The issue's "done when": served within 30 s, renewed under an open connection, restart."""
    http_port, https_port = ports
    gateway.write("issuer.yaml", _issuer(pebble))
    gateway.start()
    root = pebble.root_pem()
    landed = time.monotonic()
    gateway.write("site.yaml", _site(http_port, https_port, echoes["app"].port))
    first = wait_for(lambda: _connect(https_port, root), timeout=30, what="a certificate")
    took = time.monotonic() - landed
    print(f"first certificate served {took:.1f} s after the Gateway landed")
    cert = gateway.resource("Certificate", "web-tls")["status"]
    assert cert["conditions"][0]["status"] == "True"
    issuer = gateway.resource("ClusterIssuer", "pebble", None)["status"]
    assert issuer["conditions"][0]["reason"] == "ACMEAccountRegistered"

    # pebble's 18 s certificates are renewed at 2/3 of their life: about 12 s later
    old = first.certificate()
    renewed = wait_for(
        lambda: (c := _connect(https_port, root)) and c.certificate() != old and c,
        timeout=30,
        what="a renewed certificate",
    )
    assert first.get() == 200  # the connection opened before renewal still works
    assert first.certificate() == old
    new = renewed.certificate()
    first.close()
    renewed.close()

    gateway.stop()
    gateway.start()
    again = wait_for(lambda: _connect(https_port, root), timeout=10, what="HTTPS after restart")
    assert again.certificate() == new  # served from STATE_DIR
    again.close()
    assert gateway.process is not None
    assert "issued by" not in gateway.process.output()  # and nothing was ordered


def test_tls_alpn01(
    gateway: Gateway, echoes: dict[str, Echo], pebble: Pebble, ports: tuple[int, int]
) -> None:
    http_port, https_port = ports
    notes = ", annotations: {edgegw.io/acme-challenge: tls-alpn-01}"
    gateway.write("issuer.yaml", _issuer(pebble, notes=notes, solvers="[]"))
    gateway.write("site.yaml", _site(free_port(), https_port, echoes["app"].port))
    gateway.start()
    root = pebble.root_pem()
    client = wait_for(lambda: _connect(https_port, root), timeout=30, what="a certificate")
    client.close()
    assert http_port  # pebble's httpPort leads nowhere: only TLS-ALPN-01 could have passed


EAB_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


def test_external_account_binding(
    tmp_path: Path, gateway: Gateway, echoes: dict[str, Echo], ports: tuple[int, int]
) -> None:
    """A CA that wants an external account (EAB, RFC 8555 §7.3.4) gets one bound with HS256."""
    http_port, https_port = ports
    server = start_pebble(
        tmp_path, http_port=http_port, tls_port=https_port, eab={"kid-1": EAB_KEY}
    )
    try:
        issuer = _issuer(server).replace(
            "    solvers:",
            "    externalAccountBinding:\n"
            "      keyID: kid-1\n"
            "      keySecretRef: {name: eab, key: secret}\n"
            "    solvers:",
        )
        secret = (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: eab, namespace: cert-manager}\n"
            f"stringData: {{secret: {EAB_KEY}}}\n"
        )
        gateway.write("issuer.yaml", issuer + "---\n" + secret)
        gateway.write("site.yaml", _site(http_port, https_port, echoes["app"].port))
        gateway.start()
        root = server.root_pem()
        client = wait_for(lambda: _connect(https_port, root), timeout=30, what="a certificate")
        client.close()
    finally:
        server.stop()


def test_failing_issuer_shows_and_retries(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    closed = free_port()
    issuer = f"""\
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {{name: pebble}}
spec:
  acme:
    server: https://127.0.0.1:{closed}/dir
    privateKeySecretRef: {{name: nowhere}}
"""
    gateway.write("issuer.yaml", issuer)
    gateway.write("site.yaml", _site(free_port(), free_port(), echoes["app"].port))
    gateway.start()

    def attempts() -> int:
        status = gateway.resource("Certificate", "web-tls")["status"]
        return int(status.get("failedIssuanceAttempts", 0))

    wait_for(lambda: attempts() >= 2, timeout=15, what="a retried failure")
    status = gateway.resource("Certificate", "web-tls")["status"]
    issuing = status["conditions"][1]
    assert (issuing["type"], issuing["status"], issuing["reason"]) == ("Issuing", "False", "Failed")
    assert "will be retried" in issuing["message"]
    assert status["nextAttemptTime"] >= status["lastFailureTime"]
    ready = gateway.resource("ClusterIssuer", "pebble", None)["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "ErrRegisterACMEAccount")


def test_dns01_wildcard_with_bind(
    tmp_path: Path, gateway: Gateway, echoes: dict[str, Echo]
) -> None:
    bind: Bind | None = None
    server: Pebble | None = None
    try:
        bind = start_bind(tmp_path)
        https_port = free_port()
        server = start_pebble(
            tmp_path, http_port=free_port(), tls_port=free_port(), dns=bind.address
        )
        solvers = (
            '[{dns01: {rfc2136: {nameserver: "' + bind.address + '", tsigKeyName: edgegw, '
            "tsigAlgorithm: HMACSHA256, tsigSecretSecretRef: {name: tsig, key: secret}}}}]"
        )
        secret = (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: tsig, namespace: cert-manager}\n"
            f'stringData: {{secret: "{bind.secret}"}}\n'
        )
        gateway.write("issuer.yaml", _issuer(server, solvers=solvers) + "---\n" + secret)
        gateway.write("site.yaml", _site(free_port(), https_port, echoes["app"].port, f"*.{ZONE}"))
        gateway.start()
        root = server.root_pem()
        client = wait_for(
            lambda: _connect(https_port, root, f"www.{ZONE}"), timeout=30, what="a wildcard"
        )
        client.close()
        cert = gateway.resource("Certificate", "web-tls")["status"]
        assert cert["dnsNames"] == [f"*.{ZONE}"]
    finally:
        if server is not None:
            server.stop()
        if bind is not None:
            bind.process.stop()
