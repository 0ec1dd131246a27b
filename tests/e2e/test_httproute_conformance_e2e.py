"""Upstream HTTPRoute tests, each with its manifest and its requests, through ``edgegw run``.

The conformance base: Gateway ``same-namespace`` (routes from its own
namespace) and ``backend-namespaces`` (routes from namespaces labelled
``gateway-conformance: backend``) in ``gateway-conformance-infra``, with
``edgegw echo`` backends named as upstream's, so each answer names its backend.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

from tests.e2e.conftest import GATEWAY_CLASS, Echo, Gateway, echoed, free_port, request

INFRA, WEB = "gateway-conformance-infra", "gateway-conformance-web-backend"
V1, V2 = "infra-backend-v1", "infra-backend-v2"


def base(port: int, other: int) -> str:
    selector = "{matchLabels: {gateway-conformance: backend}}"
    return (
        GATEWAY_CLASS
        + f"""\
---
apiVersion: v1
kind: Namespace
metadata: {{name: {WEB}, labels: {{gateway-conformance: backend}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: same-namespace, namespace: {INFRA}}}
spec:
  gatewayClassName: edgegw
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: backend-namespaces, namespace: {INFRA}}}
spec:
  gatewayClassName: edgegw
  listeners:
  - name: http
    port: {other}
    protocol: HTTP
    allowedRoutes: {{namespaces: {{from: Selector, selector: {selector}}}}}
"""
    )


def serve(
    gateway: Gateway, echoes: dict[str, Echo], route: str, *, resolved: bool = True
) -> tuple[int, int]:
    """Start the base plus ``route``; returns the ports of same-namespace and backend-namespaces.

    Every route is Accepted, and with ``resolved`` its references resolve too.
    """
    port, other = free_port(), free_port()
    for name in (V1, V2):
        gateway.service(name, echoes[name], namespace=INFRA, port=8080)
    gateway.service("web-backend", echoes["web-backend"], namespace=WEB, port=8080)
    gateway.write("base.yaml", base(port, other))
    gateway.write("route.yaml", route)
    gateway.start()
    for res in gateway.status()["resources"]:
        if res["kind"] == "HTTPRoute":
            for parent in res["status"]["parents"]:
                states = {c["type"]: c["status"] for c in parent["conditions"]}
                assert states["Accepted"] == "True", res
                assert states["ResolvedRefs"] == ("True" if resolved else "False"), res
    return port, other


def route(name: str, rules: str, *, parent: str = "same-namespace", ns: str = INFRA) -> str:
    parent_ns = f", namespace: {INFRA}" if ns != INFRA else ""
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {ns}}}
spec:
  parentRefs: [{{name: {parent}{parent_ns}}}]
  rules:
{rules}"""


def backend_of(port: int, path: str) -> str | int:
    status, _, body = request(port, path)
    return str(echoed(body)["pod"]) if status == 200 else status


