"""TLSStream as a trio Stream: trio's generic stream checks, duplex traffic, stalled peers.

Memory streams and virtual time here: the TLS is real (OpenSSL on both ends),
the transport is not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import trio
import trio.testing
import trustme
from OpenSSL import SSL

from edgegw import ir
from edgegw.net import tls
from edgegw.net.fastio import TICK
from edgegw.net.http import HTTPConnectionContext, HTTPLimits, serve_http_connection
from edgegw.net.upstream import UpstreamPool
from edgegw.routing import compile_port
from tests.net.test_tls import certificate, listener, port_of

Maker = Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> tls.ServerTLS:
    return tls.build_server_tls(port_of(listener("l", "s.test", certificate(ca, "s.test"))))


def client_end(transport: trio.abc.Stream, ca: trustme.CA) -> tls.TLSStream:
    """The client side, also a TLSStream: pyOpenSSL verifying the server like any client."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    with ca.cert_pem.tempfile() as path:
        ctx.load_verify_locations(path)
    ctx.set_verify(SSL.VERIFY_PEER)
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    conn.set_tlsext_host_name(b"s.test")
    return tls.TLSStream(transport, conn)


async def tls_pair(
    server_tls: tls.ServerTLS, ca: trustme.CA, make_transport: Maker
) -> tuple[tls.TLSStream, tls.TLSStream]:
    client_transport, server_transport = make_transport()
    client = client_end(client_transport, ca)
    sessions: list[tls.TLSSession | None] = []

    async def accept() -> None:
        sessions.append(await tls.accept_tls(server_transport, server_tls))

    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept)
            await client.do_handshake()
            # the server's session tickets: a lockstep transport holds the server until read
            outer.start_soon(client.receive_some)
        outer.cancel_scope.cancel()
    session = sessions[0]
    assert session is not None
    return client, session.stream


async def test_trio_generic_stream_checks(
    server_tls: tls.ServerTLS, ca: trustme.CA, autojump_clock: trio.testing.MockClock
) -> None:
    async def maker() -> tuple[tls.TLSStream, tls.TLSStream]:
        return await tls_pair(server_tls, ca, trio.testing.memory_stream_pair)

    async def clogged() -> tuple[tls.TLSStream, tls.TLSStream]:
        return await tls_pair(server_tls, ca, trio.testing.lockstep_stream_pair)

    with trio.fail_after(600):  # virtual seconds
        await trio.testing.check_two_way_stream(maker, clogged)


async def test_duplex_large_transfers_over_a_tight_transport(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    """Both ends send 4 MiB at once while receiving: no deadlock, no reordering."""
    payload = bytes(range(256)) * 16384
    with trio.fail_after(30):
        client, server = await tls_pair(server_tls, ca, trio.testing.lockstep_stream_pair)
        received: dict[str, bytes] = {}

        async def pump(name: str, stream: tls.TLSStream) -> None:
            got = bytearray()
            while len(got) < len(payload):
                got += await stream.receive_some()
            received[name] = bytes(got)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            nursery.start_soon(server.send_all, payload[::-1])
            nursery.start_soon(pump, "client", client)
            nursery.start_soon(pump, "server", server)
    assert received == {"client": payload[::-1], "server": payload}


@pytest.mark.parametrize("prefix", [b"", b"\x16\x03\x01\x02\x00\x01"])
async def test_stalled_handshake_is_closed_after_the_timeout(
    server_tls: tls.ServerTLS, prefix: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    client, server_side = trio.testing.memory_stream_pair()
    await client.send_all(prefix)
    with trio.fail_after(60):
        start = trio.current_time()
        assert await tls.accept_tls(server_side, server_tls, handshake_timeout=7) is None
        assert trio.current_time() - start == pytest.approx(7)
        assert await client.receive_some() == b""  # closed, and nothing was said


async def test_peeked_client_hello_is_replayed(server_tls: tls.ServerTLS, ca: trustme.CA) -> None:
    """Bytes the dispatcher already read (to sniff the SNI) go in through ``received``."""
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = client_end(client_transport, ca)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            peeked = await server_transport.receive_some()
            session = await tls.accept_tls(server_transport, server_tls, received=peeked)
    assert session is not None
    assert session.server_name == "s.test"
    await client.send_all(b"ping")
    assert await session.stream.receive_some() == b"ping"


async def test_handshake_alert_reaches_the_client(ca: trustme.CA) -> None:
    """A refused client certificate is answered with an alert, not a bare close."""
    client_ca = trustme.CA()
    validation = ir.FrontendValidation(ca_pem=client_ca.cert_pem.bytes())
    server_tls = tls.build_server_tls(
        port_of(listener("m", "s.test", certificate(ca, "s.test"), validation=validation))
    )
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = client_end(client_transport, ca)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)  # TLS 1.3: the client finishes first
            assert await tls.accept_tls(server_transport, server_tls) is None
        with pytest.raises(trio.BrokenResourceError) as info:
            await client.receive_some()
    assert "certificate required" in repr(info.value.__cause__)


def _socket_transports() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


def _http_context(limits: HTTPLimits) -> HTTPConnectionContext:
    table = compile_port(port_of(listener("l", "s.test")))
    return HTTPConnectionContext(port_table=lambda: table, pool=UpstreamPool(), limits=limits)


async def _read_to_close(stream: trio.abc.Stream) -> bytes:
    data = b""
    with contextlib.suppress(trio.BrokenResourceError):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def _https_front_end(
    server_tls: tls.ServerTLS, ca: trustme.CA, nursery: trio.Nursery, ctx: HTTPConnectionContext
) -> tls.TLSStream:
    """A TLS client connected over a real socket pair to the HTTP/1.1 front end."""
    client, server = await tls_pair(server_tls, ca, _socket_transports)
    nursery.start_soon(serve_http_connection, server, ctx)
    return client


async def _closed_after(client: tls.TLSStream, sent: bytes = b"") -> tuple[bytes, float]:
    """What the gateway answered to ``sent`` before closing, and how long that took."""
    start = trio.current_time()
    with trio.fail_after(60):
        if sent:
            await client.send_all(sent)
        answer = await _read_to_close(client)
    await trio.aclose_forcefully(client)
    return answer, trio.current_time() - start


async def test_https_slow_head_gets_408_at_the_header_timeout(
    server_tls: tls.ServerTLS,
    ca: trustme.CA,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = await _https_front_end(
        server_tls, ca, nursery, _http_context(HTTPLimits(header_timeout=3))
    )
    answer, took = await _closed_after(client, b"GET / HTTP/1.1\r\nHo")
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 3 <= took <= 3 + TICK + 0.01


async def test_https_idle_keep_alive_closes_at_its_timeout_and_on_drain(
    server_tls: tls.ServerTLS,
    ca: trustme.CA,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = await _https_front_end(
        server_tls, ca, nursery, _http_context(HTTPLimits(keepalive_timeout=5))
    )
    answer, took = await _closed_after(client)
    assert answer == b""
    assert 5 <= took <= 5 + TICK + 0.01

    ctx = _http_context(HTTPLimits(keepalive_timeout=60))
    client = await _https_front_end(server_tls, ca, nursery, ctx)
    await trio.testing.wait_all_tasks_blocked()
    ctx.drain.start()
    answer, took = await _closed_after(client)
    assert answer == b""
    assert took < 1
