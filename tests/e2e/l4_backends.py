"""Real TCP, TLS and UDP backends for the L4 end-to-end tests, and config builders.

Each backend is a small threaded server on a free loopback port, stopped by
the fixture that made it. They say who they are, so tests can tell which
backend a connection or a datagram reached.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import socketserver
import ssl
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from tests.e2e.conftest import GATEWAY_CLASS, Gateway, free_port


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class TCPEcho:
    """Echoes every byte back; on EOF from the client, finishes and half-closes too.

    ``greet``: first send ``NAME\\n``, so a client can tell backends apart.
    ``received`` keeps the first bytes of each connection (PROXY headers included).
    """

    def __init__(self, name: str, *, greet: bool = False) -> None:
        self.name = name
        self.received: list[bytes] = []
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request, greet)

        self.server = _TCPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _serve(self, conn: socket.socket, greet: bool) -> None:
        index = len(self.received)
        self.received.append(b"")
        if greet:
            conn.sendall(self.name.encode() + b"\n")
        with contextlib.suppress(OSError):
            while data := conn.recv(1 << 16):
                if len(self.received[index]) < 4096:
                    self.received[index] += data[:4096]
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TLSBackend:
    """A TLS server (trustme certificate) that greets with ``NAME SNI\\n``, then echoes."""

    def __init__(self, name: str, ca: trustme.CA, *hosts: str) -> None:
        self.name = name
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*hosts).configure_cert(self.context)
        self.context.sni_callback = _remember_sni
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request)

        self.server = _TCPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError), self.context.wrap_socket(raw, server_side=True) as conn:
            conn.sendall(f"{self.name} {getattr(conn, 'sni', None)}\n".encode())
            while data := conn.recv(1 << 16):
                conn.sendall(data)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _remember_sni(conn: Any, name: str | None, context: ssl.SSLContext) -> None:
    del context
    conn.sni = name


class UDPBackend:
    """Answers each datagram with ``NAME:`` + the datagram; DNS queries get a DNS answer.

    A DNS query (``dns=True``) is answered with one A record, ``address``.
    ``clients`` counts datagrams per client address:port (the gateway's side).
    """

    def __init__(self, name: str, *, dns: bool = False, address: str = "192.0.2.1") -> None:
        self.name = name
        self.dns = dns
        self.address = address
        self.clients: dict[tuple[str, int], int] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stopped:
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.clients[peer] = self.clients.get(peer, 0) + 1
            reply = dns_answer(data, self.address) if self.dns else self.name.encode() + b":" + data
            with contextlib.suppress(OSError):
                self.sock.sendto(reply, peer)

    def stop(self) -> None:
        self._stopped = True
        self._thread.join(5)  # its receive times out within 0.2 s and sees the flag
        self.sock.close()


# --- DNS, just enough for a request/response client -------------------------------------------


def dns_query(ident: int, name: str) -> bytes:
    """A standard query for ``name`` IN A, recursion desired."""
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return header + labels + struct.pack("!HH", 1, 1)


def dns_answer(query: bytes, address: str) -> bytes:
    ident = struct.unpack("!H", query[:2])[0]
    question = query[12:]
    header = struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0)
    answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(address)
    return header + question + answer


def parse_dns_answer(reply: bytes) -> tuple[int, str]:
    """The id and the A record's address of a one-answer reply."""
    ident, flags, _, answers = struct.unpack("!HHHH", reply[:8])
    assert flags & 0x8000, reply
    assert answers == 1, reply
    return ident, socket.inet_ntoa(reply[-4:])


# --- config -------------------------------------------------------------------------------


def service(
    gateway: Gateway,
    name: str,
    backends: list[Any],
    *,
    namespace: str = "default",
    port: int = 9000,
    protocol: str = "TCP",
    annotations: dict[str, str] | None = None,
) -> None:
    """A selector-less Service with one EndpointSlice per backend."""
    gateway.service(
        name, backends, namespace=namespace, port=port, protocol=protocol, annotations=annotations
    )


def gateway_doc(listeners: str, *, name: str = "gw", annotations: str = "") -> str:
    """GatewayClass plus a Gateway with the given YAML list of listeners."""
    meta = f"\n  annotations: {annotations}" if annotations else ""
    indented = "\n".join("  " + line for line in listeners.strip("\n").splitlines())
    return (
        GATEWAY_CLASS
        + f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {name}
  namespace: default{meta}
spec:
  gatewayClassName: edgegw
  listeners:
{indented}
"""
    )


def l4_route(
    kind: str,
    name: str,
    backends: str,
    *,
    parent: str = "{name: gw}",
    hostnames: str = "",
    namespace: str = "default",
    version: str = "v1alpha2",
) -> str:
    hosts = f"\n  hostnames: {hostnames}" if hostnames else ""
    return f"""\
apiVersion: gateway.networking.k8s.io/{version}
kind: {kind}
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  parentRefs: [{parent}]{hosts}
  rules:
  - backendRefs: {backends}
"""


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """``{type: (status, reason)}`` of a status's conditions."""
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def route_parents(gateway: Gateway, kind: str, name: str, namespace: str = "default") -> list[Any]:
    return list(gateway.resource(kind, name, namespace)["status"]["parents"])


def listener_status(gateway: Gateway, listener: str, name: str = "gw") -> dict[str, Any]:
    for entry in gateway.resource("Gateway", name)["status"]["listeners"]:
        if entry["name"] == listener:
            return dict(entry)
    raise KeyError(listener)


def exchange(port: int, payload: bytes, *, timeout: float = 10) -> bytes:
    """Connect, send, half-close, read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


def closed_unserved(port: int, payload: bytes = b"x") -> bool:
    """True when the gateway closes (EOF or reset) without sending a byte.

    A reset can arrive before the half-close: the socket is then no longer
    connected (ENOTCONN) or the send finds it broken, which is the same answer.
    """
    try:
        return exchange(port, payload) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            return True
        raise


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(1 << 16):
        chunks.append(data)
    return b"".join(chunks)


@pytest.fixture
def backends() -> Iterator[list[Any]]:
    """Backends a test starts; stopped afterwards."""
    started: list[Any] = []
    yield started
    for backend in started:
        backend.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


__all__ = ["free_port"]
