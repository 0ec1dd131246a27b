"""Matching cost must not grow with the number of routes on a listener.

The deterministic check counts the candidates a lookup examines; the timing
check compares best-of-N per-call times with a margin wide enough for a busy
machine but far below what a scan over 1,000 routes would cost (~100x).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import pytest

from edgegw import ir
from edgegw.routing import ListenerTable
from edgegw.routing.matchers import RequestView
from tests.unit.test_routing_conformance import exact, listener, prefix, route, rule

CANARY = (ir.ValueMatch(name="x-canary", value="yes"),)
REQUEST_HEADERS = [(b"user-agent", b"bench"), (b"accept", b"*/*"), (b"x-canary", b"no")]


def per_host_routes(count: int) -> ListenerTable:
    """``count`` teams, each its own hostname with a few rules, plus a wildcard and a default."""
    routes = [
        route(
            f"team-{i}",
            rule("canary", prefix("/api", headers=CANARY)),
            rule("api", prefix("/api")),
            rule("health", exact("/health")),
            hostnames=(f"team-{i}.example.com",),
            created=i,
        )
        for i in range(count)
    ]
    routes.append(route("wild", rule("wild"), hostnames=("*.example.com",)))
    routes.append(route("default", rule("default")))
    return ListenerTable(listener(*routes))


def per_path_routes(count: int) -> ListenerTable:
    """``count`` services sharing one hostname, told apart by path prefix."""
    routes = [
        route(
            f"svc-{i}",
            rule("header", prefix(f"/svc-{i}", headers=CANARY)),
            rule("plain", prefix(f"/svc-{i}/v1")),
            created=i,
        )
        for i in range(count)
    ]
    routes.append(route("default", rule("default")))
    return ListenerTable(listener(*routes))


def per_wildcard_routes(count: int) -> ListenerTable:
    routes = [
        route(f"w-{i}", rule("wild", prefix("/")), hostnames=(f"*.t{i}.example.com",))
        for i in range(count)
    ]
    return ListenerTable(listener(*routes))


SCENARIOS: list[tuple[Callable[[int], ListenerTable], str, str, str]] = [
    (per_host_routes, "team-5.example.com", "/api/users/42", "api"),
    (per_host_routes, "nobody.example.com", "/api/users/42", "wild"),
    (per_path_routes, "svc.example.com", "/svc-7/v1/items/9", "plain"),
    (per_path_routes, "svc.example.com", "/svc-7/v2", "default"),
    (per_wildcard_routes, "a.b.t7.example.com", "/x", "wild"),
]


def examined(table: ListenerTable, host: str, path: str) -> tuple[int, str | None]:
    """How many candidates ``match`` looks at, and which backend wins."""
    request = RequestView("GET", path, "", REQUEST_HEADERS)
    for count, candidate in enumerate(table.candidates(host, path), start=1):
        if candidate.accepts(request):
            return count, candidate.result.rule.backends[0].name
    return -1, None


@pytest.mark.parametrize(("build", "host", "path", "want"), SCENARIOS)
def test_candidates_examined_do_not_grow_with_routes(
    build: Callable[[int], ListenerTable], host: str, path: str, want: str
) -> None:
    small, large = build(10), build(1000)
    small_count, small_winner = examined(small, host, path)
    large_count, large_winner = examined(large, host, path)
    assert small_winner == large_winner == want
    assert large_count == small_count <= 3
    found = large.match(host, "GET", path, "", REQUEST_HEADERS)
    assert found is not None
    assert found.rule.backends[0].name == want


def per_call(table: ListenerTable, host: str, path: str, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        table.match(host, "GET", path, "", REQUEST_HEADERS)
    return (time.perf_counter() - start) / calls


def best_per_call(
    tables: tuple[ListenerTable, ...], host: str, path: str, rounds: int = 15
) -> list[float]:
    """Best per-call time of each table, measured interleaved so load drifts hit all alike."""
    best = [float("inf")] * len(tables)
    gc.disable()
    try:
        for _ in range(rounds):
            for i, table in enumerate(tables):
                best[i] = min(best[i], per_call(table, host, path, 1000))
    finally:
        gc.enable()
    return best


@pytest.mark.parametrize(("build", "host", "path", "want"), SCENARIOS[:3])
def test_match_time_with_1000_routes_close_to_10(
    build: Callable[[int], ListenerTable], host: str, path: str, want: str
) -> None:
    small, large = build(10), build(1000)
    small_time, large_time = best_per_call((small, large), host, path)
    assert large_time < small_time * 1.5, (small_time, large_time)


def test_compile_of_1000_routes_is_quick() -> None:
    start = time.perf_counter()
    table = per_host_routes(1000)
    assert time.perf_counter() - start < 2.0
    assert isinstance(table.listener, ir.Listener)
