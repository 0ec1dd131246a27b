"""The upstream ``*ObservedGenerationBump`` tests through ``edgegw run``.

Each mutates one resource's spec as the upstream test does (a GatewayClass
description, a Gateway listener added, an HTTPRoute backend swapped, a
BackendTLSPolicy hostname changed) and checks that ``metadata.generation``
rose by one and that every condition of that resource now carries it as
``observedGeneration``, still Accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import trustme

from tests.e2e.conftest import Echo, Gateway, free_port

NS = "gateway-conformance-infra"


def resources(
    port: int,
    ca_pem: str,
    *,
    description: str = "",
    extra_listener: bool = False,
    backend: str = "infra-backend-v1",
    hostname: str = "abc.example.com",
) -> str:
    """The manifests; keyword arguments are the mutations the upstream tests make."""
    ca = "\n".join("    " + line for line in ca_pem.strip().splitlines())
    desc = f", description: {description}" if description else ""
    alternate = (
        f"\n  - {{name: alternate, port: {port}, protocol: HTTP, hostname: foo.com, "
        "allowedRoutes: {namespaces: {from: All}}}"
        if extra_listener
        else ""
    )
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: edgegw}}
spec: {{controllerName: edgegw.io/gateway-controller{desc}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: same-namespace, namespace: {NS}}}
spec:
  gatewayClassName: edgegw
  listeners:
  - {{name: http, port: {port}, protocol: HTTP}}{alternate}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: observed-generation-bump, namespace: {NS}}}
spec:
  parentRefs: [{{name: same-namespace}}]
  rules: [{{backendRefs: [{{name: {backend}, port: 8080}}]}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: backend-tls-checks-certificate, namespace: {NS}}}
data:
  ca.crt: |
{ca}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: observed-generation-bump, namespace: {NS}}}
spec:
  targetRefs: [{{group: "", kind: Service, name: infra-backend-v1}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: backend-tls-checks-certificate}}]
    hostname: {hostname}
"""


def conditions(node: Any) -> Iterator[dict[str, Any]]:
    """Every condition anywhere under a status."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "conditions":
                yield from value
            else:
                yield from conditions(value)
    elif isinstance(node, list):
        for item in node:
            yield from conditions(item)


def check_bump(
    gateway: Gateway,
    echoes: dict[str, Echo],
    kind: str,
    name: str,
    namespace: str | None,
    **change: Any,
) -> None:
    ca_pem = trustme.CA().cert_pem.bytes().decode()
    port = free_port()
    for backend in ("infra-backend-v1", "infra-backend-v2"):
        gateway.service(backend, echoes[backend], namespace=NS, port=8080)
    gateway.write("config.yaml", resources(port, ca_pem))
    gateway.start()
    before = gateway.resource(kind, name, namespace)
    generation = before["metadata"]["generation"]
    assert all(c["observedGeneration"] == generation for c in conditions(before["status"]))
    reloads = gateway.generation()
    gateway.write("config.yaml", resources(port, ca_pem, **change))
    gateway.wait_generation_after(reloads)
    after = gateway.resource(kind, name, namespace)
    assert after["metadata"]["generation"] == generation + 1
    found = list(conditions(after["status"]))
    assert found
    assert all(c["observedGeneration"] == generation + 1 for c in found), found
    assert any(c["type"] == "Accepted" and c["status"] == "True" for c in found)


def test_gatewayclass_observed_generation_bump(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    check_bump(gateway, echoes, "GatewayClass", "edgegw", None, description="new")


def test_gateway_observed_generation_bump(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    check_bump(gateway, echoes, "Gateway", "same-namespace", NS, extra_listener=True)


def test_httproute_observed_generation_bump(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    check_bump(
        gateway, echoes, "HTTPRoute", "observed-generation-bump", NS, backend="infra-backend-v2"
    )


def test_backendtlspolicy_observed_generation_bump(
    gateway: Gateway, echoes: dict[str, Echo]
) -> None:
    check_bump(
        gateway,
        echoes,
        "BackendTLSPolicy",
        "observed-generation-bump",
        NS,
        hostname="foo.example.com",
    )
