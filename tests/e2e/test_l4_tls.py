"""TLS listeners through a real ``edgegw run``: Passthrough by SNI, Terminate to TCP, sharing."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import trustme

from tests.e2e.conftest import Gateway, free_port
from tests.e2e.l4_backends import (
    TCPEcho,
    TLSBackend,
    backends,
    ca,
    conditions,
    gateway_doc,
    l4_route,
    listener_status,
    route_parents,
    service,
)
from tests.e2e.test_https import tls_secret

__all__ = ["backends", "ca"]


def passthrough_setup(gateway: Gateway, ca: trustme.CA, started: list[object]) -> int:
    """A Passthrough listener; exact.example.com → backend "exact", *.wild.test → "wild"."""
    exact = TLSBackend("exact", ca, "exact.example.com")
    wild = TLSBackend("wild", ca, "*.wild.test")
    started += [exact, wild]
    port = free_port()
    gateway.write(
        "gw.yaml",
        gateway_doc(f"""\
- name: tls
  protocol: TLS
  port: {port}
  tls: {{mode: Passthrough}}
"""),
    )
    service(gateway, "exact", [exact], port=8443)
    service(gateway, "wild", [wild], port=8443)
    gateway.write(
        "routes.yaml",
        "---\n".join(
            l4_route("TLSRoute", name, f"[{{name: {name}, port: 8443}}]", hostnames=hosts)
            for name, hosts in (("exact", '["exact.example.com"]'), ("wild", '["*.wild.test"]'))
        ),
    )
    gateway.start()
    return port


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def tls_greeting(port: int, ca: trustme.CA, name: str) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), 10) as raw,
        client_context(ca).wrap_socket(raw, server_hostname=name) as conn,
    ):
        greeting = conn.recv(200).decode()
        conn.sendall(b"ping")
        assert conn.recv(100) == b"ping"
        return greeting.strip()


class MemoryClient:
    """A TLS client on memory BIOs, so the ClientHello can be sent any way a test likes."""

    def __init__(self, ca: trustme.CA, name: str) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_context(ca).wrap_bio(self.incoming, self.outgoing, server_hostname=name)
        with contextlib.suppress(ssl.SSLWantReadError):
            self.obj.do_handshake()
        self.hello = self.outgoing.read()

    def first_line(self, sock: socket.socket) -> str:
        """Finish the handshake over ``sock`` and read the server's first line."""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush(sock)
                self._receive(sock)
        self._flush(sock)
        buffered = b""
        while b"\n" not in buffered:
            try:
                buffered += self.obj.read(1 << 16)
            except ssl.SSLWantReadError:
                self._receive(sock)
        return buffered.decode().strip()

    def _flush(self, sock: socket.socket) -> None:
        if data := self.outgoing.read():
            sock.sendall(data)

    def _receive(self, sock: socket.socket) -> None:
        data = sock.recv(1 << 16)
        assert data, "closed during the handshake"
        self.incoming.write(data)