def test_httproute_simple_same_namespace(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port, _ = serve(
        gateway,
        echoes,
        route(
            "gateway-conformance-infra-test",
            "  - backendRefs: [{name: infra-backend-v1, port: 8080}]\n",
        ),
    )
    assert backend_of(port, "/") == V1


def test_httproute_cross_namespace(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    rules = "  - backendRefs: [{name: web-backend, port: 8080}]\n"
    _, other = serve(
        gateway, echoes, route("cross-namespace", rules, parent="backend-namespaces", ns=WEB)
    )
    assert backend_of(other, "/") == "web-backend"


def test_httproute_exact_path_matching(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    rules = """\
  - matches: [{path: {type: Exact, value: /one}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: Exact, value: /two}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
"""
    port, _ = serve(gateway, echoes, route("exact-matching", rules))
    assert backend_of(port, "/one") == V1
    assert backend_of(port, "/two") == V2
    for path in ("/", "/one/example", "/two/", "/Two"):
        assert backend_of(port, path) == 404, path


def test_httproute_no_backend_refs(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    rules = """\
  - matches: [{path: {type: Exact, value: /omitted-no-forward}}]
  - matches: [{path: {type: Exact, value: /empty-no-forward}}]
    backendRefs: []
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
"""
    port, _ = serve(gateway, echoes, route("omitted-backendrefs", rules))
    assert backend_of(port, "/forward") == V1
    assert backend_of(port, "/omitted-no-forward") == 500
    assert backend_of(port, "/empty-no-forward") == 500


def redirect_case(gateway: Gateway, echoes: dict[str, Echo], code: int, path: str) -> None:
    rules = f"""\
  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
    filters: [{{type: RequestRedirect, requestRedirect: {{statusCode: {code}}}}}]
"""
    port, _ = serve(gateway, echoes, route(f"{code}-redirect", rules))
    status, headers, _ = request(port, path)
    assert status == code
    assert urlsplit(headers["location"]).path == path


def test_httproute_303_redirect(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    redirect_case(gateway, echoes, 303, "/see-other")


def test_httproute_307_redirect(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    redirect_case(gateway, echoes, 307, "/temporary")


def test_httproute_308_redirect(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    redirect_case(gateway, echoes, 308, "/permanent")


def test_httproute_invalid_reference_grant(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    """Every ReferenceGrant is wrong in one way: RefNotPermitted, and 500 for the request."""
    gw_group = "gateway.networking.k8s.io"
    wrong = [  # name, namespace, from (group, kind, namespace), to (group, kind, name)
        ("wrong-namespace", INFRA, gw_group, "HTTPRoute", INFRA, "", "Service", "web-backend"),
        ("wrong-from-group", WEB, "other", "HTTPRoute", INFRA, "", "Service", "web-backend"),
        ("wrong-from-kind", WEB, gw_group, "Gateway", INFRA, "", "Service", "web-backend"),
        ("wrong-from-ns", WEB, gw_group, "HTTPRoute", "elsewhere", "", "Service", "web-backend"),
        ("wrong-to-group", WEB, gw_group, "HTTPRoute", INFRA, "other", "Service", "web-backend"),
        ("wrong-to-kind", WEB, gw_group, "HTTPRoute", INFRA, "", "Secret", "web-backend"),
        ("wrong-to-name", WEB, gw_group, "HTTPRoute", INFRA, "", "Service", "not-the-service"),
    ]
    grants = "".join(
        f"""\
---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {{name: reference-grant-{name}, namespace: {ns}}}
spec:
  from: [{{group: {from_group}, kind: {from_kind}, namespace: {from_ns}}}]
  to: [{{group: "{to_group}", kind: {to_kind}, name: {to_name}}}]
"""
        for name, ns, from_group, from_kind, from_ns, to_group, to_kind, to_name in wrong
    )
    rules = f"  - backendRefs: [{{name: web-backend, namespace: {WEB}, port: 8080}}]\n"
    port, _ = serve(gateway, echoes, route("reference-grant", rules) + grants, resolved=False)
    parents = gateway.resource("HTTPRoute", "reference-grant", INFRA)["status"]["parents"]
    found = {c["type"]: (c["status"], c["reason"]) for c in parents[0]["conditions"]}
    assert found["ResolvedRefs"] == ("False", "RefNotPermitted")
    assert backend_of(port, "/") == 500


def test_httproute_weight(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    """Weights 70/30/0: the split within 10 points of the weights, weight 0 gets nothing."""
    rules = (
        "  - backendRefs: [{name: infra-backend-v1, port: 8080, weight: 70}, "
        "{name: infra-backend-v2, port: 8080, weight: 30}, "
        "{name: infra-backend-v3, port: 8080, weight: 0}]\n"
    )
    gateway.service("infra-backend-v3", echoes["infra-backend-v3"], namespace=INFRA, port=8080)
    port, _ = serve(gateway, echoes, route("weighted-backends", rules))
    total = 300
    seen = Counter(backend_of(port, f"/?n={i}") for i in range(total))
    assert set(seen) <= {V1, V2}, seen
    assert abs(seen[V1] / total - 0.7) < 0.1, seen
    assert abs(seen[V2] / total - 0.3) < 0.1, seen


def test_httproute_named_rule(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    rules = """\
  - name: named-rule
    matches: [{path: {type: PathPrefix, value: /named}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /unnamed}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
"""
    port, _ = serve(gateway, echoes, route("http-named-rules", rules))
    assert backend_of(port, "/named") == V1
    assert backend_of(port, "/unnamed") == V2
