"""Upstream TCPRoute, TLSRoute and UDPRoute tests judged on ``translate()``'s statuses.

Each test is named after the upstream test it mirrors and reads the golden
case ``tests/golden/l4-conformance.in.yaml``. The traffic halves (a TLS
connection to a route without a usable backend is closed; an attach-all
route serves every listener) are in ``tests/e2e/test_l4_conformance_e2e.py``.
"""

from __future__ import annotations

from typing import Any

from edgegw.translate import translate
from tests.unit.test_listenerset_conformance import has
from tests.unit.test_translate_golden import load_case

NS = "gateway-conformance-infra"
ROUTE_GROUP = "gateway.networking.k8s.io"


def statuses() -> dict[tuple[str, str], dict[str, Any]]:
    resources, options = load_case("l4-conformance")
    return {(s.kind, s.name): s.status for s in translate(resources, options).statuses}


def parent_conditions(kind: str, route: str, gateway: str) -> list[dict[str, Any]]:
    for parent in statuses()[(kind, route)]["parents"]:
        if parent["parentRef"]["name"] == gateway:
            return list(parent["conditions"])
    raise KeyError((kind, route, gateway))


def listeners(gateway: str) -> dict[str, dict[str, Any]]:
    return {ls["name"]: ls for ls in statuses()[("Gateway", gateway)]["listeners"]}


def test_udproute_not_allowed_by_listeners() -> None:
    gw = "udproute-tls-only-gateway"
    found = parent_conditions("UDPRoute", "udproute-not-allowed-by-listeners", gw)
    assert has(found, "Accepted", "False", "NotAllowedByListeners")
    assert all(ls["attachedRoutes"] == 0 for ls in listeners(gw).values())


def test_udproute_invalid_backend_ref_nonexistent() -> None:
    found = parent_conditions(
        "UDPRoute", "udp-route-invalid-backend-ref-nonexistent", "udp-gateway-invalid-backend"
    )
    assert has(found, "ResolvedRefs", "False", "BackendNotFound")


def test_udproute_invalid_cross_namespace_backend_ref() -> None:
    gw = "udp-gateway-invalid-cross-namespace-backend-ref"
    found = parent_conditions("UDPRoute", "udp-route-invalid-cross-namespace-backend-ref", gw)
    assert has(found, "Accepted", "True")
    assert has(found, "ResolvedRefs", "False", "RefNotPermitted")


def test_tcproute_invalid_backend_ref_nonexistent() -> None:
    found = parent_conditions(
        "TCPRoute", "tcp-route-invalid-backend-ref-nonexistent", "tcp-gateway-invalid-backend"
    )
    assert has(found, "ResolvedRefs", "False", "BackendNotFound")


def test_tlsroute_invalid_backend_ref_nonexistent() -> None:
    gw = "gateway-tlsroute-invalid-backend-ref-nonexistent"
    found = parent_conditions("TLSRoute", "invalid-backend-ref-nonexistent", gw)
    assert has(found, "Accepted", "True")
    assert has(found, "ResolvedRefs", "False", "BackendNotFound")


def test_tlsroute_invalid_backend_ref_unknown_kind() -> None:
    gw = "gateway-tlsroute-invalid-backend-ref-unknown-kind"
    found = parent_conditions("TLSRoute", "invalid-backend-ref-unknown-kind", gw)
    assert has(found, "Accepted", "True")
    assert has(found, "ResolvedRefs", "False", "InvalidKind")


def test_tlsroute_invalid_reference_grant() -> None:
    gw = "gateway-tlsroute-referencegrant"
    found = parent_conditions("TLSRoute", "gateway-conformance-infra-test", gw)
    assert has(found, "Accepted", "True")
    assert has(found, "ResolvedRefs", "False", "RefNotPermitted")


def test_tlsroute_listener_passthrough_supported_kinds() -> None:
    entry = listeners("gateway-tlsroute-passthrough-supported-kind")["tls-passthrough"]
    assert entry["supportedKinds"] == [{"group": ROUTE_GROUP, "kind": "TLSRoute"}]
    assert has(entry["conditions"], "ResolvedRefs", "False", "InvalidRouteKinds")
    assert entry["attachedRoutes"] == 0


def test_tlsroute_listener_terminate_supported_kinds() -> None:
    entry = listeners("gateway-tlsroute-terminate-supported")["tls-terminate"]
    assert entry["supportedKinds"] == [{"group": ROUTE_GROUP, "kind": "TLSRoute"}]
    assert has(entry["conditions"], "Accepted", "True", "Accepted")
    assert entry["attachedRoutes"] == 0


def test_tcproute_parentref_attach_all() -> None:
    gw = "tcp-attach-all-gateway"
    assert has(parent_conditions("TCPRoute", "tcp-route-attach-all", gw), "Accepted", "True")
    got = listeners(gw)
    assert sorted(got) == ["four", "one", "three", "two"]
    for entry in got.values():
        assert entry["attachedRoutes"] == 1
        assert entry["supportedKinds"] == [{"group": ROUTE_GROUP, "kind": "TCPRoute"}]


def test_udproute_parentref_attach_all_listeners() -> None:
    gw = "udp-attach-all-listeners-gateway"
    found = parent_conditions("UDPRoute", "udp-route-attach-all", gw)
    assert has(found, "Accepted", "True", "Accepted")
    got = listeners(gw)
    assert sorted(got) == ["udp-1", "udp-2", "udp-3"]
    for entry in got.values():
        assert entry["attachedRoutes"] == 1
        assert has(entry["conditions"], "Accepted", "True")
        assert has(entry["conditions"], "ResolvedRefs", "True")


def test_udproute_multiple_routes_attachment() -> None:
    gw = "udp-multi-route-attach-gateway"
    for route in ("udproute-attach-older", "udproute-attach-newer"):
        assert has(parent_conditions("UDPRoute", route, gw), "Accepted", "True", "Accepted")
    entry = listeners(gw)["udp"]
    assert entry["attachedRoutes"] == 2
    assert has(entry["conditions"], "Accepted", "True", "Accepted")
