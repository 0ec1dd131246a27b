"""The upstream ``listenerset-*`` conformance tests, judged on ``translate()``'s statuses.

Each test is named after the upstream test it mirrors and reads the golden
case ``tests/golden/listenerset-<name>.in.yaml`` (the upstream manifest's
resources); it asserts what the upstream test asserts about status. The
traffic half of the routing tests is in ``tests/e2e/test_listenerset_e2e.py``.
"""

from __future__ import annotations

from typing import Any

from edgegw.translate import translate
from tests.unit.test_translate_golden import load_case

NS = "gateway-conformance-infra"
Statuses = dict[tuple[str, str, str], dict[str, Any]]


def statuses(case: str) -> Statuses:
    resources, options = load_case(f"listenerset-{case}")
    result = translate(resources, options)
    return {(s.kind, s.namespace or "", s.name): s.status for s in result.statuses}


def has(conditions: list[dict[str, Any]], type_: str, status: str, reason: str = "") -> bool:
    return any(
        c["type"] == type_ and c["status"] == status and (not reason or c["reason"] == reason)
        for c in conditions
    )


def gateway(got: Statuses, name: str) -> dict[str, Any]:
    status = got[("Gateway", NS, name)]
    assert has(status["conditions"], "Accepted", "True")
    return status


def listener_set(got: Statuses, name: str, ns: str = NS) -> dict[str, Any]:
    return got[("ListenerSet", ns, name)]


