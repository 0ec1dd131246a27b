"""Route matching against the Gateway API conformance tests' own expectations.

Each table below is the conformance test's manifest turned into IR (as the
translator would produce it) and its request → backend expectations, so a
failure here names the conformance case that would fail.
"""

from __future__ import annotations

import msgspec
import pytest

from edgegw import ir
from edgegw.routing import ListenerTable, PortTable, compile_port

V1, V2, V3 = "infra-backend-v1", "infra-backend-v2", "infra-backend-v3"
NOT_FOUND = None


def prefix(path: str, **kw: object) -> ir.HTTPMatch:
    return ir.HTTPMatch(path_type="PathPrefix", path=path, **kw)  # type: ignore[arg-type]


def exact(path: str) -> ir.HTTPMatch:
    return ir.HTTPMatch(path_type="Exact", path=path)


def headers(*pairs: tuple[str, str], **kw: object) -> ir.HTTPMatch:
    values = tuple(ir.ValueMatch(name=n, value=v) for n, v in pairs)
    return ir.HTTPMatch(headers=values, **kw)  # type: ignore[arg-type]


def params(*pairs: tuple[str, str], **kw: object) -> ir.HTTPMatch:
    values = tuple(ir.ValueMatch(name=n, value=v) for n, v in pairs)
    return ir.HTTPMatch(query=values, **kw)  # type: ignore[arg-type]


def rule(backend: str, *matches: ir.HTTPMatch) -> ir.HTTPRouteRule:
    return ir.HTTPRouteRule(
        index=0, matches=matches or (ir.HTTPMatch(),), backends=(ir.Backend(name=backend),)
    )


def route(
    name: str, *rules: ir.HTTPRouteRule, hostnames: tuple[str, ...] = (), created: float = 0.0
) -> ir.HTTPRoute:
    ns = "gateway-conformance-infra"
    return ir.HTTPRoute(
        namespace=ns,
        name=name,
        hostnames=hostnames,
        rules=tuple(msgspec.structs.replace(r, index=i) for i, r in enumerate(rules)),
        precedence=(created, ns, name),
    )


def listener(*routes: ir.HTTPRoute, hostname: str | None = None, name: str = "http") -> ir.Listener:
    return ir.Listener(
        gateway_namespace="gateway-conformance-infra",
        gateway_name="same-namespace",
        name=name,
        protocol="HTTP",
        port=80,
        hostname=hostname,
        http_routes=routes,
    )


def backend_of(
    table: ListenerTable | None,
    target: str,
    host: str = "example.com",
    method: str = "GET",
    hdrs: dict[str, str] | None = None,
) -> str | None:
    """The backend a request reaches, as the conformance suite observes it; None for 404."""
    if table is None:
        return None
    path, _, query = target.partition("?")
    pairs = [(k.lower().encode(), v.encode()) for k, v in (hdrs or {}).items()]
    found = table.match(host, method, path, query, pairs)
    return None if found is None else found.rule.backends[0].name


# --- HTTPRouteMatching ----------------------------------------------------------------------

MATCHING = ListenerTable(
    listener(
        route(
            "matching",
            rule(V1, prefix("/"), headers(("version", "one"))),
            rule(V2, prefix("/v2"), headers(("version", "two"))),
        )
    )
)


@pytest.mark.parametrize(
    ("target", "hdrs", "want"),
    [
        ("/", {}, V1),
        ("/example", {}, V1),
        ("/", {"Version": "one"}, V1),
        ("/v2", {}, V2),
        ("/v2/example", {}, V2),
        ("/", {"Version": "two"}, V2),
        ("/v2/", {}, V2),
        ("/v2example", {}, V1),
        ("/foo/v2/example", {}, V1),
    ],
)
def test_httproute_matching(target: str, hdrs: dict[str, str], want: str) -> None:
    assert backend_of(MATCHING, target, hdrs=hdrs) == want


# --- HTTPRouteMatchingAcrossRoutes ----------------------------------------------------------

ACROSS = ListenerTable(
    listener(
        route(
            "matching-part1",
            rule(V1, prefix("/"), headers(("version", "one"))),
            hostnames=("example.com", "example.net"),
        ),
        route(
            "matching-part2",
            rule(V2, prefix("/v2"), headers(("version", "two"))),
            hostnames=("example.com",),
        ),
    )
)


