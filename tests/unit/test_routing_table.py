"""Listener selection, route precedence and match semantics beyond the conformance tables."""

from __future__ import annotations

import pytest

from edgegw import ir
from edgegw.routing import ListenerTable, compile_port, pick_backend
from tests.unit.test_routing_conformance import (
    backend_of,
    exact,
    headers,
    listener,
    prefix,
    route,
    rule,
)


def http_listener(name: str, hostname: str | None) -> ir.Listener:
    return ir.Listener(
        gateway_namespace="ns",
        gateway_name="gw",
        name=name,
        protocol="HTTP",
        port=80,
        hostname=hostname,
    )


PORT = compile_port(
    ir.Port(
        address="0.0.0.0",
        port=80,
        listeners=(
            http_listener("any", None),
            http_listener("wild", "*.example.com"),
            http_listener("deeper-wild", "*.api.example.com"),
            http_listener("exact", "www.example.com"),
        ),
    )
)


@pytest.mark.parametrize(
    ("host", "want"),
    [
        ("www.example.com", "exact"),
        ("WWW.Example.COM.", "exact"),
        ("v1.api.example.com", "deeper-wild"),
        ("a.b.api.example.com", "deeper-wild"),
        ("api.example.com", "wild"),
        ("a.b.c.example.com", "wild"),
        ("example.com", "any"),
        ("other.org", "any"),
        ("", "any"),
    ],
)
def test_listener_for_host_prefers_exact_then_longest_wildcard(host: str, want: str) -> None:
    found = PORT.listener_for_host(host)
    assert found is not None
    assert found.listener.name == want


def test_listener_for_sni_without_name_takes_the_listener_without_hostname() -> None:
    assert (found := PORT.listener_for_sni(None)) is not None
    assert found.listener.name == "any"
    assert (found := PORT.listener_for_sni("X.API.example.com")) is not None
    assert found.listener.name == "deeper-wild"


def test_no_listener_when_none_takes_the_host() -> None:
    port = compile_port(
        ir.Port(address="0.0.0.0", port=443, listeners=(http_listener("w", "*.example.com"),))
    )
    assert port.listener_for_host("example.com") is None
    assert port.listener_for_sni(None) is None
    assert port.listener_for_sni("a.example.com") is not None


# --- route hostname precedence --------------------------------------------------------------


def test_exact_route_hostname_beats_wildcard_beats_none() -> None:
    table = ListenerTable(
        listener(
            route("none", rule("none", prefix("/")), created=1),
            route("short", rule("short", prefix("/")), hostnames=("*.com",), created=2),
            route("long", rule("long", prefix("/")), hostnames=("*.example.com",), created=3),
            route("exact", rule("exact", prefix("/")), hostnames=("a.example.com",), created=4),
        )
    )
    assert backend_of(table, "/", host="a.example.com") == "exact"
    assert backend_of(table, "/", host="b.example.com") == "long"
    assert backend_of(table, "/", host="b.other.com") == "short"
    assert backend_of(table, "/", host="localhost") == "none"


def test_more_specific_hostname_wins_over_longer_path() -> None:
    table = ListenerTable(
        listener(
            route("wild", rule("wild", exact("/exact/path")), hostnames=("*.example.com",)),
            route("exact", rule("exact", prefix("/")), hostnames=("a.example.com",)),
        )
    )
    assert backend_of(table, "/exact/path", host="a.example.com") == "exact"


def test_request_falls_through_to_less_specific_hostnames() -> None:
    table = ListenerTable(
        listener(
            route("exact", rule("exact", prefix("/api")), hostnames=("a.example.com",)),
            route("wild", rule("wild", prefix("/")), hostnames=("*.example.com",)),
        )
    )
    assert backend_of(table, "/api/x", host="a.example.com") == "exact"
    assert backend_of(table, "/web", host="a.example.com") == "wild"


def test_host_outside_the_listener_hostname_is_not_routed() -> None:
    table = ListenerTable(listener(route("r", rule("r")), hostname="*.example.com"))
    assert backend_of(table, "/", host="a.example.com") == "r"
    assert backend_of(table, "/", host="example.org") is None


# --- paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "want"),
    [("/foo", "foo"), ("/foo/", "foo"), ("/foo/bar", "foo"), ("/foobar", "root"), ("/", "root")],
)
def test_prefix_matches_whole_segments_and_ignores_trailing_slash(path: str, want: str) -> None:
    table = ListenerTable(
        listener(route("r", rule("root", prefix("/")), rule("foo", prefix("/foo/"))))
    )
    assert backend_of(table, path) == want


def test_exact_beats_prefix_of_the_same_value_and_is_case_sensitive() -> None:
    table = ListenerTable(
        listener(route("r", rule("prefix", prefix("/a/b")), rule("exact", exact("/a/b"))))
    )
    assert backend_of(table, "/a/b") == "exact"
    assert backend_of(table, "/a/b/") == "prefix"
    assert backend_of(table, "/A/b") is None