def test_passthrough_exact_and_wildcard_sni(
    gateway: Gateway, ca: trustme.CA, backends: list[object]
) -> None:
    """tlsroute-simple-same-namespace, tlsroute-hostname-intersection (wildcards)."""
    port = passthrough_setup(gateway, ca, backends)
    assert tls_greeting(port, ca, "exact.example.com") == "exact exact.example.com"
    assert tls_greeting(port, ca, "a.wild.test") == "wild a.wild.test"
    assert tls_greeting(port, ca, "b.wild.test") == "wild b.wild.test"
    for name in ("exact", "wild"):
        cond = conditions(route_parents(gateway, "TLSRoute", name)[0])
        assert cond["Accepted"] == ("True", "Accepted")
        assert cond["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert listener_status(gateway, "tls")["attachedRoutes"] == 2


def test_openssl_s_client_with_servername(
    gateway: Gateway, ca: trustme.CA, backends: list[object], tmp_path: Path
) -> None:
    port = passthrough_setup(gateway, ca, backends)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    for name, expected in (("exact.example.com", "exact"), ("x.wild.test", "wild")):
        proc = subprocess.Popen(
            [
                *("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name),
                *("-CAfile", str(ca_file), "-verify_return_error", "-verify_hostname", name),
                "-ign_eof",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        timer = threading.Timer(15, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            lines = []
            for line in iter(proc.stdout.readline, b""):
                lines.append(line.decode(errors="replace"))
                if line.startswith(f"{expected} {name}".encode()):
                    break
            else:
                raise AssertionError("".join(lines))
            assert any("Verify return code: 0 (ok)" in line for line in lines), lines
        finally:
            timer.cancel()
            proc.kill()
            proc.wait()


def test_unknown_sni_is_closed_without_an_alert(
    gateway: Gateway, ca: trustme.CA, backends: list[object]
) -> None:
    port = passthrough_setup(gateway, ca, backends)
    for name in ("unknown.example.com", "wild.test", "exact.example.com.evil"):
        hello = MemoryClient(ca, name).hello
        with socket.create_connection(("127.0.0.1", port), 10) as sock:
            sock.sendall(hello)
            try:
                answer = sock.recv(100)
            except ConnectionResetError:
                answer = b""
        assert answer == b"", (name, answer)  # no alert record: just the close


def test_client_hello_split_byte_by_byte(
    gateway: Gateway, ca: trustme.CA, backends: list[object]
) -> None:
    port = passthrough_setup(gateway, ca, backends)
    client = MemoryClient(ca, "exact.example.com")
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(client.hello)):
            sock.sendall(client.hello[i : i + 1])
            time.sleep(0.0005)  # one segment per byte
        assert client.first_line(sock) == "exact exact.example.com"


def test_terminate_to_plain_tcp_backend(
    gateway: Gateway, ca: trustme.CA, backends: list[object]
) -> None:
    """tlsroute-terminate-simple-same-namespace: TLS ends here, the backend gets plain TCP."""
    backends.append(echo := TCPEcho("plain", greet=True))
    port = free_port()
    gateway.write(
        "gw.yaml",
        gateway_doc(f"""\
- name: tls
  protocol: TLS
  port: {port}
  hostname: secure.example.com
  tls: {{mode: Terminate, certificateRefs: [{{name: cert}}]}}
"""),
    )
    gateway.write("secret.yaml", tls_secret("cert", ca, "secure.example.com"))
    service(gateway, "plain", [echo])
    gateway.write("route.yaml", l4_route("TLSRoute", "r", "[{name: plain, port: 9000}]"))
    gateway.start()
    with (
        socket.create_connection(("127.0.0.1", port), 10) as raw,
        client_context(ca).wrap_socket(raw, server_hostname="secure.example.com") as conn,
    ):
        assert conn.recv(100) == b"plain\n"
        conn.sendall(b"over tls")
        assert conn.recv(100) == b"over tls"
    status = listener_status(gateway, "tls")
    assert status["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "TLSRoute"}]
    assert conditions(status)["Accepted"] == ("True", "Accepted")


def test_passthrough_and_https_share_a_port(
    gateway: Gateway, ca: trustme.CA, backends: list[object], echoes: Any
) -> None:
    """tlsroute-mixed-termination-same-namespace, with an HTTPS listener as the terminating one."""
    backends.append(tls_backend := TLSBackend("pass", ca, "pass.example.com"))
    port = free_port()
    gateway.write(
        "gw.yaml",
        gateway_doc(f"""\
- name: https
  protocol: HTTPS
  port: {port}
  hostname: web.example.com
  tls: {{certificateRefs: [{{name: web}}]}}
- name: pass
  protocol: TLS
  port: {port}
  hostname: pass.example.com
  tls: {{mode: Passthrough}}
"""),
    )
    gateway.write("secret.yaml", tls_secret("web", ca, "web.example.com"))
    gateway.service("web", echoes["web"])
    service(gateway, "pass", [tls_backend], port=8443)
    gateway.write(
        "routes.yaml",
        l4_route("TLSRoute", "pass", "[{name: pass, port: 8443}]")
        + """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: https}]
  rules:
  - backendRefs: [{name: web, port: 80}]
""",
    )
    gateway.start()
    assert tls_greeting(port, ca, "pass.example.com") == "pass pass.example.com"
    with (
        socket.create_connection(("127.0.0.1", port), 10) as raw,
        client_context(ca).wrap_socket(raw, server_hostname="web.example.com") as conn,
    ):
        conn.sendall(b"GET /x HTTP/1.1\r\nHost: web.example.com\r\nConnection: close\r\n\r\n")
        answer = b""
        while data := conn.recv(1 << 16):
            answer += data
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b'"pod":"web"' in answer.replace(b" ", b"")
    for name in ("https", "pass"):
        status = listener_status(gateway, name)
        assert conditions(status)["Accepted"] == ("True", "Accepted")
        assert status["attachedRoutes"] == 1


def test_tlsroute_statuses(gateway: Gateway, ca: trustme.CA) -> None:
    """tlsroute-invalid-*, tlsroute-listener-*-supported-kinds."""
    port, other = free_port(), free_port()
    gateway.write(
        "gw.yaml",
        gateway_doc(f"""\
- name: pass
  protocol: TLS
  port: {port}
  hostname: "*.example.com"
  tls: {{mode: Passthrough}}
  allowedRoutes:
    kinds: [{{kind: TCPRoute}}, {{kind: TLSRoute}}]
- name: term
  protocol: TLS
  port: {other}
  hostname: term.example.net
  tls: {{mode: Terminate, certificateRefs: [{{name: cert}}]}}
"""),
    )
    gateway.write("secret.yaml", tls_secret("cert", ca, "term.example.net"))
    gateway.write(
        "svc.yaml",
        """\
        apiVersion: v1
        kind: Service
        metadata: {name: svc, namespace: other}
        spec: {ports: [{port: 443}]}
        """,
    )
    routes = {
        "no-host": ('["foo.example.org"]', "[{name: svc, namespace: other, port: 443}]",
                    "{name: gw, sectionName: pass}"),
        "nonexistent": ('["a.example.com"]', "[{name: nope, port: 443}]",
                        "{name: gw, sectionName: pass}"),
        "unknown-kind": ('["b.example.com"]', "[{name: x, kind: Unknown, port: 443}]",
                         "{name: gw, sectionName: pass}"),
        "no-grant": ('["c.example.com"]', "[{name: svc, namespace: other, port: 443}]",
                     "{name: gw, sectionName: pass}"),
        "no-listener": ('["d.example.com"]', "[{name: nope, port: 443}]",
                        "{name: gw, sectionName: missing}"),
    }  # fmt: skip
    gateway.write(
        "routes.yaml",
        "---\n".join(
            l4_route("TLSRoute", name, refs, hostnames=hosts, parent=parent)
            for name, (hosts, refs, parent) in routes.items()
        ),
    )
    gateway.start()

    def cond(name: str) -> dict[str, tuple[str, str]]:
        return conditions(route_parents(gateway, "TLSRoute", name)[0])

    assert cond("no-host")["Accepted"] == ("False", "NoMatchingListenerHostname")
    assert cond("nonexistent")["ResolvedRefs"] == ("False", "BackendNotFound")
    assert cond("unknown-kind")["ResolvedRefs"] == ("False", "InvalidKind")
    assert cond("no-grant")["ResolvedRefs"] == ("False", "RefNotPermitted")
    assert cond("no-listener")["Accepted"] == ("False", "NoMatchingParent")
    passthrough = listener_status(gateway, "pass")
    assert passthrough["supportedKinds"] == [
        {"group": "gateway.networking.k8s.io", "kind": "TLSRoute"}
    ]
    assert conditions(passthrough)["ResolvedRefs"] == ("False", "InvalidRouteKinds")
    terminate = listener_status(gateway, "term")
    assert terminate["supportedKinds"] == passthrough["supportedKinds"]
    assert conditions(terminate)["Accepted"] == ("True", "Accepted")
    assert terminate["attachedRoutes"] == 0