@pytest.mark.parametrize(
    ("host", "target", "hdrs", "want"),
    [
        ("example.com", "/", {}, V1),
        ("example.com", "/example", {}, V1),
        ("example.net", "/example", {}, V1),
        ("example.com", "/example", {"Version": "one"}, V1),
        ("example.com", "/v2", {}, V2),
        ("example.net", "/v2", {}, V1),
        ("example.com", "/v2/example", {}, V2),
        ("example.com", "/", {"Version": "two"}, V2),
    ],
)
def test_httproute_matching_across_routes(
    host: str, target: str, hdrs: dict[str, str], want: str
) -> None:
    assert backend_of(ACROSS, target, host=host, hdrs=hdrs) == want


# --- HTTPRoutePathMatchOrder ----------------------------------------------------------------

PATH_ORDER = ListenerTable(
    listener(
        route(
            "path-matching-order",
            rule(V1, exact("/match")),
            rule(V2, exact("/match/exact")),
            rule(V3, exact("/match/exact/one")),
            rule(V3, prefix("/match/")),
            rule(V1, prefix("/match/prefix/")),
            rule(V2, prefix("/match/prefix/one")),
        )
    )
)


@pytest.mark.parametrize(
    ("target", "want"),
    [
        ("/match/exact/one", V3),
        ("/match/exact", V2),
        ("/match", V1),
        ("/match/prefix/one/any", V2),
        ("/match/prefix/any", V1),
        ("/match/any", V3),
    ],
)
def test_httproute_path_match_order(target: str, want: str) -> None:
    assert backend_of(PATH_ORDER, target) == want


# --- HTTPRouteHeaderMatching ----------------------------------------------------------------

HEADER = ListenerTable(
    listener(
        route(
            "header-matching",
            rule(V1, headers(("version", "one"))),
            rule(V2, headers(("version", "two"))),
            rule(V1, headers(("version", "two"), ("color", "orange"))),
            rule(V1, headers(("color", "blue")), headers(("color", "green"))),
            rule(V2, headers(("color", "red")), headers(("color", "yellow"))),
        )
    )
)


@pytest.mark.parametrize(
    ("hdrs", "want"),
    [
        ({"Version": "one"}, V1),
        ({"Version": "two"}, V2),
        ({"Version": "two", "Color": "orange"}, V1),
        ({"Version": "two", "Color": "blue"}, V2),
        ({"Color": "orange"}, NOT_FOUND),
        ({"Some-Other-Header": "one"}, NOT_FOUND),
        ({"Color": "blue"}, V1),
        ({"Color": "green"}, V1),
        ({"Color": "red"}, V2),
        ({"Color": "yellow"}, V2),
        ({"Color": "purple"}, NOT_FOUND),
    ],
)
def test_httproute_header_matching(hdrs: dict[str, str], want: str | None) -> None:
    assert backend_of(HEADER, "/", hdrs=hdrs) == want


# --- HTTPRouteQueryParamMatching ------------------------------------------------------------

QUERY = ListenerTable(
    listener(
        route(
            "query-param-matching",
            rule(V1, params(("animal", "whale"))),
            rule(V2, params(("animal", "dolphin"))),
            rule(V3, params(("animal", "dolphin"), ("color", "blue")), params(("ANIMAL", "Whale"))),
            rule(V1, params(("animal", "whale"), path="/path1")),
            rule(
                V2,
                params(("animal", "whale"), headers=(ir.ValueMatch(name="version", value="one"),)),
            ),
            rule(
                V3,
                params(
                    ("animal", "whale"),
                    path="/path2",
                    headers=(ir.ValueMatch(name="version", value="two"),),
                ),
            ),
            rule(
                V1,
                params(("animal", "shark"), path="/path3"),
                params(
                    ("animal", "kraken"),
                    path="/path4",
                    headers=(ir.ValueMatch(name="version", value="three"),),
                ),
            ),
            rule(V1, prefix("/path5")),
            rule(V2, params(("animal", "hydra"))),
            rule(V3, headers(("version", "four"))),
        )
    )
)


