"""Compiled HTTP routing tables: a port's listeners, and each listener's routes.

Theory of operation
-------------------
The Gateway API orders every match of every HTTPRoute (and GRPCRoute)
attached to a listener, and the first that takes the request wins:

1. the route hostname that takes the request most specifically: an exact
   name, then wildcards from the longest down, then routes without hostnames;
2. then, among those, the path: Exact, then PathPrefix by the longest value,
   then RegularExpression (whose rank the spec leaves to implementations);
3. then a method match, more header matches, more query parameter matches;
4. then the oldest route (``HTTPRoute.precedence``), the earlier rule, the
   earlier match within the rule.

Rather than sort all matches and scan them per request, the table is built
as that order's tree. Hostnames index into groups (``hosts.HostIndex``: a
dict probe per label of the request's host). Within a group, Exact paths sit
in a dict by path and prefixes in a dict by their normalized value, so a
request probes its own path and then each of its ``/``-boundaries from the
longest down. Each probe yields a short list already sorted by the rest of
the order (``Candidate.rank``), and only those candidates run their method,
header and query checks. The work per request depends on the request's
labels and segments and on how many matches share its exact host and path
key, not on how many routes the listener has. Regular expressions cannot be
indexed; they are tried, in rank order, only after every Exact and prefix
candidate of the group failed.

A request that no match of the most specific host group takes falls through
to the next group, as the spec's precedence list reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from edgegw import ir
from edgegw.policy.clientrequest import compile_client_rules
from edgegw.policy.compiled import compile_listener, compile_rule
from edgegw.routing.filters import apply_header_modifier
from edgegw.routing.hosts import HostIndex, group_by_host, host_matches, normalize_host
from edgegw.routing.http3 import alt_svc
from edgegw.routing.matchers import (
    Candidate,
    Headers,
    RequestView,
    RouteMatch,
    compile_match,
    normalize_prefix,
    prefix_keys,
)
from edgegw.routing.sessions import session_table


class PathIndex:
    """The candidates of one host group, keyed by path."""

    __slots__ = ("exact", "prefix", "regex")

    def __init__(self, candidates: Iterable[Candidate]) -> None:
        exact: dict[str, list[Candidate]] = {}
        prefix: dict[str, list[Candidate]] = {}
        regex: list[Candidate] = []
        for candidate in candidates:
            match = candidate.result.match
            if match.path_type == "Exact":
                exact.setdefault(match.path, []).append(candidate)
            elif match.path_type == "PathPrefix":
                prefix.setdefault(normalize_prefix(match.path), []).append(candidate)
            else:
                regex.append(candidate)
        self.exact = {key: _ranked(found) for key, found in exact.items()}
        self.prefix = {key: _ranked(found) for key, found in prefix.items()}
        self.regex = _ranked(regex)

    def candidates(self, path: str) -> Iterator[Candidate]:
        """Every candidate that the path alone admits, in precedence order."""
        for run in self._runs(path):
            yield from run

    def first(self, path: str, request: RequestView) -> RouteMatch | None:
        """The first of ``candidates(path)`` that accepts ``request`` (no generators).

        The probes of ``_runs`` inline: the exact path, then its prefixes longest
        first, then the regular expressions. A candidate with nothing left to check
        (``plain``: the common host + path rule) wins without looking at the request.
        """
        exact = self.exact.get(path)
        if exact is not None and (found := _first_accepting(exact, request)) is not None:
            return found
        prefix = self.prefix
        if prefix:
            run = prefix.get(path)
            if run is not None and (found := _first_accepting(run, request)) is not None:
                return found
            end = path.rfind("/")
            while end != -1:
                run = prefix.get(path[:end])
                if run is not None and (found := _first_accepting(run, request)) is not None:
                    return found
                end = path.rfind("/", 0, end)
        if self.regex:
            return _first_accepting(self.regex, request)
        return None

    def _runs(self, path: str) -> list[tuple[Candidate, ...]]:
        """The candidate lists the path admits: exact, prefixes longest first, regex."""
        runs = []
        exact = self.exact.get(path)
        if exact is not None:
            runs.append(exact)
        prefix = self.prefix
        if prefix:
            for key in prefix_keys(path):
                found = prefix.get(key)
                if found is not None:
                    runs.append(found)
        if self.regex:
            runs.append(self.regex)
        return runs


def _first_accepting(run: tuple[Candidate, ...], request: RequestView) -> RouteMatch | None:
    for candidate in run:
        if candidate.plain or candidate.accepts(request):
            return candidate.result
    return None


def _ranked(candidates: list[Candidate]) -> tuple[Candidate, ...]:
    return tuple(sorted(candidates, key=lambda candidate: candidate.rank))


def _route_candidates(route: ir.HTTPRoute) -> Iterator[Candidate]:
    for rule in route.rules:
        sessions = session_table(rule)  # one per rule, shared by its matches
        guard = compile_rule(rule)  # one per rule: its rate-limit buckets are shared
        for position, match in enumerate(rule.matches):
            candidate = compile_match(route, rule, match, position, sessions, guard)
            if candidate is not None:
                yield candidate


def _host_keyed(routes: Iterable[ir.HTTPRoute]) -> Iterator[tuple[str | None, Candidate]]:
    for route in routes:
        candidates = list(_route_candidates(route))
        for hostname in route.hostnames or (None,):
            for candidate in candidates:
                yield hostname, candidate


class ListenerTable:
    """The routes of one listener, compiled for ``match``."""

    __slots__ = (
        "_groups",
        "_hostname",
        "_plain",
        "alt_svc",
        "client_guard",
        "client_rules",
        "key",
        "listener",
    )

    def __init__(self, listener: ir.Listener) -> None:
        self.listener = listener
        self.key = listener.key  # a property that formats it: read on every request
        self.client_guard = compile_listener(listener)
        self.alt_svc = alt_svc(listener)  # the HTTP/3 advertisement of its responses
        policy = listener.client_policy
        self.client_rules = (
            compile_client_rules(policy, apply_header_modifier) if policy is not None else None
        )
        self._hostname = normalize_host(listener.hostname) if listener.hostname else None
        keyed = list(_host_keyed(listener.http_routes))
        self._groups: HostIndex[PathIndex] = group_by_host(keyed).map(PathIndex)
        # Every candidate decided by host and path alone: no request view to build.
        self._plain = all(candidate.plain for _, candidate in keyed)

    def accepts_host(self, host: str) -> bool:
        """True when the listener's own hostname admits ``host``."""
        return self._hostname is None or host_matches(self._hostname, host)

    def candidates(self, host: str, path: str) -> Iterator[Candidate]:
        """Every candidate the host and path admit, in precedence order.

        ``match`` walks exactly this sequence; it is public for debugging
        output and for tests that check how much work a lookup does.
        """
        host = normalize_host(host)
        if not self.accepts_host(host):
            return
        for group in self._groups.matches(host):
            yield from group.candidates(path)

    def match(
        self, host: str, method: str, path: str, query: str, headers: Headers
    ) -> RouteMatch | None:
        """The winning match for a request, or None for 404.

        Args:
            host: the Host (or :authority), lower-case, without port.
            method: the request method, upper-case.
            path: the path as received, without the query.
            query: the raw query string without ``?``, or "".
            headers: ``(name, value)`` pairs, names lower-case bytes.
        """
        host = host.rstrip(".").lower()  # normalize_host, inline: this runs per request
        if self._hostname is not None and not host_matches(self._hostname, host):
            return None
        request = _NOTHING_TO_CHECK if self._plain else RequestView(method, path, query, headers)
        groups = self._groups
        if groups.wildcard:
            for group in groups.matches(host):
                found = group.first(path, request)
                if found is not None:
                    return found
            return None
        exact = groups.exact.get(host)  # the usual case: no wildcard, no generator
        if exact is not None and (found := exact.first(path, request)) is not None:
            return found
        fallback = groups.fallback
        return fallback.first(path, request) if fallback is not None else None


# Stands in for the request where every candidate is ``plain``: none of them reads it.
_NOTHING_TO_CHECK = RequestView("", "", "", ())


class PortTable:
    """The listeners of one bound port, selected by Host or by SNI."""

    __slots__ = ("_by_host", "listeners", "port")

    def __init__(self, port: ir.Port) -> None:
        self.port = port
        self.listeners = tuple(ListenerTable(listener) for listener in port.listeners)
        grouped = group_by_host((table.listener.hostname, table) for table in self.listeners)
        self._by_host: HostIndex[ListenerTable] = grouped.map(lambda tables: tables[0])

    def listener_for_host(self, host: str) -> ListenerTable | None:
        """The listener whose hostname takes ``host`` most specifically."""
        return self._by_host.lookup(host.rstrip(".").lower())  # normalize_host, inline

    def listener_for_sni(self, server_name: str | None) -> ListenerTable | None:
        """The listener a ClientHello's SNI picks; without SNI, one with no hostname."""
        if not server_name:
            return self._by_host.fallback
        return self._by_host.lookup(normalize_host(server_name))


def compile_port(port: ir.Port) -> PortTable:
    """Compile a port's listeners and routes; done at reload, off the hot path."""
    return PortTable(port)
