"""TCPRoute through a real ``edgegw run``: relays, weights, attachment, reloads, PROXY protocol."""

from __future__ import annotations

import hashlib
import os
import socket

from tests.e2e.conftest import Gateway, free_port, wait_for
from tests.e2e.l4_backends import (
    TCPEcho,
    backends,
    closed_unserved,
    conditions,
    exchange,
    gateway_doc,
    l4_route,
    listener_status,
    recv_all,
    route_parents,
    service,
)

__all__ = ["backends"]


def tcp_listeners(*ports: int) -> str:
    return "".join(
        f"""\
- name: tcp{i}
  protocol: TCP
  port: {port}
  allowedRoutes: {{namespaces: {{from: All}}}}
"""
        for i, port in enumerate(ports)
    )


def greeting(port: int) -> str:
    """The name a greeting backend sends first."""
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock).decode().strip()


def test_large_transfer_is_relayed_byte_for_byte(gateway: Gateway, backends: list[TCPEcho]) -> None:
    backends.append(echo := TCPEcho("a"))
    port = free_port()
    gateway.write("gw.yaml", gateway_doc(tcp_listeners(port)))
    service(gateway, "echo", [echo])
    gateway.write("route.yaml", l4_route("TCPRoute", "r", "[{name: echo, port: 9000}]"))
    gateway.start()
    payload = os.urandom(32 << 20)
    with socket.create_connection(("127.0.0.1", port), 30) as sock:
        received = bytearray()
        view = memoryview(payload)
        sock.setblocking(True)
        sent = 0
        while sent < len(payload):  # interleave: the echo fills the return path as we send
            sent += sock.send(view[sent : sent + (1 << 20)])
            sock.settimeout(0.001)
            try:
                while chunk := sock.recv(1 << 20):
                    received += chunk
            except (TimeoutError, BlockingIOError):
                pass
            sock.settimeout(30)
        sock.shutdown(socket.SHUT_WR)  # half-close: the answer keeps flowing
        received += recv_all(sock)
    assert len(received) == len(payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_half_close_keeps_the_other_direction(gateway: Gateway, backends: list[TCPEcho]) -> None:
    backends.append(echo := TCPEcho("a"))
    port = free_port()
    gateway.write("gw.yaml", gateway_doc(tcp_listeners(port)))
    service(gateway, "echo", [echo])
    gateway.write("route.yaml", l4_route("TCPRoute", "r", "[{name: echo, port: 9000}]"))
    gateway.start()
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(b"first ")
        assert sock.recv(100) == b"first "
        sock.sendall(b"last")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"last"  # then EOF from the backend's own half-close


def test_weights_split_connections(gateway: Gateway, backends: list[TCPEcho]) -> None:
    backends += [a := TCPEcho("a", greet=True), b := TCPEcho("b", greet=True)]
    c = TCPEcho("c", greet=True)
    backends.append(c)
    port = free_port()
    gateway.write("gw.yaml", gateway_doc(tcp_listeners(port)))
    service(gateway, "a", [a])
    service(gateway, "b", [b])
    service(gateway, "c", [c])
    refs = "[{name: a, port: 9000, weight: 3}, {name: b, port: 9000, weight: 1}, " + (
        "{name: c, port: 9000, weight: 0}]"
    )
    gateway.write("route.yaml", l4_route("TCPRoute", "r", refs))
    gateway.start()
    seen = [greeting(port) for _ in range(200)]
    assert set(seen) == {"a", "b"}  # weight 0 never gets a connection
    assert 0.6 < seen.count("a") / len(seen) < 0.9


def test_section_name_port_and_statuses(gateway: Gateway, backends: list[TCPEcho]) -> None:
    """tcproute-parentref-port-and-section-name, -attach-all, -invalid-non-tcp-listener,
    -invalid-backendref-nonexistent, -multiple-routes-attachment."""
    backends += [a := TCPEcho("a", greet=True), b := TCPEcho("b", greet=True)]
    p0, p1, p_http = free_port(), free_port(), free_port()
    listeners = tcp_listeners(p0, p1) + (
        f"- {{name: http, protocol: HTTP, port: {p_http}, "
        "allowedRoutes: {namespaces: {from: All}}}\n"
    )
    gateway.write("gw.yaml", gateway_doc(listeners))
    service(gateway, "a", [a])
    service(gateway, "b", [b])
    ref_a, ref_b = "[{name: a, port: 9000}]", "[{name: b, port: 9000}]"
    parents = {
        "by-section": (ref_a, f"{{name: gw, sectionName: tcp0, port: {p0}}}"),
        "by-port": (ref_b, f"{{name: gw, port: {p1}}}"),
        "newer": (ref_b, "{name: gw, sectionName: tcp0}"),
        "to-http": (ref_a, "{name: gw, sectionName: http}"),
        "wrong-port": (ref_a, f"{{name: gw, sectionName: tcp0, port: {p1}}}"),
        "missing": ("[{name: nope, port: 9000}]", "{name: gw, sectionName: tcp1}"),
    }
    routes = [l4_route("TCPRoute", n, ref, parent=parent) for n, (ref, parent) in parents.items()]
    gateway.write("a-routes.yaml", "---\n".join(routes[:2]))
    gateway.write("b-routes.yaml", "---\n".join(routes[2:]))
    gateway.start()
    ok = ("True", "Accepted"), ("True", "ResolvedRefs")
    for name in ("by-section", "by-port", "newer"):
        [parent] = route_parents(gateway, "TCPRoute", name)
        cond = conditions(parent)
        assert (cond["Accepted"], cond["ResolvedRefs"]) == ok, (name, cond)
    assert conditions(route_parents(gateway, "TCPRoute", "to-http")[0])["Accepted"] == (
        "False",
        "NotAllowedByListeners",
    )
    assert conditions(route_parents(gateway, "TCPRoute", "wrong-port")[0])["Accepted"] == (
        "False",
        "NoMatchingParent",
    )
    missing = conditions(route_parents(gateway, "TCPRoute", "missing")[0])
    assert missing["ResolvedRefs"] == ("False", "BackendNotFound")
    # tcp0: by-section and newer (both counted, the oldest serves); tcp1: by-port and missing
    assert listener_status(gateway, "tcp0")["attachedRoutes"] == 2
    assert listener_status(gateway, "tcp1")["attachedRoutes"] == 2
    assert listener_status(gateway, "tcp0")["supportedKinds"] == [
        {"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}
    ]
    assert {greeting(p0) for _ in range(5)} == {"a"}


def test_reference_grant_for_cross_namespace_backend(
    gateway: Gateway, backends: list[TCPEcho]
) -> None:
    """tcproute-reference-grant and tcproute-invalid-cross-namespace-backend-ref."""
    backends.append(echo := TCPEcho("other", greet=True))
    port = free_port()
    gateway.write("gw.yaml", gateway_doc(tcp_listeners(port)))
    service(gateway, "svc", [echo], namespace="other")
    ref = "[{name: svc, namespace: other, port: 9000}]"
    gateway.write("route.yaml", l4_route("TCPRoute", "r", ref))
    gateway.start()
    cond = conditions(route_parents(gateway, "TCPRoute", "r")[0])
    assert cond["ResolvedRefs"] == ("False", "RefNotPermitted")
    assert cond["Accepted"] == ("True", "Accepted")
    assert closed_unserved(port)  # the share of an invalid backend is closed
    generation = gateway.generation()
    gateway.write(
        "grant.yaml",
        """\
        apiVersion: gateway.networking.k8s.io/v1beta1
        kind: ReferenceGrant
        metadata: {name: allow, namespace: other}
        spec:
          from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: default}]
          to: [{group: "", kind: Service}]
        """,
    )
    gateway.wait_generation_after(generation)
    cond = conditions(route_parents(gateway, "TCPRoute", "r")[0])
    assert cond["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert greeting(port) == "other"


def test_reload_moves_new_connections_and_keeps_open_ones(
    gateway: Gateway, backends: list[TCPEcho]
) -> None:
    backends += [a := TCPEcho("a", greet=True), b := TCPEcho("b", greet=True)]
    port = free_port()
    gateway.write("gw.yaml", gateway_doc(tcp_listeners(port)))
    service(gateway, "a", [a])
    service(gateway, "b", [b])
    gateway.write("route.yaml", l4_route("TCPRoute", "r", "[{name: a, port: 9000}]"))
    gateway.start()
    with socket.create_connection(("127.0.0.1", port), 10) as open_conn:
        assert open_conn.recv(10) == b"a\n"
        generation = gateway.generation()
        gateway.write("route.yaml", l4_route("TCPRoute", "r", "[{name: b, port: 9000}]"))
        gateway.wait_generation_after(generation)
        assert wait_for(lambda: greeting(port) == "b", what="new connections on b")
        open_conn.sendall(b"still here")
        assert open_conn.recv(100) == b"still here"
        open_conn.shutdown(socket.SHUT_WR)
        assert recv_all(open_conn) == b""


def test_backend_gets_proxy_protocol_header(gateway: Gateway, backends: list[TCPEcho]) -> None:
    backends += [v1 := TCPEcho("v1"), v2 := TCPEcho("v2")]
    p1, p2 = free_port(), free_port()
    gateway.write("gw.yaml", gateway_doc(tcp_listeners(p1, p2)))
    service(gateway, "v1", [v1], annotations={"edgegw.io/proxy-protocol": "v1"})
    service(gateway, "v2", [v2], annotations={"edgegw.io/proxy-protocol": "v2"})
    gateway.write(
        "routes.yaml",
        "---\n".join(
            l4_route("TCPRoute", name, f"[{{name: {name}, port: 9000}}]", parent=parent)
            for name, parent in (
                ("v1", f"{{name: gw, port: {p1}}}"),
                ("v2", f"{{name: gw, port: {p2}}}"),
            )
        ),
    )
    gateway.start()
    for port, backend in ((p1, v1), (p2, v2)):
        with socket.create_connection(("127.0.0.1", port), 10) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(b"payload")
            sock.shutdown(socket.SHUT_WR)
            echoed = recv_all(sock)
        assert echoed.endswith(b"payload")
        wait_for(lambda b=backend: b.received and b.received[-1].endswith(b"payload"))
        first = backend.received[-1]
        if backend is v1:
            assert first == f"PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {port}\r\n".encode() + (
                b"payload"
            )
        else:
            assert first.startswith(b"\r\n\r\n\x00\r\nQUIT\n\x21\x11")  # v2, PROXY, TCP over IPv4
            addresses = first[16:28]
            assert addresses == socket.inet_aton("127.0.0.1") * 2 + client_port.to_bytes(
                2, "big"
            ) + port.to_bytes(2, "big")


def test_listener_accepting_proxy_protocol_uses_its_address(
    gateway: Gateway, backends: list[TCPEcho]
) -> None:
    backends.append(echo := TCPEcho("a"))
    port = free_port()
    gateway.write(
        "gw.yaml",
        gateway_doc(tcp_listeners(port), annotations='{edgegw.io/accept-proxy-protocol: "true"}'),
    )
    service(gateway, "echo", [echo], annotations={"edgegw.io/proxy-protocol": "v1"})
    gateway.write("route.yaml", l4_route("TCPRoute", "r", "[{name: echo, port: 9000}]"))
    gateway.start()
    header = f"PROXY TCP4 203.0.113.7 192.0.2.1 40000 {port}\r\n".encode()
    assert exchange(port, header + b"hello").endswith(b"hello")
    wait_for(lambda: echo.received and echo.received[-1].endswith(b"hello"))
    assert echo.received[-1] == f"PROXY TCP4 203.0.113.7 192.0.2.1 40000 {port}\r\nhello".encode()
    # a connection without the header is not served
    assert closed_unserved(port, b"GET / HTTP/1.1\r\n\r\n")
    metrics = gateway.admin("/metrics")[1].decode()
    assert f'edgegw_tcp_rejected_total{{listener="tcp/127.0.0.1:{port}"}} 1' in metrics


def test_l4_metrics(gateway: Gateway, backends: list[TCPEcho]) -> None:
    backends.append(echo := TCPEcho("a"))
    port = free_port()
    gateway.write("gw.yaml", gateway_doc(tcp_listeners(port)))
    service(gateway, "echo", [echo])
    gateway.write("route.yaml", l4_route("TCPRoute", "r", "[{name: echo, port: 9000}]"))
    gateway.start()
    for _ in range(3):
        assert exchange(port, b"x" * 1000) == b"x" * 1000
    labels = 'listener="default/gw/tcp0",route="default/r"'

    def scraped() -> str:
        text = gateway.admin("/metrics")[1].decode()
        return text if f"edgegw_tcp_connections_active{{{labels}}} 0" in text else ""

    metrics = wait_for(scraped, what="relays to finish")
    assert f"edgegw_tcp_connections_total{{{labels}}} 3" in metrics
    assert f'edgegw_tcp_bytes_total{{{labels},direction="up"}} 3000' in metrics
    assert f'edgegw_tcp_bytes_total{{{labels},direction="down"}} 3000' in metrics
    assert f"edgegw_tcp_upstream_errors_total{{{labels}}} 0" in metrics
    echo.stop()
    backends.remove(echo)
    assert closed_unserved(port)
    metrics = gateway.admin("/metrics")[1].decode()
    assert f"edgegw_tcp_upstream_errors_total{{{labels}}} 1" in metrics
