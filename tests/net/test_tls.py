"""TLS termination: SNI picks the listener and certificate, ALPN, broken clients, reloads.

Real loopback sockets, trustme certificates and a stdlib ``ssl`` client in a
thread; the server is a few lines of trio around ``accept_tls``. The other
``test_tls_*`` modules reuse the helpers here.
"""

from __future__ import annotations

import functools
import json
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import trio
import trustme

from edgegw import ir
from edgegw.net import tls
from edgegw.net.tls import ServerTLS, TLSSession

# --- helpers shared by the test_tls_* modules ----------------------------------------------


def certificate(ca: trustme.CA, *names: str) -> ir.Certificate:
    issued = ca.issue_cert(*names)
    return ir.Certificate(
        chain_pem=b"".join(blob.bytes() for blob in issued.cert_chain_pems),
        key_pem=issued.private_key_pem.bytes(),
        names=names,
        source=f"default/{names[0]}",
    )


def listener(
    name: str,
    hostname: str | None,
    *certs: ir.Certificate,
    protocol: ir.Protocol = "HTTPS",
    mode: str = "Terminate",
    validation: ir.FrontendValidation | None = None,
) -> ir.Listener:
    return ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name=name,
        protocol=protocol,
        port=443,
        hostname=hostname,
        tls=ir.ListenerTLS(
            mode=mode,  # type: ignore[arg-type]
            certificates=certs,
            frontend_validation=validation,
        ),
    )


def port_of(*listeners: ir.Listener) -> ir.Port:
    return ir.Port(address="127.0.0.1", port=443, listeners=listeners)


@dataclass
class Server:
    """A trio TLS server using the API the accept loop uses; ``tls`` may be swapped (a reload)."""

    tls: ServerTLS
    port: int = 0
    refused: int = 0
    sessions: list[TLSSession] = field(default_factory=list)
    handshake_timeout: float = 5.0
    any_refused: trio.Event = field(default_factory=trio.Event)

    async def handle(self, stream: trio.SocketStream) -> None:
        session = await tls.accept_tls(stream, self.tls, handshake_timeout=self.handshake_timeout)
        if session is None:
            self.refused += 1
            self.any_refused.set()
            return
        self.sessions.append(session)
        async with session.stream:
            await read_head(session.stream)
            await session.stream.send_all(response(session))


async def read_head(stream: trio.abc.Stream) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some()
        if not chunk:
            break
        head += chunk
    return head


def response(session: tls.TLSSession) -> bytes:
    peer = session.peer_certificate
    body = json.dumps(
        {
            "listener": session.listener.name,
            "sni": session.server_name,
            "alpn": session.alpn,
            "version": session.version,
            "peer": peer.subject.rfc4514_string() if peer else None,
            "verified": session.peer_verified,
        }
    ).encode()
    head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


@asynccontextmanager
async def serving(server_tls: tls.ServerTLS, **kwargs: Any) -> AsyncIterator[Server]:
    server = Server(server_tls, **kwargs)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
        )
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


@dataclass
class Reply:
    body: dict[str, Any]
    peer_names: list[str]
    alpn: str | None
    session: ssl.SSLSession | None
    reused: bool


