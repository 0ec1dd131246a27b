"""L4 route selection: SNI precedence across listeners and routes, TCP/UDP, weighted picks."""

from __future__ import annotations

import collections

import pytest

from edgegw import ir
from edgegw.routing import l4


def backend(name: str, weight: int = 1, **kw: object) -> ir.Backend:
    endpoints = (ir.Endpoint(address="127.0.0.1", port=9000),)
    return ir.Backend(name=name, weight=weight, endpoints=endpoints, **kw)  # type: ignore[arg-type]


def route(
    name: str, kind: str = "TLSRoute", hosts: tuple[str, ...] = (), age: float = 0.0
) -> ir.L4Route:
    return ir.L4Route(
        namespace="default",
        name=name,
        kind=kind,  # type: ignore[arg-type]
        hostnames=hosts,
        backends=(backend(name),),
        precedence=(age, "default", name),
    )


def listener(
    name: str,
    *routes: ir.L4Route,
    protocol: str = "TLS",
    hostname: str | None = None,
    mode: str = "Passthrough",
) -> ir.Listener:
    tls = ir.ListenerTLS(mode=mode) if protocol in ("TLS", "HTTPS") else None  # type: ignore[arg-type]
    return ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name=name,
        protocol=protocol,  # type: ignore[arg-type]
        port=443,
        hostname=hostname,
        tls=tls,
        l4_routes=routes,
    )


def table(*listeners: ir.Listener) -> l4.L4Table:
    return l4.compile_l4(ir.Port(address="0.0.0.0", port=443, listeners=listeners))


def picked(t: l4.L4Table, sni: str | None) -> str | None:
    found = t.route_for_sni(sni)
    return None if found is None else f"{found.listener.name}/{found.route.name}"


def test_route_hostnames_exact_beats_wildcard_beats_catch_all() -> None:
    t = table(
        listener(
            "tls",
            route("any"),
            route("wild", hosts=("*.example.com",)),
            route("exact", hosts=("abc.example.com",)),
        )
    )
    assert picked(t, "abc.example.com") == "tls/exact"
    assert picked(t, "other.example.com") == "tls/wild"
    assert picked(t, "a.b.example.com") == "tls/wild"
    assert picked(t, "example.com") == "tls/any"
    assert picked(t, "Abc.Example.COM.") == "tls/exact"


def test_longer_wildcard_wins() -> None:
    t = table(
        listener("tls", route("short", hosts=("*.com",)), route("long", hosts=("*.example.com",)))
    )
    assert picked(t, "x.example.com") == "tls/long"
    assert picked(t, "x.other.com") == "tls/short"


def test_unknown_sni_and_missing_sni() -> None:
    t = table(listener("tls", route("exact", hosts=("abc.example.com",))))
    assert picked(t, "non.matching.com") is None
    assert picked(t, None) is None
    catch_all = table(listener("tls", route("any")))
    assert picked(catch_all, None) == "tls/any"


def test_listener_chosen_first_by_its_hostname() -> None:
    # conformance TLSRouteHostnameIntersection: the most specific listener owns the name
    t = table(
        listener("wild", route("w", hosts=("abc.example.com",)), hostname="*.example.com"),
        listener("empty", route("e")),
    )
    assert picked(t, "abc.example.com") == "wild/w"
    assert picked(t, "other.example.com") is None  # its listener has no route for it
    assert picked(t, "non.matching.org") == "empty/e"


def test_oldest_route_wins_a_shared_hostname() -> None:
    t = table(
        listener(
            "tls",
            route("newer", hosts=("a.example.com",), age=200.0),
            route("older", hosts=("a.example.com",), age=100.0),
        )
    )
    assert picked(t, "a.example.com") == "tls/older"


def test_terminate_listener_routes_and_https_listener_on_the_same_port() -> None:
    t = table(
        listener("pass", route("p", hosts=("p.example.com",)), hostname="p.example.com"),
        listener(
            "term", route("t", hosts=("t.example.com",)), hostname="t.example.com", mode="Terminate"
        ),
        listener("web", protocol="HTTPS", hostname="www.example.com", mode="Terminate"),
    )
    assert picked(t, "p.example.com") == "pass/p"
    found = t.route_for_sni("t.example.com")
    assert found is not None
    assert found.listener.tls is not None
    assert found.listener.tls.mode == "Terminate"
    assert picked(t, "www.example.com") is None
    web = t.listener_for_sni("www.example.com")
    assert web is not None
    assert web.protocol == "HTTPS"


def test_tcp_listener_serves_its_oldest_route_only() -> None:
    t = table(
        listener(
            "tcp",
            route("newer", kind="TCPRoute", age=20.0),
            route("older", kind="TCPRoute", age=10.0),
            protocol="TCP",
        )
    )
    found = t.route_for_tcp()
    assert found is not None
    assert found.route.name == "older"
    assert t.route_for_udp() is None
    assert t.route_for_sni("x") is None


def test_udp_route() -> None:
    t = table(listener("udp", route("dns", kind="UDPRoute"), protocol="UDP"))
    found = t.route_for_udp()
    assert found is not None
    lst, rt = found
    assert (lst.name, rt.name) == ("udp", "dns")


def test_no_routes() -> None:
    t = table(listener("tcp", protocol="TCP"))
    assert t.route_for_tcp() is None


def test_weighted_pick_follows_weights() -> None:
    backends = (backend("a", 1), backend("b", 3), backend("zero", 0))
    counts = collections.Counter(
        chosen.name
        for i in range(1000)
        if (chosen := l4.pick_backend(backends, i / 1000)) is not None
    )
    assert counts == {"a": 250, "b": 750}
    assert l4.pick_backend(backends, 0.999999999).name == "b"  # type: ignore[union-attr]


def test_weighted_pick_none() -> None:
    assert l4.pick_backend((), 0.5) is None
    assert l4.pick_backend((backend("a", 0),), 0.5) is None


def test_invalid_backend_keeps_its_share_but_has_no_endpoint() -> None:
    bad = backend("bad", 1, invalid="Service default/missing not found")
    assert l4.pick_backend((bad, backend("ok")), 0.1) is bad
    assert l4.pick_endpoint(bad, 0.1) is None
    assert l4.pick_endpoint(ir.Backend(name="empty"), 0.5) is None


@pytest.mark.parametrize(("rand", "index"), [(0.0, 0), (0.49, 0), (0.5, 1), (0.999, 1)])
def test_endpoints_are_spread(rand: float, index: int) -> None:
    endpoints = (ir.Endpoint(address="10.0.0.1", port=1), ir.Endpoint(address="10.0.0.2", port=1))
    b = ir.Backend(name="b", endpoints=endpoints)
    assert l4.pick_endpoint(b, rand) == endpoints[index]


def test_accept_proxy_protocol_is_a_port_property() -> None:
    plain = listener("tcp", protocol="TCP")
    assert not table(plain).accept_proxy_protocol
    behind_lb = ir.Listener(
        gateway_namespace="d",
        gateway_name="g",
        name="t",
        protocol="TCP",
        port=1,
        proxy_protocol_accept=True,
    )
    assert table(behind_lb).accept_proxy_protocol
