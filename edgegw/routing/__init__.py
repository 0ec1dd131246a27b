"""Compiled, immutable routing tables: IR in, fast lookups out. Pure; no I/O.

The data plane calls exactly these names:

``compile_port(port: ir.Port) -> PortTable``
    Built once per reload, off the hot path, for each bound port.

``PortTable.listener_for_host(host: str) -> ListenerTable | None``
    The listener of this port whose hostname matches ``host`` most
    specifically (exact, then longest wildcard, then a listener without a
    hostname). ``host`` is lower-case, without port.

``PortTable.listener_for_sni(server_name: str | None) -> ListenerTable | None``
    The same, for TLS: the listener picked by the ClientHello's SNI.

``ListenerTable.listener: ir.Listener``

``ListenerTable.match(host, method, path, query, headers) -> RouteMatch | None``
    ``host``: lower-case, no port. ``path``: the request path without query,
    as received (percent-encoding kept). ``query``: the raw query string
    without "?", or "". ``headers``: a sequence of ``(name, value)`` pairs,
    names lower-case ``bytes``, values ``bytes``. ``None`` means 404.
    Precedence is the spec's: across all routes attached to the listener.

``RouteMatch.route: ir.HTTPRoute``, ``RouteMatch.rule: ir.HTTPRouteRule``,
``RouteMatch.match: ir.HTTPMatch`` (the match that won, for ReplacePrefixMatch),
and per-rule data computed with the table: ``RouteMatch.grpc`` (answer errors as
gRPC statuses) and ``RouteMatch.sessions`` (``sessions.sticky_lookup``'s table).

``pick_backend(rule_or_backends, rand: float) -> ir.Backend | None``
    Weighted choice; ``None`` when every weight is zero or there are none
    (the data plane answers 500).

Also available, for debugging output and for other tables:

``PortTable.listeners: tuple[ListenerTable, ...]``, ``PortTable.port: ir.Port``.

``ListenerTable.candidates(host, path)``
    The candidates ``match`` would examine, in order (each has ``.result``,
    a ``RouteMatch``).

``hosts.HostIndex`` / ``hosts.group_by_host``
    The hostname index (exact, wildcard suffix walk, fallback) that selects
    listeners here; reusable for SNI → TLSRoute.

The pure part of each HTTP filter (header modifiers, redirects, rewrites,
mirroring, CORS, retries) is in ``routing.filters``.
"""

from edgegw.routing.backends import pick_backend
from edgegw.routing.matchers import RouteMatch
from edgegw.routing.table import ListenerTable, PortTable, compile_port

__all__ = ["ListenerTable", "PortTable", "RouteMatch", "compile_port", "pick_backend"]