def test_regex_path_is_a_full_match_ranked_after_prefixes() -> None:
    regex = ir.HTTPMatch(path_type="RegularExpression", path=r"/v[0-9]+/items")
    table = ListenerTable(
        listener(route("r", rule("regex", regex), rule("prefix", prefix("/v1/items/special"))))
    )
    assert backend_of(table, "/v2/items") == "regex"
    assert backend_of(table, "/v2/items/more") is None
    assert backend_of(table, "/x/v2/items") is None
    assert backend_of(table, "/v1/items/special") == "prefix"


def test_invalid_regex_is_skipped_not_fatal() -> None:
    bad = ir.HTTPMatch(path_type="RegularExpression", path="/(unclosed")
    table = ListenerTable(listener(route("r", rule("bad", bad), rule("ok", prefix("/ok")))))
    assert backend_of(table, "/ok") == "ok"
    assert backend_of(table, "/(unclosed") is None


# --- headers and query ----------------------------------------------------------------------


def test_header_regex_full_match_and_case_rules() -> None:
    regex = ir.HTTPMatch(
        headers=(ir.ValueMatch(type="RegularExpression", name="X-Tenant", value="t-[0-9]+"),)
    )
    table = ListenerTable(listener(route("r", rule("regex", regex))))
    assert backend_of(table, "/", hdrs={"x-tenant": "t-42"}) == "regex"
    assert backend_of(table, "/", hdrs={"x-tenant": "t-42x"}) is None
    exact_value = ListenerTable(listener(route("r", rule("exact", headers(("Version", "One"))))))
    assert backend_of(exact_value, "/", hdrs={"VERSION": "One"}) == "exact"
    assert backend_of(exact_value, "/", hdrs={"version": "one"}) is None


def test_repeated_request_headers_are_comma_joined() -> None:
    table = ListenerTable(listener(route("r", rule("joined", headers(("accept", "a,b"))))))
    found = table.match("h", "GET", "/", "", [(b"accept", b"a"), (b"accept", b" b")])
    assert found is not None
    assert table.match("h", "GET", "/", "", [(b"accept", b"a")]) is None


def test_only_the_first_match_entry_per_header_name_counts() -> None:
    dup = headers(("version", "one"), ("Version", "two"))
    table = ListenerTable(
        listener(route("r", rule("dup", dup), rule("two", headers(("a", "1"), ("b", "2")))))
    )
    assert backend_of(table, "/", hdrs={"version": "one"}) == "dup"
    assert backend_of(table, "/", hdrs={"version": "one", "a": "1", "b": "2"}) == "two"


def test_query_uses_first_value_and_percent_decodes() -> None:
    match = ir.HTTPMatch(query=(ir.ValueMatch(name="q", value="a b"),))
    table = ListenerTable(listener(route("r", rule("q", match))))
    assert backend_of(table, "/?q=a%20b&q=other") == "q"
    assert backend_of(table, "/?q=other&q=a%20b") is None
    assert backend_of(table, "/?Q=a%20b") is None


# --- ties -----------------------------------------------------------------------------------


def test_oldest_route_then_namespace_name_break_ties() -> None:
    younger = route("a-younger", rule("younger"), created=20)
    older = route("z-older", rule("older"), created=10)
    assert backend_of(ListenerTable(listener(younger, older)), "/") == "older"
    same_age = (route("b", rule("b"), created=5), route("a", rule("a"), created=5))
    assert backend_of(ListenerTable(listener(*same_age)), "/") == "a"


def test_first_rule_then_first_match_within_the_rule_win() -> None:
    first = ir.HTTPMatch(path="/x")
    second = ir.HTTPMatch(path="/x/")
    table = ListenerTable(listener(route("r", rule("one", first, second), rule("two", first))))
    found = table.match("h", "GET", "/x/y", "", [])
    assert found is not None
    assert found.rule.index == 0
    assert found.match == second  # "/x/" has more characters than "/x"


# --- pick_backend ---------------------------------------------------------------------------


def weighted(*weights: int) -> tuple[ir.Backend, ...]:
    return tuple(ir.Backend(name=f"b{i}", weight=w) for i, w in enumerate(weights))


def test_pick_backend_follows_weights() -> None:
    backends = weighted(1, 0, 3)
    picks = [pick_backend(backends, i / 400) for i in range(400)]
    names = [b.name for b in picks if b is not None]
    assert names.count("b0") == 100
    assert names.count("b2") == 300
    assert "b1" not in names


def test_pick_backend_edges() -> None:
    assert pick_backend((), 0.5) is None
    assert pick_backend(weighted(0, 0), 0.5) is None
    assert (last := pick_backend(weighted(1, 1, 0), 0.999999999)) is not None
    assert last.name == "b1"
    rule_ = ir.HTTPRouteRule(index=0, backends=weighted(0, 5))
    assert (chosen := pick_backend(rule_, 0.0)) is not None
    assert chosen.name == "b1"
