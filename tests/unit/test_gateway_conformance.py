"""Upstream Gateway conformance tests judged on ``translate()``'s statuses.

Each test is named after the upstream test it mirrors and reads the golden
case ``tests/golden/gateway-conformance.in.yaml``. Their traffic halves:
``tests/e2e/test_gateway_addresses_e2e.py`` (static addresses) and
``tests/e2e/test_frontend_insecure_fallback_e2e.py`` (AllowInsecureFallback lets clients through).
The rest are status-only upstream, on ``tests/golden/gateway-status-conformance.in.yaml``.
"""

from __future__ import annotations

from typing import Any

from edgegw.net.localaddr import local_addresses
from edgegw.translate import translate
from tests.unit.test_listenerset_conformance import has
from tests.unit.test_translate_golden import load_case

NS = "gateway-conformance-infra"


def gateway(name: str) -> dict[str, Any]:
    resources, options = load_case("gateway-conformance")
    for status in translate(resources, options).statuses:
        if status.kind == "Gateway" and (status.namespace, status.name) == (NS, name):
            return status.status
    raise KeyError(name)


def test_gateway_invalid_parameters_ref() -> None:
    status = gateway("gateway-invalid-parameters-ref")
    assert has(status["conditions"], "Accepted", "False", "InvalidParameters")


def test_gateway_static_addresses() -> None:
    # step 1: an address type edgegw does not support
    status = gateway("gateway-static-addresses-step-1")
    assert has(status["conditions"], "Accepted", "False", "UnsupportedAddress")
    # step 2: that one removed; 203.0.113.9 is not on this host nor announced
    status = gateway("gateway-static-addresses-step-2")
    assert has(status["conditions"], "Accepted", "True", "Accepted")
    assert has(status["conditions"], "Programmed", "False", "AddressNotUsable")
    assert status["addresses"] == []
    # step 3: only the local address left
    status = gateway("gateway-static-addresses-step-3")
    assert has(status["conditions"], "Accepted", "True", "Accepted")
    assert has(status["conditions"], "Programmed", "True", "Programmed")
    assert status["addresses"] == [{"type": "IPAddress", "value": "127.0.0.10"}]
    (listener,) = status["listeners"]
    assert has(listener["conditions"], "Accepted", "True")
    assert has(listener["conditions"], "ResolvedRefs", "True")
    assert listener["attachedRoutes"] == 0


def test_gateway_static_address_in_a_pool_is_usable_only_when_announced() -> None:
    status = gateway("static-in-announced-pool")
    assert has(status["conditions"], "Programmed", "True", "Programmed")
    status = gateway("static-in-silent-pool")
    assert has(status["conditions"], "Programmed", "False", "AddressNotUsable")


def test_local_addresses_asks_the_kernel() -> None:
    """Loopback addresses are local; a documentation address is not (nor is a bad string)."""
    got = local_addresses(["127.0.0.1", "127.0.0.10", "0.0.0.0", "203.0.113.9", "nonsense"])
    assert got == {"127.0.0.1", "127.0.0.10", "0.0.0.0"}


def test_gateway_frontend_client_certificate_validation_insecure_fallback() -> None:
    status = gateway("client-validation-insecure-fallback")
    conditions = status["conditions"]
    assert has(conditions, "InsecureFrontendValidationMode", "True", "ConfigurationChanged")
    assert has(conditions, "Accepted", "True")
    for listener in status["listeners"]:
        assert has(listener["conditions"], "Programmed", "True"), listener
        assert has(listener["conditions"], "ResolvedRefs", "True"), listener


def test_no_insecure_frontend_condition_when_only_valid_certificates_pass() -> None:
    """The condition is absent once every port is back to AllowValidOnly."""
    status = gateway("gateway-static-addresses-step-3")
    assert not any(c["type"] == "InsecureFrontendValidationMode" for c in status["conditions"])


def status_of(kind: str, name: str) -> dict[str, Any]:
    resources, options = load_case("gateway-status-conformance")
    for status in translate(resources, options).statuses:
        if (status.kind, status.name) == (kind, name):
            return status.status
    raise KeyError(name)


def only_listener(gateway_name: str) -> dict[str, Any]:
    (listener,) = status_of("Gateway", gateway_name)["listeners"]
    return dict(listener)


def test_gateway_secret_invalid_reference_grant() -> None:
    entry = only_listener("gateway-secret-invalid-reference-grant")
    assert entry["name"] == "https"
    assert has(entry["conditions"], "ResolvedRefs", "False", "RefNotPermitted")
    assert entry["attachedRoutes"] == 0


def test_gateway_secret_reference_grant_all_in_namespace() -> None:
    entry = only_listener("gateway-secret-reference-grant-all-in-namespace")
    assert has(entry["conditions"], "Programmed", "True", "Programmed")
    assert has(entry["conditions"], "ResolvedRefs", "True")
    assert entry["attachedRoutes"] == 0


def test_gateway_name_maximum_length() -> None:
    name = "gateway-name-maximum-length-" + "a" * 225
    assert len(name) == 253
    status = status_of("Gateway", name)
    assert has(status["conditions"], "Accepted", "True")
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])


def test_gateway_optional_address_value() -> None:
    status = status_of("Gateway", "gateway-without-address-value")
    assert has(status["conditions"], "Accepted", "True")
    assert status["addresses"], "an address is assigned"


def test_httproute_invalid_parent_ref_not_matching_section_name() -> None:
    (parent,) = status_of("HTTPRoute", "httproute-listener-not-matching-section-name")["parents"]
    assert has(parent["conditions"], "Accepted", "False", "NoMatchingParent")
    assert only_listener("same-namespace")["attachedRoutes"] == 0


def test_gateway_with_attached_routes() -> None:
    for gateway_name, attached in (
        ("gateway-with-one-attached-route", 1),
        ("gateway-with-two-attached-routes", 2),
    ):
        entry = only_listener(gateway_name)
        assert has(entry["conditions"], "Accepted", "True")
        assert has(entry["conditions"], "ResolvedRefs", "True")
        assert entry["attachedRoutes"] == attached, gateway_name
    (parent,) = status_of("HTTPRoute", "http-route-not-accepted")["parents"]
    assert has(parent["conditions"], "Accepted", "False", "NoMatchingListenerHostname")
    # attachedRoutes is set even when the listener's certificate does not resolve
    entry = only_listener("unresolved-gateway-with-one-attached-unresolved-route")
    assert has(entry["conditions"], "Programmed", "False")
    assert has(entry["conditions"], "ResolvedRefs", "False")
    assert entry["attachedRoutes"] == 1
    (parent,) = status_of("HTTPRoute", "http-route-4")["parents"]
    assert has(parent["conditions"], "ResolvedRefs", "False")


def test_httproute_invalid_parent_ref_section_name_not_matching_port() -> None:
    route = "httproute-listener-section-name-not-matching-port"
    (parent,) = status_of("HTTPRoute", route)["parents"]
    assert has(parent["conditions"], "Accepted", "False", "NoMatchingParent")
    entry = only_listener("gateway-with-one-not-matching-port-and-section-name-route")
    assert entry["attachedRoutes"] == 0