def listener(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(ls for ls in status["listeners"] if ls["name"] == name)


def assert_set(status: dict[str, Any], ok: bool, accepted: str, programmed: str) -> None:
    want = "True" if ok else "False"
    assert has(status["conditions"], "Accepted", want, accepted), status["conditions"]
    assert has(status["conditions"], "Programmed", want, programmed), status["conditions"]


def assert_listener_ok(entry: dict[str, Any], attached: int | None = None) -> None:
    for type_ in ("ResolvedRefs", "Accepted", "Programmed"):
        assert has(entry["conditions"], type_, "True"), entry
    if attached is not None:
        assert entry["attachedRoutes"] == attached, entry
        kinds = [k["kind"] for k in entry["supportedKinds"]]
        assert "HTTPRoute" in kinds


def assert_conflicted(entry: dict[str, Any], reason: str) -> None:
    assert has(entry["conditions"], "Accepted", "False", reason), entry
    assert has(entry["conditions"], "Programmed", "False", reason), entry
    assert has(entry["conditions"], "Conflicted", "True", reason), entry


def parent(got: Statuses, route: str, kind: str, name: str, ns: str = NS) -> dict[str, Any]:
    for entry in got[("HTTPRoute", ns, route)]["parents"]:
        ref = entry["parentRef"]
        if ref["kind"] == kind and ref["name"] == name:
            assert entry["controllerName"] == "edgegw.io/gateway-controller"
            return dict(entry)
    raise KeyError((route, kind, name))


def route_accepted(got: Statuses, route: str, kind: str, name: str, ns: str = NS) -> None:
    conditions = parent(got, route, kind, name, ns)["conditions"]
    assert has(conditions, "Accepted", "True"), conditions
    assert has(conditions, "ResolvedRefs", "True"), conditions


def not_allowed(case: str, gw: str, ls: str) -> None:
    """The Gateway takes no ListenerSet: NotAllowed, and none attached."""
    got = statuses(case)
    assert gateway(got, gw)["attachedListenerSets"] == 0
    assert_set(listener_set(got, ls), False, "NotAllowed", "NotAllowed")


def test_listenerset_allowed_namespace_none() -> None:
    not_allowed(
        "allowed-namespace-none", "gateway-does-not-allow-listenerset", "listenerset-not-allowed"
    )


def test_listenerset_default_not_allowed() -> None:
    not_allowed(
        "default-not-allowed",
        "gateway-default-does-not-allow-listenerset",
        "listenerset-default-not-allowed",
    )


def test_listenerset_allowed_namespace_same() -> None:
    got = statuses("allowed-namespace-same")
    assert gateway(got, "gateway-allows-listenerset-in-same-namespace")["attachedListenerSets"] == 1
    taken = listener_set(got, "listenerset-in-same-namespace")
    assert_set(taken, True, "Accepted", "Programmed")
    assert_listener_ok(listener(taken, "listenerset-in-same-namespace-listener"))
    refused = listener_set(
        got, "listenerset-in-different-namespace", "gateway-api-listenerset-not-allowed-ns"
    )
    assert_set(refused, False, "NotAllowed", "NotAllowed")


def test_listenerset_allowed_namespace_selector() -> None:
    got = statuses("allowed-namespace-selector")
    gw = gateway(got, "gateway-allows-listenerset-in-selected-namespace")
    assert gw["attachedListenerSets"] == 1
    taken = listener_set(
        got, "listenerset-in-selected-namespace", "gateway-api-listenerset-selector-allowed-ns"
    )
    assert_set(taken, True, "Accepted", "Programmed")
    assert_listener_ok(listener(taken, "listenerset-in-selected-namespace-listener"))
    refused = listener_set(
        got,
        "listenerset-not-in-selected-namespace",
        "gateway-api-listenerset-selector-not-allowed-ns",
    )
    assert_set(refused, False, "NotAllowed", "NotAllowed")


def test_listenerset_allowed_routes_namespaces() -> None:
    got = statuses("allowed-routes-namespaces")
    assert (
        gateway(got, "gateway-with-listener-sets-test-allowed-routes")["attachedListenerSets"] == 2
    )
    name = "listenerset-test-allowed-routes-namespaces"
    for route, ns in [
        ("route-in-same-namespace", NS),
        ("route-in-selected-namespace", "gateway-api-routes-allowed-ns"),
        ("route-not-in-selected-namespace", "gateway-api-routes-not-allowed-ns"),
    ]:
        route_accepted(got, route, "ListenerSet", name, ns)
    status = listener_set(got, name)
    assert_listener_ok(listener(status, "listener-set-listener-allowed-routes-all"), 3)
    assert_listener_ok(listener(status, "listener-set-listener-allowed-routes-same"), 1)
    assert_listener_ok(listener(status, "listener-set-listener-allowed-routes-selector"), 1)
    assert len(status["listeners"]) == 3
    # cross-namespace set: "Same" is the ListenerSet's namespace, not the Gateway's
    cross_ns, cross = "gateway-api-ls-cross-ns", "listenerset-test-allowed-routes-cross-ns"
    route_accepted(got, "route-in-listenerset-namespace", "ListenerSet", cross, cross_ns)
    refused = parent(got, "route-in-gateway-namespace", "ListenerSet", cross)
    assert has(refused["conditions"], "Accepted", "False", "NotAllowedByListeners")
    entry = listener(
        listener_set(got, cross, cross_ns), "listener-set-listener-allowed-routes-cross-ns-same"
    )
    assert_listener_ok(entry, 1)


def test_listenerset_allowed_routes_supported_kinds() -> None:
    got = statuses("allowed-routes-supported-kinds")
    gateway(got, "gateway-with-listener-sets-test-supported-route-kinds")
    status = listener_set(got, "listenerset-test-allowed-routes-supported-kinds")
    entry = listener(status, "listener-set-listener-allowed-routes-tls-only")
    assert has(entry["conditions"], "ResolvedRefs", "False", "InvalidRouteKinds")


def test_listenerset_dual_parentref_independence() -> None:
    got = statuses("dual-parentref-independence")
    gw_name, ls_name = "gateway-dual-parentref", "ls-dual-parentref"
    assert gateway(got, gw_name)["attachedListenerSets"] == 1
    assert_listener_ok(listener(listener_set(got, ls_name), "ls-dual-parentref-listener"), 2)
    route_accepted(got, "route-dual-parentref-both", "Gateway", gw_name)
    route_accepted(got, "route-dual-parentref-both", "ListenerSet", ls_name)
    wrong = parent(got, "route-dual-parentref-one", "Gateway", gw_name)
    assert has(wrong["conditions"], "Accepted", "False", "NoMatchingParent")
    route_accepted(got, "route-dual-parentref-one", "ListenerSet", ls_name)


def test_listenerset_gateway_parent_section_name_not_found() -> None:
    got = statuses("gateway-parent-section-name-not-found")
    assert gateway(got, "gateway-section-name")["attachedListenerSets"] == 1
    route_accepted(got, "route-via-listenerset", "ListenerSet", "listenerset-section-name")
    wrong = parent(got, "route-via-gateway", "Gateway", "gateway-section-name")
    assert has(wrong["conditions"], "Accepted", "False", "NoMatchingParent")


def conflicts(kind: str) -> None:
    """Across a Gateway and its sets, the earlier of two conflicting listeners wins."""
    reason = f"{kind.capitalize()}Conflict"
    got = statuses(f"{kind}-conflict")
    gw = gateway(got, f"gateway-with-listenerset-{kind}-conflict")
    assert_listener_ok(listener(gw, "gateway-listener"))
    assert_listener_ok(listener(gw, f"{kind}-conflict-with-gateway-listener"))
    assert gw["attachedListenerSets"] == 2
    prefix = f"listenerset-with-{kind}-conflict-with"
    first = listener_set(got, f"{prefix}-gateway-1")
    assert_set(first, True, "", "Programmed")
    assert_listener_ok(listener(first, "listener-set-1-listener"))
    assert_conflicted(listener(first, f"{kind}-conflict-with-gateway-listener"), reason)
    assert_listener_ok(listener(first, f"{kind}-conflict-with-listener-set-listener"))
    second = listener_set(got, f"{prefix}-gateway-2")
    assert_set(second, False, "ListenersNotValid", "ListenersNotValid")
    assert_conflicted(listener(second, f"{kind}-conflict-with-gateway-listener"), reason)
    third = listener_set(got, f"{prefix}-listener-set-1")
    assert_set(third, True, "", "Programmed")
    assert_listener_ok(listener(third, "listener-set-2-listener"))
    assert_conflicted(listener(third, f"{kind}-conflict-with-listener-set-listener"), reason)
    fourth = listener_set(got, f"{prefix}-listener-set-2")
    assert_set(fourth, False, "ListenersNotValid", "ListenersNotValid")
    assert_conflicted(listener(fourth, f"{kind}-conflict-with-listener-set-listener"), reason)


def test_listenerset_hostname_conflict() -> None:
    conflicts("hostname")


def test_listenerset_protocol_conflict() -> None:
    conflicts("protocol")


def test_listenerset_http_routing() -> None:
    got = statuses("http-routing")
    gw_name = "gateway-with-listener-sets-http-routing"
    assert gateway(got, gw_name)["attachedListenerSets"] == 2
    for route in ("attaches-to-all-listeners", "gateway-route", "gateway-section-route"):
        route_accepted(got, route, "Gateway", gw_name)
    one, two = "listener-set-http-routing-1", "listener-set-http-routing-2"
    for route in ("attaches-to-all-listeners", f"{one}-route", f"{one}-section-route"):
        route_accepted(got, route, "ListenerSet", one)
    for route in ("attaches-to-all-listeners", f"{two}-route"):
        route_accepted(got, route, "ListenerSet", two)
    assert_listener_ok(listener(listener_set(got, one), f"{one}-listener-1"), 3)
    assert_listener_ok(listener(listener_set(got, one), f"{one}-listener-2"), 2)
    assert_listener_ok(listener(listener_set(got, two), f"{two}-listener-1"), 2)
    assert_listener_ok(listener(listener_set(got, two), f"{two}-listener-2"), 2)


def test_listenerset_reference_grant() -> None:
    got = statuses("reference-grant")
    gateway(got, "gateway-with-listener-sets-test-reference-grant")
    granted = listener_set(got, "listenerset-with-reference-grant")
    assert_set(granted, True, "", "")
    entry = listener(granted, "listenerset-with-reference-grant-listener")
    assert has(entry["conditions"], "ResolvedRefs", "True")
    refused = listener_set(
        got,
        "listenerset-without-reference-grant",
        "gateway-api-listener-sets-test-reference-grant-ns",
    )
    assert_set(refused, False, "ListenersNotValid", "ListenersNotValid")
    entry = listener(refused, "listenerset-without-reference-grant-listener")
    assert has(entry["conditions"], "ResolvedRefs", "False", "RefNotPermitted")


def test_listenerset_route_status_scoped_to_parentref() -> None:
    got = statuses("route-status-scoped-to-parentref")
    assert gateway(got, "gateway-parentref")["attachedListenerSets"] == 1
    entry = listener(listener_set(got, "listenerset-parentref"), "listenerset-parentref-listener")
    assert_listener_ok(entry, 1)
    for route, kind, name in [
        ("route-parentref-gwonly", "Gateway", "gateway-parentref"),
        ("route-parentref-lsonly", "ListenerSet", "listenerset-parentref"),
    ]:
        parents = got[("HTTPRoute", NS, route)]["parents"]
        assert [p["parentRef"] for p in parents] == [
            {"group": "gateway.networking.k8s.io", "kind": kind, "namespace": NS, "name": name}
        ]
        route_accepted(got, route, kind, name)
