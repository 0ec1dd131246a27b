"""Route selection for TLS passthrough/terminate, TCP and UDP listeners. Pure; no I/O.

Theory of operation
-------------------
A TLS port picks in two steps, as the Gateway API does for HTTP: first the
listener whose hostname takes the ClientHello's SNI most specifically
(exact, then longest wildcard, then a listener without a hostname; HTTPS
listeners on the same port take part, so that an HTTPS listener can win),
then, among that listener's TLSRoutes, the one whose hostnames take the SNI
most specifically. Route hostnames in the IR are already intersected with the
listener's; a route without hostnames takes every name its listener does.
When two routes claim the same name, the oldest (``precedence``) wins, as
the spec's conflict rules ask.

TCP and UDP listeners cannot tell routes apart (there is nothing in a TCP
SYN or a datagram to match on), so a listener serves exactly one route: the
oldest attached (conformance: TCPRouteMultipleRoutesAttachment, "only the
oldest route is attached to the listener").

``routing.pick_backend`` does the weighted choice between a route's backends
from a caller-supplied random number, so tests are deterministic;
``pick_endpoint`` spreads connections over a backend's endpoints the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from edgegw import ir
from edgegw.routing.backends import pick_backend
from edgegw.routing.hosts import HostIndex, group_by_host, normalize_host

__all__ = ["L4Match", "L4Table", "compile_l4", "pick_backend", "pick_endpoint"]

TLS_LISTENER_PROTOCOLS = frozenset({"TLS", "HTTPS"})


class L4Match(NamedTuple):
    """The listener and route a connection goes to (unpacks as ``(listener, route)``)."""

    listener: ir.Listener
    route: ir.L4Route


def _by_precedence(routes: Sequence[ir.L4Route]) -> list[ir.L4Route]:
    return sorted(routes, key=lambda route: route.precedence)


class _ListenerRoutes:
    """One TLS listener's routes, indexed by hostname."""

    __slots__ = ("index", "listener")

    def __init__(self, listener: ir.Listener) -> None:
        self.listener = listener
        routes = _by_precedence([r for r in listener.l4_routes if r.kind == "TLSRoute"])
        pairs = [(host, route) for route in routes for host in (route.hostnames or (None,))]
        self.index: HostIndex[ir.L4Route] = group_by_host(pairs).map(lambda found: found[0])

    def route_for(self, server_name: str | None) -> ir.L4Route | None:
        if server_name is None:
            return self.index.fallback
        return self.index.lookup(server_name)


class L4Table:
    """The compiled L4 view of one bound port; immutable once built."""

    __slots__ = ("_listeners", "_tcp", "_udp", "accept_proxy_protocol", "port")

    def __init__(self, port: ir.Port) -> None:
        self.port = port
        tls = [ln for ln in port.listeners if ln.protocol in TLS_LISTENER_PROTOCOLS]
        grouped = group_by_host((ln.hostname, _ListenerRoutes(ln)) for ln in tls)
        self._listeners: HostIndex[_ListenerRoutes] = grouped.map(lambda found: found[0])
        self._tcp = _single_route(port, "TCP", "TCPRoute")
        self._udp = _single_route(port, "UDP", "UDPRoute")
        self.accept_proxy_protocol = any(ln.proxy_protocol_accept for ln in port.listeners)

    def listener_for_sni(self, server_name: str | None) -> ir.Listener | None:
        """The HTTPS or TLS listener a ClientHello's SNI selects, or None."""
        found = self._listener_routes(server_name)
        return None if found is None else found.listener

    def route_for_sni(self, server_name: str | None) -> L4Match | None:
        """The TLS listener and TLSRoute for this SNI; None means close without an alert.

        Without SNI only a listener and route that name no hosts can match.
        An SNI whose listener is an HTTPS one gives None: HTTP serves it.
        """
        name = normalize_host(server_name) if server_name else None
        found = self._listener_routes(name)
        if found is None or found.listener.protocol != "TLS":
            return None
        route = found.route_for(name)
        return None if route is None else L4Match(found.listener, route)

    def _listener_routes(self, name: str | None) -> _ListenerRoutes | None:
        if not name:
            return self._listeners.fallback
        return self._listeners.lookup(normalize_host(name))

    def route_for_tcp(self) -> L4Match | None:
        """The route a TCP listener on this port relays to."""
        return self._tcp

    def route_for_udp(self) -> L4Match | None:
        """The route a UDP listener on this port relays to."""
        return self._udp


def _single_route(port: ir.Port, protocol: str, kind: str) -> L4Match | None:
    for listener in port.listeners:
        if listener.protocol != protocol:
            continue
        routes = _by_precedence([r for r in listener.l4_routes if r.kind == kind])
        if routes:
            return L4Match(listener, routes[0])
    return None


def compile_l4(port: ir.Port) -> L4Table:
    """Compile a port's L4 listeners and routes; done at reload, off the hot path."""
    return L4Table(port)


def pick_endpoint(backend: ir.Backend, rand: float) -> ir.Endpoint | None:
    """One of a usable backend's endpoints, uniformly; None for invalid or empty ones."""
    if backend.invalid is not None or not backend.endpoints:
        return None
    return backend.endpoints[min(int(rand * len(backend.endpoints)), len(backend.endpoints) - 1)]