@pytest.mark.parametrize(
    ("target", "hdrs", "want"),
    [
        ("/?animal=whale", {}, V1),
        ("/?animal=dolphin", {}, V2),
        ("/?animal=dolphin&color=blue", {}, V3),
        ("/?ANIMAL=Whale", {}, V3),
        ("/?animal=whale&otherparam=irrelevant", {}, V1),
        ("/?animal=dolphin&color=yellow", {}, V2),
        ("/?color=blue", {}, NOT_FOUND),
        ("/?animal=dog", {}, NOT_FOUND),
        ("/?animal=whaledolphin", {}, NOT_FOUND),
        ("/", {}, NOT_FOUND),
        ("/path1?animal=whale", {}, V1),
        ("/?animal=whale", {"version": "one"}, V2),
        ("/path2?animal=whale", {"version": "two"}, V3),
        ("/path3?animal=shark", {}, V1),
        ("/path4?animal=kraken", {"version": "three"}, V1),
        ("/?animal=shark", {}, NOT_FOUND),
        ("/path4?animal=kraken", {}, NOT_FOUND),
        ("/path5?animal=hydra", {}, V1),
        ("/?animal=hydra", {"version": "four"}, V3),
    ],
)
def test_httproute_query_param_matching(target: str, hdrs: dict[str, str], want: str) -> None:
    assert backend_of(QUERY, target, hdrs=hdrs) == want


# --- HTTPRouteMethodMatching ----------------------------------------------------------------


def method(name: str, path: str = "/", *hdrs: tuple[str, str]) -> ir.HTTPMatch:
    values = tuple(ir.ValueMatch(name=n, value=v) for n, v in hdrs)
    return ir.HTTPMatch(path=path, method=name, headers=values)


METHOD = ListenerTable(
    listener(
        route(
            "method-matching",
            rule(V1, method("POST")),
            rule(V2, method("GET")),
            rule(V1, method("GET", "/path1")),
            rule(V2, method("PUT", "/", ("version", "one"))),
            rule(V3, method("POST", "/path2", ("version", "two"))),
            rule(V1, method("PATCH", "/path3"), method("DELETE", "/path4", ("version", "three"))),
            rule(V1, prefix("/path5")),
            rule(V2, method("PATCH")),
            rule(V3, headers(("version", "four"))),
        )
    )
)


@pytest.mark.parametrize(
    ("verb", "target", "hdrs", "want"),
    [
        ("POST", "/", {}, V1),
        ("GET", "/", {}, V2),
        ("HEAD", "/", {}, NOT_FOUND),
        ("GET", "/path1", {}, V1),
        ("PUT", "/", {"version": "one"}, V2),
        ("POST", "/path2", {"version": "two"}, V3),
        ("PATCH", "/path3", {}, V1),
        ("DELETE", "/path4", {"version": "three"}, V1),
        ("PUT", "/", {}, NOT_FOUND),
        ("DELETE", "/path4", {}, NOT_FOUND),
        ("PATCH", "/path5", {}, V1),
        ("PATCH", "/", {"version": "four"}, V2),
    ],
)
def test_httproute_method_matching(
    verb: str, target: str, hdrs: dict[str, str], want: str | None
) -> None:
    assert backend_of(METHOD, target, method=verb, hdrs=hdrs) == want


# --- HTTPRouteHostnameIntersection ----------------------------------------------------------
# Route hostnames are what the translator leaves after intersecting with the listener.

INTERSECTION = compile_port(
    ir.Port(
        address="0.0.0.0",
        port=80,
        listeners=(
            listener(
                route("specific-host", rule(V1, prefix("/s1")), hostnames=("very.specific.com",)),
                route("wildcard-host", rule(V3, prefix("/s3")), hostnames=("very.specific.com",)),
                hostname="very.specific.com",
                name="listener-1",
            ),
            listener(
                route(
                    "specific-on-wildcard",
                    rule(V2, prefix("/s2")),
                    hostnames=("foo.wildcard.io", "bar.wildcard.io", "foo.bar.wildcard.io"),
                ),
                hostname="*.wildcard.io",
                name="listener-2",
            ),
            listener(
                route("wild-on-wild", rule(V1, prefix("/s4")), hostnames=("*.anotherwildcard.io",)),
                hostname="*.anotherwildcard.io",
                name="listener-3",
            ),
        ),
    )
)