def fetch(
    port: int,
    server_hostname: str | None,
    ctx: ssl.SSLContext,
    session: ssl.SSLSession | None = None,
) -> Reply:
    """A blocking HTTPS request from the stdlib client; raises when no response comes."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=server_hostname, session=session) as conn,
    ):
        conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        if not data:
            raise ConnectionError("closed without a response")
        sans: Any = (conn.getpeercert() or {}).get("subjectAltName", ())
        names = [value for kind, value in sans if kind == "DNS"]
        body = json.loads(data.partition(b"\r\n\r\n")[2])
        alpn, reused = conn.selected_alpn_protocol(), bool(conn.session_reused)
        return Reply(body, names, alpn, conn.session, reused)


async def afetch(port: int, server_hostname: str | None, ctx: ssl.SSLContext, **kw: Any) -> Reply:
    return await trio.to_thread.run_sync(lambda: fetch(port, server_hostname, ctx, **kw))


def client_ctx(ca: trustme.CA, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def three_listeners(ca: trustme.CA) -> ir.Port:
    """An exact, a wildcard and a default listener on one port, each with its own certificate."""
    return port_of(
        listener("wildcard", "*.example.com", certificate(ca, "*.example.com")),
        listener("exact", "api.example.com", certificate(ca, "api.example.com")),
        listener("default", None, certificate(ca, "default.test")),
    )


# --- SNI ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sni", "listener_name", "cert_name"),
    [
        ("api.example.com", "exact", "api.example.com"),
        ("API.Example.COM", "exact", "api.example.com"),
        ("www.example.com", "wildcard", "*.example.com"),
        ("default.test", "default", "default.test"),
        ("unknown.test", "default", "default.test"),
    ],
)
async def test_sni_picks_listener_and_certificate(
    ca: trustme.CA, three_listeners: ir.Port, sni: str, listener_name: str, cert_name: str
) -> None:
    ctx = client_ctx(ca)
    ctx.check_hostname = False  # "unknown.test" gets the default certificate, by design
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(three_listeners)) as server:
            reply = await afetch(server.port, sni, ctx)
    assert reply.body["listener"] == listener_name
    assert reply.body["sni"] == sni.lower()
    assert reply.peer_names == [cert_name]


async def test_sni_certificate_verifies_with_hostname_check(
    ca: trustme.CA, three_listeners: ir.Port
) -> None:
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(three_listeners)) as server:
            reply = await afetch(server.port, "www.example.com", client_ctx(ca))
    assert reply.body["listener"] == "wildcard"


async def test_no_sni_gets_the_listener_without_hostname(
    ca: trustme.CA, three_listeners: ir.Port
) -> None:
    ctx = client_ctx(ca)
    ctx.check_hostname = False
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(three_listeners)) as server:
            reply = await afetch(server.port, None, ctx)
    assert reply.body == {**reply.body, "listener": "default", "sni": None}
    assert reply.peer_names == ["default.test"]


def test_selection_order_and_fallback(ca: trustme.CA) -> None:
    cert = certificate(ca, "x.test")
    with_default = tls.build_server_tls(
        port_of(
            listener("short", "*.example.com", cert),
            listener("long", "*.api.example.com", cert),
            listener("exact", "v1.api.example.com", cert),
            listener("default", None, cert),
        )
    )

    def pick(name: str | None) -> str | None:
        selected = with_default.select_listener(name)
        return selected.name if selected else None

    assert pick("v1.api.example.com") == "exact"
    assert pick("v2.api.example.com") == "long"
    assert pick("a.b.api.example.com") == "long"
    assert pick("www.example.com") == "short"
    assert pick("example.com") == "default"
    assert pick("v1.api.example.com.") == "exact"
    assert pick(None) == "default"

    no_default = tls.build_server_tls(
        port_of(listener("first", "a.test", cert), listener("second", "b.test", cert))
    )
    assert no_default.select_listener("b.test").name == "second"  # type: ignore[union-attr]
    assert no_default.select_listener("c.test").name == "first"  # type: ignore[union-attr]
    assert no_default.select_listener(None).name == "first"  # type: ignore[union-attr]


async def test_listener_with_two_certificates_picks_by_name(ca: trustme.CA) -> None:
    port = port_of(
        listener("multi", None, certificate(ca, "one.test"), certificate(ca, "two.test")),
    )
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(port)) as server:
            first = await afetch(server.port, "one.test", client_ctx(ca))
            second = await afetch(server.port, "two.test", client_ctx(ca))
    assert (first.peer_names, second.peer_names) == (["one.test"], ["two.test"])


# --- ALPN -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_alpn", "client_alpn", "expected"),
    [
        (("h2", "http/1.1"), ["h2", "http/1.1"], "h2"),
        (("h2", "http/1.1"), ["http/1.1", "h2"], "h2"),  # the server's preference wins
        (("http/1.1",), ["h2", "http/1.1"], "http/1.1"),
        (("h2", "http/1.1"), ["http/1.1"], "http/1.1"),
        (("h2", "http/1.1"), None, None),
        (("h2",), ["spdy/3"], None),  # no overlap: the handshake goes on without ALPN
    ],
)
async def test_alpn(
    ca: trustme.CA,
    three_listeners: ir.Port,
    server_alpn: tuple[str, ...],
    client_alpn: list[str] | None,
    expected: str | None,
) -> None:
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(three_listeners, alpn=server_alpn)) as server:
            reply = await afetch(server.port, "api.example.com", client_ctx(ca, alpn=client_alpn))
    assert reply.alpn == expected
    assert reply.body["alpn"] == expected


# --- broken clients -------------------------------------------------------------------------


async def raw_exchange(port: int, payload: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(payload)
        received = b""
        while chunk := await stream.receive_some():
            received += chunk
        return received


@pytest.mark.parametrize(
    "payload",
    [
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",  # a handshake record that is not a ClientHello
        bytes(range(256)) * 4,
    ],
)
async def test_garbage_is_closed_and_server_lives_on(
    ca: trustme.CA, three_listeners: ir.Port, payload: bytes
) -> None:
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(three_listeners)) as server:
            answer = await raw_exchange(server.port, payload)
            reply = await afetch(server.port, "api.example.com", client_ctx(ca))
            await server.any_refused.wait()
    assert b"HTTP" not in answer  # at most an alert, never a response
    assert server.refused == 1
    assert reply.body["listener"] == "exact"


async def test_client_closing_mid_handshake_is_refused(
    ca: trustme.CA, three_listeners: ir.Port
) -> None:
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(three_listeners)) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a prefix
            await stream.aclose()
            await server.any_refused.wait()
            reply = await afetch(server.port, "api.example.com", client_ctx(ca))
    assert reply.body["listener"] == "exact"


async def test_stalled_handshake_times_out(ca: trustme.CA, three_listeners: ir.Port) -> None:
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(three_listeners), handshake_timeout=0.3) as server:
            stalled = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stalled:
                reply = await afetch(server.port, "api.example.com", client_ctx(ca))
                assert await stalled.receive_some() == b""  # the server hung up on us
            await server.any_refused.wait()
    assert server.refused == 1
    assert reply.body["listener"] == "exact"


# --- building, reloads ----------------------------------------------------------------------


def test_passthrough_and_plain_listeners_are_ignored(ca: trustme.CA) -> None:
    cert = certificate(ca, "t.test")
    built = tls.build_server_tls(
        port_of(
            listener("pass", "p.test", protocol="TLS", mode="Passthrough"),
            listener("term", "t.test", cert, protocol="TLS"),
            listener("https", "h.test", cert),
        )
    )
    assert [ln.name for ln in built.listeners] == ["term", "https"]
    assert built.select_listener("p.test").name == "term"  # type: ignore[union-attr]


async def test_unusable_certificate_leaves_out_only_its_listener(ca: trustme.CA) -> None:
    good = certificate(ca, "good.test")
    other = certificate(ca, "bad.test")
    mismatched = ir.Certificate(chain_pem=other.chain_pem, key_pem=good.key_pem, source="ns/bad")
    garbage = ir.Certificate(chain_pem=b"not a pem", key_pem=b"nope", source="ns/garbage")
    built = tls.build_server_tls(
        port_of(
            listener("bad", "bad.test", mismatched),
            listener("garbage", "garbage.test", garbage),
            listener("good", None, good),
        )
    )
    assert [ln.name for ln in built.listeners] == ["good"]
    assert len(built.problems) == 4  # two failed certificates, two listeners without one
    assert all("PRIVATE KEY" not in problem for problem in built.problems)
    with trio.fail_after(10):
        async with serving(built) as server:
            reply = await afetch(server.port, "good.test", client_ctx(ca))
    assert reply.body["listener"] == "good"


async def test_port_without_usable_listener_refuses_quietly(ca: trustme.CA) -> None:
    built = tls.build_server_tls(port_of(listener("pass", None, mode="Passthrough")))
    with trio.fail_after(10):
        async with serving(built) as server:
            with pytest.raises((ConnectionError, ssl.SSLError)):
                await afetch(server.port, "x.test", client_ctx(ca))
            await server.any_refused.wait()
    assert server.refused == 1


async def test_reload_with_same_certificates_resumes_sessions(
    ca: trustme.CA, three_listeners: ir.Port
) -> None:
    """A rebuild from an equal Port reuses the contexts, so clients resume their sessions."""
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(three_listeners)) as server:
            ctx = client_ctx(ca)
            first = await afetch(server.port, "api.example.com", ctx)
            reloaded = msgspec.msgpack.decode(msgspec.msgpack.encode(three_listeners), type=ir.Port)
            server.tls = tls.build_server_tls(reloaded)
            second = await afetch(server.port, "api.example.com", ctx, session=first.session)
    assert not first.reused
    assert second.reused


async def test_tls12_clients_are_served_and_older_ones_refused(
    ca: trustme.CA, three_listeners: ir.Port
) -> None:
    tls12 = client_ctx(ca)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    tls11 = client_ctx(ca)
    tls11.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this client does offer TLS 1.1
    with pytest.warns(DeprecationWarning, match="TLSv1_1"):
        tls11.minimum_version = tls11.maximum_version = ssl.TLSVersion.TLSv1_1
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(three_listeners)) as server:
            reply = await afetch(server.port, "api.example.com", tls12)
            with pytest.raises(ssl.SSLError):
                await afetch(server.port, "api.example.com", tls11)
            await server.any_refused.wait()  # it was the server that said no
    assert (reply.body["listener"], reply.body["version"]) == ("exact", "TLSv1.2")
