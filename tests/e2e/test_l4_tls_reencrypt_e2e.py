"""BackendTLSPolicyTLSRouteTerminate: TLS ends at a TLSRoute listener, TLS again to the backend.

The backend is a TLS server with its own CA and the name abc.example.com; it
greets with its name and the SNI it was asked for, so the greeting proves the
gateway re-encrypted under the BackendTLSPolicy (CA from a ConfigMap, SNI and
verified name from ``validation.hostname``). A policy whose CA does not
match gets no connection through.
"""

from __future__ import annotations

import socket
from typing import Any

import trustme

from tests.e2e.conftest import Gateway, free_port
from tests.e2e.l4_backends import TLSBackend, conditions, gateway_doc, l4_route
from tests.e2e.test_https import tls_secret
from tests.e2e.test_l4_tls import client_context, tls_greeting

NS = "default"


def backend_docs(port: int, ca_pem: str) -> str:
    ca = "\n".join("    " + line for line in ca_pem.strip().splitlines())
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: btls-terminate-tls-backend, namespace: {NS}}}
spec: {{ports: [{{name: btls, protocol: TCP, port: 8443}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: btls-terminate-tls-backend
  namespace: {NS}
  labels: {{kubernetes.io/service-name: btls-terminate-tls-backend}}
addressType: IPv4
ports: [{{name: btls, port: {port}, protocol: TCP}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: tls-checks-ca-certificate, namespace: {NS}}}
data:
  ca.crt: |
{ca}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: btls-tlsroute-terminate-test, namespace: {NS}}}
spec:
  targetRefs: [{{group: "", kind: Service, name: btls-terminate-tls-backend, sectionName: btls}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: tls-checks-ca-certificate}}]
    hostname: abc.example.com
"""


def start(gateway: Gateway, front_ca: trustme.CA, trusted: trustme.CA, backend: TLSBackend) -> int:
    port = free_port()
    listener = f"""\
- name: tls-terminate
  protocol: TLS
  port: {port}
  hostname: tls.example.com
  allowedRoutes: {{kinds: [{{kind: TLSRoute}}]}}
  tls: {{mode: Terminate, certificateRefs: [{{name: tls-terminate-checks-certificate}}]}}
"""
    gateway.write("gw.yaml", gateway_doc(listener))
    gateway.write(
        "secret.yaml", tls_secret("tls-terminate-checks-certificate", front_ca, "tls.example.com")
    )
    gateway.write("backend.yaml", backend_docs(backend.port, trusted.cert_pem.bytes().decode()))
    route = l4_route(
        "TLSRoute",
        "backendtlspolicy-tlsroute-terminate",
        "[{name: btls-terminate-tls-backend, port: 8443}]",
        hostnames="[tls.example.com]",
    )
    gateway.write("route.yaml", route)
    gateway.start()
    return port


def policy_conditions(gateway: Gateway) -> dict[str, tuple[str, str]]:
    found: dict[str, Any] = gateway.resource("BackendTLSPolicy", "btls-tlsroute-terminate-test")
    (ancestor,) = found["status"]["ancestors"]
    return conditions(ancestor)


def test_backendtlspolicy_tlsroute_terminate(gateway: Gateway) -> None:
    front_ca, backend_ca = trustme.CA(), trustme.CA()
    backend = TLSBackend("tcp-backend", backend_ca, "abc.example.com")
    try:
        port = start(gateway, front_ca, backend_ca, backend)
        assert policy_conditions(gateway)["Accepted"] == ("True", "Accepted")
        assert policy_conditions(gateway)["ResolvedRefs"] == ("True", "ResolvedRefs")
        assert tls_greeting(port, front_ca, "tls.example.com") == "tcp-backend abc.example.com"
    finally:
        backend.stop()


def test_backendtlspolicy_tlsroute_terminate_refuses_an_untrusted_backend(
    gateway: Gateway,
) -> None:
    front_ca, backend_ca, other_ca = trustme.CA(), trustme.CA(), trustme.CA()
    backend = TLSBackend("tcp-backend", backend_ca, "abc.example.com")
    try:
        port = start(gateway, front_ca, other_ca, backend)
        with (
            socket.create_connection(("127.0.0.1", port), 10) as raw,
            client_context(front_ca).wrap_socket(raw, server_hostname="tls.example.com") as conn,
        ):
            conn.settimeout(10)
            assert conn.recv(100) == b""  # closed: the backend's certificate is not trusted
    finally:
        backend.stop()