@pytest.mark.parametrize(
    ("host", "target", "want"),
    [
        ("very.specific.com", "/s1", V1),
        ("non.matching.com", "/s1", NOT_FOUND),
        ("foo.nonmatchingwildcard.io", "/s1", NOT_FOUND),
        ("foo.wildcard.io", "/s1", NOT_FOUND),
        ("very.specific.com", "/non-matching-prefix", NOT_FOUND),
        ("foo.wildcard.io", "/s2", V2),
        ("bar.wildcard.io", "/s2", V2),
        ("foo.bar.wildcard.io", "/s2", V2),
        ("non.matching.com", "/s2", NOT_FOUND),
        ("wildcard.io", "/s2", NOT_FOUND),
        ("very.specific.com", "/s2", NOT_FOUND),
        ("foo.wildcard.io", "/non-matching-prefix", NOT_FOUND),
        ("very.specific.com", "/s3", V3),
        ("foo.specific.com", "/s3", NOT_FOUND),
        ("foo.wildcard.io", "/s3", NOT_FOUND),
        ("foo.anotherwildcard.io", "/s4", V1),
        ("bar.anotherwildcard.io", "/s4", V1),
        ("foo.bar.anotherwildcard.io", "/s4", V1),
        ("anotherwildcard.io", "/s4", NOT_FOUND),
        ("foo.wildcard.io", "/s4", NOT_FOUND),
        ("very.specific.com", "/s4", NOT_FOUND),
        ("foo.anotherwildcard.io", "/non-matching-prefix", NOT_FOUND),
        ("specific.but.wrong.com", "/s5", NOT_FOUND),
        ("wildcard.io", "/s5", NOT_FOUND),
    ],
)
def test_httproute_hostname_intersection(host: str, target: str, want: str | None) -> None:
    assert backend_of(INTERSECTION.listener_for_host(host), target, host=host) == want


INTERSECTION_ALL = compile_port(
    ir.Port(
        address="0.0.0.0",
        port=80,
        listeners=(
            listener(
                route(
                    "httproute-hostname-intersection-all",
                    rule(V2),
                    hostnames=("first.com", "sub.first.com", "second.com", "sub.second.com"),
                ),
            ),
        ),
    )
)


@pytest.mark.parametrize(
    ("host", "want"),
    [
        ("first.com", V2),
        ("sub.first.com", V2),
        ("second.com", V2),
        ("sub.second.com", V2),
        ("third.com", NOT_FOUND),
        ("sub.third.com", NOT_FOUND),
    ],
)
def test_httproute_hostname_intersection_all(host: str, want: str | None) -> None:
    assert backend_of(INTERSECTION_ALL.listener_for_host(host), "/", host=host) == want


# --- HTTPRouteListenerHostnameMatching ------------------------------------------------------

LISTENER_HOSTNAMES = compile_port(
    ir.Port(
        address="0.0.0.0",
        port=80,
        listeners=(
            listener(route("backend-v1", rule(V1), hostnames=("bar.com",)), hostname="bar.com"),
            listener(
                route("backend-v2", rule(V2), hostnames=("foo.bar.com",)),
                hostname="foo.bar.com",
                name="listener-2",
            ),
            listener(
                route("backend-v3", rule(V3), hostnames=("*.bar.com",)),
                hostname="*.bar.com",
                name="listener-3",
            ),
            listener(
                route("backend-v3", rule(V3), hostnames=("*.foo.com",)),
                hostname="*.foo.com",
                name="listener-4",
            ),
        ),
    )
)


@pytest.mark.parametrize(
    ("host", "want"),
    [
        ("bar.com", V1),
        ("foo.bar.com", V2),
        ("baz.bar.com", V3),
        ("boo.bar.com", V3),
        ("multiple.prefixes.bar.com", V3),
        ("multiple.prefixes.foo.com", V3),
        ("foo.com", NOT_FOUND),
        ("no.matching.host", NOT_FOUND),
    ],
)
def test_httproute_listener_hostname_matching(host: str, want: str | None) -> None:
    table: PortTable = LISTENER_HOSTNAMES
    assert backend_of(table.listener_for_host(host), "/", host=host) == want
