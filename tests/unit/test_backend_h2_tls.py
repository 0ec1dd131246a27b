"""HTTP/2 over TLS to backends: which backends become "h2" and offer ALPN h2."""

from __future__ import annotations

import pytest

from edgegw import api, ir
from edgegw.api.meta import BackendObjectReference
from edgegw.config.decode import decode
from edgegw.config.parse import parse
from edgegw.translate.backends import BackendContext, resolve
from edgegw.translate.backendtls import BackendTLSPolicies
from edgegw.translate.index import Index

RESOURCES = """\
apiVersion: v1
kind: Service
metadata: {name: h2, namespace: default}
spec: {ports: [{name: h2, port: 443, appProtocol: kubernetes.io/h2c}]}
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: default}
spec: {ports: [{name: https, port: 443}]}
---
apiVersion: v1
kind: Service
metadata: {name: cleartext, namespace: default}
spec: {ports: [{name: h2c, port: 80, appProtocol: kubernetes.io/h2c}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: tls, namespace: default}
spec:
  targetRefs:
  - {group: "", kind: Service, name: h2}
  - {group: "", kind: Service, name: plain}
  validation:
    wellKnownCACertificates: System
    hostname: backend.example.com
    subjectAltNames: [{type: Hostname, hostname: "*.example.com"}]
"""


def _context(kind: str) -> BackendContext:
    objects = [decode(doc) for doc in parse("backends.yaml", RESOURCES)]
    index = Index(api.build_resources(objects))
    return BackendContext(
        index=index,
        policies=BackendTLSPolicies(index),
        route_kind=kind,
        route_ns="default",
        gateways=set(),
        grpc=kind == "GRPCRoute",
    )


def _resolve(kind: str, service: str, port: int) -> ir.Backend:
    backend, problem = resolve(_context(kind), BackendObjectReference(name=service, port=port))
    assert problem is None
    return backend


@pytest.mark.parametrize(
    ("kind", "service", "port"),
    [("HTTPRoute", "h2", 443), ("GRPCRoute", "h2", 443), ("GRPCRoute", "plain", 443)],
)
def test_h2_over_tls_offers_alpn_h2_keeping_the_policy(kind: str, service: str, port: int) -> None:
    backend = _resolve(kind, service, port)
    assert backend.app_protocol == "h2"
    assert backend.tls == ir.BackendTLS(
        hostname="backend.example.com", subject_alt_names=("*.example.com",), alpn=("h2",)
    )


def test_http1_over_tls_offers_no_alpn() -> None:
    backend = _resolve("HTTPRoute", "plain", 443)
    assert backend.app_protocol == "http1"
    assert backend.tls is not None
    assert backend.tls.alpn == ()


def test_h2c_without_tls_stays_cleartext() -> None:
    for kind in ("HTTPRoute", "GRPCRoute"):
        backend = _resolve(kind, "cleartext", 80)
        assert backend.app_protocol == "h2c"
        assert backend.tls is None


def test_l4_relay_chooses_no_alpn() -> None:
    """A TCPRoute relays the client's bytes: the backend's TLS must not promise h2."""
    backend = _resolve("TCPRoute", "h2", 443)
    assert backend.tls is not None
    assert backend.tls.alpn == ()
