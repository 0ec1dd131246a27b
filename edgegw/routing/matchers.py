"""One compiled ``HTTPRouteMatch``: the checks that remain once the indexes chose it.

The tables in ``routing.table`` find candidates by hostname and path without
looking at them; each candidate then checks what cannot be indexed (method,
headers, query parameters and, for RegularExpression paths, the path). Regular
expressions are compiled once here, at reload, never per request.

Request data is read lazily through ``RequestView``: the header map and the
parsed query are built only when a candidate first asks, so requests decided
by path alone never pay for them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import msgspec

from edgegw import ir
from edgegw.policy.compiled import RuleGuard
from edgegw.routing.sessions import SessionTable

Headers = Sequence[tuple[bytes, bytes]]

# RFC 9110 5.3: repeated fields combine with commas; RFC 9113 8.2.3: cookie crumbs with "; ".
_JOINERS = {b"cookie": "; "}


class RouteMatch(msgspec.Struct, frozen=True, gc=False):
    """What won: the route, its rule, and the match (for ReplacePrefixMatch).

    Also what the data plane needs of the rule, computed with the table:
    ``grpc`` (errors are answered as gRPC statuses) and ``sessions`` (the
    session persistence token table, None without persistence).
    """

    route: ir.HTTPRoute
    rule: ir.HTTPRouteRule
    match: ir.HTTPMatch
    grpc: bool = False
    sessions: SessionTable | None = None
    guard: RuleGuard | None = None  # the rule's Envoy Gateway policies, compiled


class RequestView:
    """The parts of a request that matches read, decoded on first use."""

    __slots__ = ("_header_map", "_headers", "_query", "_query_map", "method", "path")

    def __init__(self, method: str, path: str, query: str, headers: Headers) -> None:
        self.method = method
        self.path = path
        self._query = query
        self._headers = headers
        self._header_map: dict[bytes, str] | None = None
        self._query_map: dict[str, str] | None = None

    def header(self, name: bytes) -> str | None:
        """The value of header ``name`` (lower-case), repeated fields joined."""
        if self._header_map is None:
            self._header_map = _join_headers(self._headers)
        return self._header_map.get(name)

    def query_param(self, name: str) -> str | None:
        """The first value of query parameter ``name``, percent-decoded."""
        if self._query_map is None:
            self._query_map = parse_query(self._query)
        return self._query_map.get(name)


def _join_headers(headers: Headers) -> dict[bytes, str]:
    grouped: dict[bytes, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value.decode("latin-1").strip())
    return {name: _JOINERS.get(name, ",").join(values) for name, values in grouped.items()}


def parse_query(query: str) -> dict[str, str]:
    """Names to their first value, as the spec recommends for repeated parameters.

    Names are case-sensitive. ``+`` is left alone: it means a space only in
    HTML form encoding, which a gateway cannot assume.
    """
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        params.setdefault(unquote(name), unquote(value))
    return params


def normalize_prefix(prefix: str) -> str:
    """The index key of a PathPrefix: a trailing ``/`` is ignored, ``/`` becomes ``""``."""
    return prefix.rstrip("/")


def prefix_keys(path: str) -> list[str]:
    """Every prefix key that takes ``path``, longest first.

    A prefix takes a path when it equals it or is followed in it by ``/``:
    ``/foo`` takes ``/foo``, ``/foo/`` and ``/foo/bar`` but not ``/foobar``.
    """
    keys = [path]
    end = path.rfind("/")
    while end != -1:
        keys.append(path[:end])
        end = path.rfind("/", 0, end)
    return keys


@dataclass(frozen=True, slots=True)
class ValueCheck:
    """A header or query parameter match, its regular expression compiled."""

    name: str
    value: str
    pattern: re.Pattern[str] | None

    def accepts(self, actual: str | None) -> bool:
        if actual is None:
            return False
        if self.pattern is None:
            return actual == self.value
        return self.pattern.fullmatch(actual) is not None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A compiled match and its place in the spec's precedence (``rank``, ascending)."""

    result: RouteMatch
    method: str | None
    path_pattern: re.Pattern[str] | None
    headers: tuple[tuple[bytes, ValueCheck], ...]
    query: tuple[ValueCheck, ...]
    rank: tuple[object, ...]
    plain: bool = False  # nothing to check: the host and path that found it decide

    def accepts(self, request: RequestView) -> bool:
        """True when the method, headers, query and regex path all match."""
        if self.method is not None and request.method != self.method:
            return False
        if self.path_pattern is not None and not self.path_pattern.fullmatch(request.path):
            return False
        for name, check in self.headers:
            if not check.accepts(request.header(name)):
                return False
        if not self.query:  # most rules: no generator to build
            return True
        return all(check.accepts(request.query_param(check.name)) for check in self.query)


def _value_check(match: ir.ValueMatch) -> ValueCheck:
    pattern = re.compile(match.value) if match.type == "RegularExpression" else None
    return ValueCheck(name=match.name, value=match.value, pattern=pattern)


def _first_per_name(matches: Sequence[ir.ValueMatch], fold: bool) -> tuple[ir.ValueMatch, ...]:
    """The spec ignores every entry after the first with an equivalent name."""
    seen: dict[str, ir.ValueMatch] = {}
    for match in matches:
        seen.setdefault(match.name.lower() if fold else match.name, match)
    return tuple(seen.values())


def compile_match(
    route: ir.HTTPRoute,
    rule: ir.HTTPRouteRule,
    match: ir.HTTPMatch,
    position: int,
    sessions: SessionTable | None = None,
    guard: RuleGuard | None = None,
) -> Candidate | None:
    """A candidate for one match of one rule; None when a regex does not compile.

    The translator rejects bad regular expressions with a condition; None
    here only keeps a slip from taking the whole table down.
    ``rank`` orders candidates that share an index key: the longer path value,
    then a method match, more header matches, more query matches, the older
    route, the earlier rule, the earlier match.
    """
    headers = _first_per_name(match.headers, fold=True)
    query = _first_per_name(match.query, fold=False)
    try:
        path_pattern = re.compile(match.path) if match.path_type == "RegularExpression" else None
        header_checks = tuple((h.name.lower().encode(), _value_check(h)) for h in headers)
        query_checks = tuple(_value_check(q) for q in query)
    except re.error:
        return None
    rank = (
        -len(match.path),
        0 if match.method else 1,
        -len(headers),
        -len(query),
        route.precedence,
        rule.index,
        position,
    )
    return Candidate(
        result=RouteMatch(
            route=route,
            rule=rule,
            match=match,
            grpc=rule.grpc or route.kind == "GRPCRoute",
            sessions=sessions,
            guard=guard,
        ),
        method=match.method.upper() if match.method else None,
        path_pattern=path_pattern,
        headers=header_checks,
        query=query_checks,
        rank=rank,
        plain=not (match.method or path_pattern or header_checks or query_checks),
    )
