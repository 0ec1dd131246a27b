"""Traffic halves of upstream L4 tests whose status is in ``tests/unit/test_l4_conformance.py``.

TLSRouteInvalidBackendRefNonexistent and TLSRouteInvalidBackendRefUnknownKind
(a TLS connection for the route's hostname is closed unserved),
TCPRouteParentRefAttachAll (one route serves all four TCP listeners) and
UDPRouteMultipleRoutesAttachment (two routes on one UDP listener: only the
older one's backend answers).
"""

from __future__ import annotations

import socket
import ssl

from tests.e2e.conftest import Gateway, free_port
from tests.e2e.l4_backends import (
    TCPEcho,
    UDPBackend,
    backends,
    closed_unserved,
    exchange,
    gateway_doc,
    l4_route,
    service,
)
from tests.e2e.test_l4_udp import ask, free_udp_port, udp_client

__all__ = ["backends"]


def test_tlsroute_invalid_backend_refs_reject_connections(gateway: Gateway) -> None:
    """TLSRouteInvalidBackendRefNonexistent and TLSRouteInvalidBackendRefUnknownKind."""
    missing, unknown = free_port(), free_port()
    listeners = "".join(
        f"- {{name: {name}, protocol: TLS, port: {port}, tls: {{mode: Passthrough}}}}\n"
        for name, port in (("missing", missing), ("unknown", unknown))
    )
    gateway.write("gw.yaml", gateway_doc(listeners))
    gateway.write(
        "routes.yaml",
        l4_route(
            "TLSRoute",
            "invalid-backend-ref-nonexistent",
            "[{name: nonexistent, port: 443}]",
            parent="{name: gw, sectionName: missing}",
            hostnames="[example.com]",
        )
        + "---\n"
        + l4_route(
            "TLSRoute",
            "invalid-backend-ref-unknown-kind",
            "[{group: unknownkind.example.com, kind: NonExistent, name: tls-backend, port: 443}]",
            parent="{name: gw, sectionName: unknown}",
            hostnames="[example.com]",
        ),
    )
    gateway.start()
    context = ssl.create_default_context()
    for port in (missing, unknown):
        with socket.create_connection(("127.0.0.1", port), 10) as raw:
            try:
                context.wrap_socket(raw, server_hostname="example.com").close()
                handshake_done = True
            except (ssl.SSLError, OSError):
                handshake_done = False
        assert not handshake_done, port  # closed after the ClientHello, no backend reached


def test_tcproute_parentref_attach_all(gateway: Gateway, backends: list[object]) -> None:
    backends.append(echo := TCPEcho("tcp-echo-attach-all"))
    ports = [free_port() for _ in range(4)]
    names = ("one", "two", "three", "four")
    kinds = "allowedRoutes: {kinds: [{kind: TCPRoute}]}"
    listeners = "".join(
        f"- {{name: {n}, protocol: TCP, port: {p}, {kinds}}}\n"
        for n, p in zip(names, ports, strict=True)
    )
    gateway.write("gw.yaml", gateway_doc(listeners))
    service(gateway, "tcp-echo-attach-all", [echo], port=3000)
    gateway.write(
        "route.yaml",
        l4_route("TCPRoute", "tcp-route-attach-all", "[{name: tcp-echo-attach-all, port: 3000}]"),
    )
    gateway.start()
    for port in ports:
        assert exchange(port, f"to {port}".encode()) == f"to {port}".encode()
    assert not closed_unserved(ports[0])


def test_udproute_multiple_routes_attachment(gateway: Gateway, backends: list[object]) -> None:
    port = free_udp_port()
    older, newer = UDPBackend("udp-attach-backend-1"), UDPBackend("udp-attach-backend-2")
    backends += [older, newer]
    gateway.write(
        "gw.yaml",
        gateway_doc(f"- {{name: udp, protocol: UDP, port: {port}}}\n"),
    )
    service(gateway, "udp-attach-backend-1", [older], port=8080, protocol="UDP")
    service(gateway, "udp-attach-backend-2", [newer], port=8080, protocol="UDP")
    routes = []
    for name, backend, created in (
        ("udproute-attach-older", "udp-attach-backend-1", "2025-01-01T00:00:00Z"),
        ("udproute-attach-newer", "udp-attach-backend-2", "2025-01-02T00:00:00Z"),
    ):
        doc = l4_route("UDPRoute", name, f"[{{name: {backend}, port: 8080}}]")
        routes.append(
            doc.replace(
                "namespace: default}", f'namespace: default, creationTimestamp: "{created}"}}'
            )
        )
    gateway.write("routes.yaml", "---\n".join(routes))
    gateway.start()
    for _ in range(5):
        with udp_client() as sock:
            sock.sendto(b"hello", ("127.0.0.1", port))  # opens the session
            sock.recv(512)
            assert ask(sock, port, b"ping") == b"udp-attach-backend-1:ping"
    assert not newer.clients
