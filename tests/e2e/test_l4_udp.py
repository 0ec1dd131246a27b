"""UDPRoute through a real ``edgegw run``: DNS-style exchanges, many clients, sessions, statuses."""

from __future__ import annotations

import socket

from tests.e2e.conftest import Gateway, free_port, wait_for
from tests.e2e.l4_backends import (
    UDPBackend,
    backends,
    conditions,
    dns_query,
    gateway_doc,
    l4_route,
    listener_status,
    parse_dns_answer,
    route_parents,
    service,
)

__all__ = ["backends"]


def udp_listeners(*ports: int) -> str:
    return "".join(
        f"- {{name: udp{i}, protocol: UDP, port: {port}, "
        "allowedRoutes: {namespaces: {from: All}}}\n"
        for i, port in enumerate(ports)
    )


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def udp_client(timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(timeout)
    return sock


def ask(sock: socket.socket, port: int, payload: bytes) -> bytes:
    sock.sendto(payload, ("127.0.0.1", port))
    data, source = sock.recvfrom(65535)
    assert source == ("127.0.0.1", port)  # replies come from the address the client wrote to
    return data


def setup(gateway: Gateway, backends: list[UDPBackend], refs: str, *names: str) -> int:
    port = free_udp_port()
    gateway.write("gw.yaml", gateway_doc(udp_listeners(port)))
    for name in names:
        backend = UDPBackend(name, dns=name == "dns")
        backends.append(backend)
        service(gateway, name, [backend], port=53, protocol="UDP")
    gateway.write("route.yaml", l4_route("UDPRoute", "r", refs))
    gateway.start()
    return port


def test_dns_style_request_response(gateway: Gateway, backends: list[UDPBackend]) -> None:
    """udproute-simple."""
    port = setup(gateway, backends, "[{name: dns, port: 53}]", "dns")
    with udp_client() as sock:
        # the first datagram opens the session; retry once in case it raced the bind
        sock.sendto(dns_query(1, "example.com"), ("127.0.0.1", port))
        reply = sock.recv(512)
        for ident in range(2, 20):
            reply = ask(sock, port, dns_query(ident, f"host{ident}.example.com"))
            assert parse_dns_answer(reply) == (ident, "192.0.2.1")
    cond = conditions(route_parents(gateway, "UDPRoute", "r")[0])
    assert cond["Accepted"] == ("True", "Accepted")
    assert cond["ResolvedRefs"] == ("True", "ResolvedRefs")


def test_many_clients(gateway: Gateway, backends: list[UDPBackend]) -> None:
    port = setup(gateway, backends, "[{name: echo, port: 53}]", "echo")
    clients = [udp_client() for _ in range(100)]
    try:
        for round_ in range(3):
            for i, sock in enumerate(clients):
                sock.sendto(f"{i}/{round_}".encode(), ("127.0.0.1", port))
            for i, sock in enumerate(clients):
                assert sock.recv(100) == f"echo:{i}/{round_}".encode()
    finally:
        for sock in clients:
            sock.close()
    [backend] = backends
    assert len(backend.clients) == 100  # one upstream socket per session
    metrics = gateway.admin("/metrics")[1].decode()
    labels = 'listener="default/gw/udp0",route="default/r"'
    assert f"edgegw_udp_sessions_total{{{labels}}} 100" in metrics
    assert f"edgegw_udp_sessions_active{{{labels}}} 100" in metrics
    assert f'edgegw_udp_datagrams_total{{{labels},direction="up"}} 300' in metrics
    assert f'edgegw_udp_datagrams_total{{{labels},direction="down"}} 300' in metrics


def test_weights_pick_per_session(gateway: Gateway, backends: list[UDPBackend]) -> None:
    """udproute-weighted-routing: the weight splits sessions; a session keeps its backend."""
    refs = "[{name: a, port: 53, weight: 1}, {name: b, port: 53, weight: 1}, " + (
        "{name: c, port: 53, weight: 0}]"
    )
    port = setup(gateway, backends, refs, "a", "b", "c")
    seen = []
    for _ in range(60):
        with udp_client() as sock:
            names = {ask(sock, port, b"hi").split(b":")[0] for _ in range(5)}
            assert len(names) == 1  # every datagram of a session goes to the same backend
            seen.append(names.pop().decode())
    assert set(seen) == {"a", "b"}
    assert 15 <= seen.count("a") <= 45


def test_attachment_and_reference_grant(gateway: Gateway, backends: list[UDPBackend]) -> None:
    """udproute-parentref-port-and-section-name, -attach-all-listeners, -reference-grant,
    -invalid-cross-namespace-backend-ref, -not-allowed-by-listeners, -invalid-backendref-
    nonexistent, -multiple-routes-attachment."""
    p0, p1, tcp = free_udp_port(), free_udp_port(), free_port()
    all_ns = "{namespaces: {from: All}}"
    listeners = udp_listeners(p0, p1) + (
        f"- {{name: tcp, protocol: TCP, port: {tcp}, allowedRoutes: {all_ns}}}\n"
    )
    gateway.write("gw.yaml", gateway_doc(listeners))
    backends += [mine := UDPBackend("mine"), other := UDPBackend("other")]
    service(gateway, "mine", [mine], port=53, protocol="UDP")
    service(gateway, "svc", [other], namespace="other", port=53, protocol="UDP")
    gateway.write(
        "grant.yaml",
        """\
        apiVersion: gateway.networking.k8s.io/v1beta1
        kind: ReferenceGrant
        metadata: {name: allow, namespace: other}
        spec:
          from: [{group: gateway.networking.k8s.io, kind: UDPRoute, namespace: granted}]
          to: [{group: "", kind: Service, name: svc}]
        """,
    )
    cross, mine_ref = "[{name: svc, namespace: other, port: 53}]", "[{name: mine, port: 53}]"
    table = [  # name, namespace, backendRefs, parentRef
        ("all", "default", mine_ref, "{name: gw}"),
        ("by-port", "granted", cross, f"{{name: gw, namespace: default, port: {p1}}}"),
        ("no-grant", "denied", cross, "{name: gw, namespace: default, sectionName: udp0}"),
        ("to-tcp", "default", mine_ref, "{name: gw, sectionName: tcp}"),
        ("missing", "default", "[{name: nope, port: 53}]", "{name: gw, sectionName: udp0}"),
    ]
    routes = [
        l4_route("UDPRoute", name, refs, parent=parent, namespace=ns)
        for name, ns, refs, parent in table
    ]
    gateway.write(
        "ns.yaml",
        "---\n".join(
            f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n"
            for n in ("granted", "denied", "other")
        ),
    )
    gateway.write("routes.yaml", "---\n".join(routes))
    gateway.start()

    def cond(name: str, namespace: str = "default") -> dict[str, tuple[str, str]]:
        return conditions(route_parents(gateway, "UDPRoute", name, namespace)[0])

    assert cond("all")["Accepted"] == ("True", "Accepted")
    assert cond("by-port", "granted")["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert cond("no-grant", "denied")["ResolvedRefs"] == ("False", "RefNotPermitted")
    assert cond("to-tcp")["Accepted"] == ("False", "NotAllowedByListeners")
    assert cond("missing")["ResolvedRefs"] == ("False", "BackendNotFound")
    assert listener_status(gateway, "udp0")["attachedRoutes"] == 3  # all, no-grant, missing
    assert listener_status(gateway, "udp1")["attachedRoutes"] == 2  # all, by-port
    assert listener_status(gateway, "tcp")["attachedRoutes"] == 0
    # the oldest route on each listener serves it: "all" (created first, then by name)
    with udp_client() as sock:
        assert wait_for(lambda: ask(sock, p0, b"x") == b"mine:x")


def _spray(port: int, source_ports: range) -> int:
    """One datagram from each source port that is free; how many were sent."""
    sent = 0
    for source in source_ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spray:
            try:
                spray.bind(("127.0.0.1", source))
            except OSError:
                continue  # someone else's
            spray.sendto(b"x", ("127.0.0.1", port))
            sent += 1
    return sent


def test_a_source_spraying_ports_does_not_lock_out_other_clients(
    gateway: Gateway, backends: list[UDPBackend]
) -> None:
    """More source ports than the session table holds (16,384): others are still served."""
    port = setup(gateway, backends, "[{name: echo, port: 53}]", "echo")
    sent = 0
    with udp_client() as steady:
        assert ask(steady, port, b"first") == b"echo:first"
        for burst in range(20):  # ports above the range tests hand out (tests/ports.py)
            sent += _spray(port, range(33000 + burst * 1400, 34400 + burst * 1400))
            assert ask(steady, port, b"%d" % burst) == b"echo:%d" % burst
    assert sent > 16384
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as newcomer:
        # a client new after the table filled (another address: the sprayed ports cover most
        # of the ephemeral range, so a port of 127.0.0.1 may already have a session)
        newcomer.bind(("127.0.0.2", 0))
        newcomer.settimeout(5)
        newcomer.sendto(b"new", ("127.0.0.1", port))
        assert newcomer.recv(100) == b"echo:new"
    metrics = gateway.admin("/metrics")[1].decode()
    assert 'edgegw_udp_sessions_active{listener="default/gw/udp0",route="default/r"} 16384' in (
        metrics
    )
