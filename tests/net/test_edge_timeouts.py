"""Slow clients on real loopback sockets (issue "Safe at the edge", item 7): a request body
trickling at a byte at a time and a client that never reads a large response are cut off
by ``HTTPLimits`` (short values here; the defaults are 240 B/s after 5 s, and 60 s), while
the front end goes on serving others."""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial

import pytest
import trio
import trustme

from edgegw import ir
from edgegw.echo import serve_echo
from edgegw.net import tls
from edgegw.net.http import HTTPConnectionContext, HTTPLimits, serve_http_connection
from edgegw.net.upstream import UpstreamPool
from edgegw.routing import compile_port
from tests.net.test_proxy import backend, port_of
from tests.net.test_tls import certificate, listener
from tests.net.test_tls import port_of as tls_port_of
from tests.net.test_tls_stream import tls_pair

CEILING = 10
LIMITS = HTTPLimits(body_min_rate=1000, body_grace=0.3, body_timeout=2, send_timeout=0.5)


async def front_end(nursery: trio.Nursery, upstream_port: int) -> int:
    """The HTTP/1.1 front end with ``LIMITS`` on a real listener; its port."""
    table = compile_port(port_of(ir.HTTPRouteRule(index=0, backends=(backend(upstream_port),))))
    pool = UpstreamPool()

    async def handler(stream: trio.SocketStream) -> None:
        ctx = HTTPConnectionContext(port_table=lambda: table, pool=pool, limits=LIMITS)
        await serve_http_connection(stream, ctx)

    listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), handler, 0)
    return int(listeners[0].socket.getsockname()[1])


async def ends(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes (a reset counts as the end)."""
    out = b""
    try:
        while chunk := await stream.receive_some(65536):
            out += chunk
    except trio.BrokenResourceError:
        pass
    return out


async def served_meanwhile(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 ")


@pytest.fixture
async def echo_port(nursery: trio.Nursery) -> int:
    listeners = await nursery.start(serve_echo, "127.0.0.1", 0, "echo-pod", "ns")
    return int(listeners[0].socket.getsockname()[1])


async def test_a_body_trickling_below_the_minimum_rate_is_cut_off(
    nursery: trio.Nursery, echo_port: int
) -> None:
    port = await front_end(nursery, echo_port)
    with trio.fail_after(CEILING):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        start = trio.current_time()

        async def trickle() -> None:  # the attack itself: a byte every 50 ms, 20 B/s
            try:
                for _ in range(1000):
                    await stream.send_all(b"x")
                    await trio.sleep(0.05)
            except trio.BrokenResourceError:
                pass

        async with trio.open_nursery() as inner:
            inner.start_soon(trickle)
            await served_meanwhile(port)
            answer = await ends(stream)
            took = trio.current_time() - start
            inner.cancel_scope.cancel()
        await stream.aclose()
    assert not answer.startswith(b"HTTP/1.1 200 ")
    assert 0.3 <= took < 1.5, took  # the grace, then the rate's shortfall
    print(f"1 byte per 50 ms: closed after {took:.2f} s")


async def test_a_body_at_the_minimum_rate_gets_through(
    nursery: trio.Nursery, echo_port: int
) -> None:
    port = await front_end(nursery, echo_port)
    with trio.fail_after(CEILING):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(5):  # 200 bytes every 20 ms: 10,000 B/s, each worth 0.2 s of credit
            await stream.send_all(b"x" * 200)
            await trio.sleep(0.02)
        assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
        await stream.aclose()


class BigBackend:
    """Answers every request with ``size`` bytes; ``broken`` is set when its peer hangs up."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.broken = trio.Event()
        self.sent = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.size
        try:
            await stream.send_all(head)
            chunk = b"x" * 65536
            while self.sent < self.size:
                await stream.send_all(chunk)
                self.sent += len(chunk)
        except trio.BrokenResourceError:
            self.broken.set()


async def test_a_client_that_never_reads_is_cut_off_by_send_timeout(
    nursery: trio.Nursery, echo_port: int
) -> None:
    big = BigBackend(256 << 20)
    upstream: Callable[[trio.SocketStream], object] = big.handle
    listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), upstream, 0)
    port = await front_end(nursery, int(listeners[0].socket.getsockname()[1]))
    with trio.fail_after(CEILING):
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", port))
        stream = trio.SocketStream(sock)
        await stream.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        start = trio.current_time()
        await big.broken.wait()  # the gateway gave up, and let go of the upstream too
        took = trio.current_time() - start
        await served_meanwhile(port)
        received = len(await ends(stream))
        await stream.aclose()
    assert received < big.sent < big.size
    assert took < 3, took
    print(f"never reading: closed after {took:.2f} s, {big.sent >> 10} KiB read from upstream")


async def test_an_https_client_that_never_reads_is_cut_off_by_send_timeout(
    nursery: trio.Nursery,
) -> None:
    """The same over TLS inline, where the answer's records wait in the TLS outbox."""
    big = BigBackend(256 << 20)
    upstream: Callable[[trio.SocketStream], object] = big.handle
    listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), upstream, 0)
    table = compile_port(
        port_of(
            ir.HTTPRouteRule(index=0, backends=(backend(listeners[0].socket.getsockname()[1]),))
        )
    )
    ca = trustme.CA()
    server_tls = tls.build_server_tls(
        tls_port_of(listener("l", "s.test", certificate(ca, "s.test")))
    )

    def sockets() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        a, b = trio.socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return trio.SocketStream(a), trio.SocketStream(b)

    with trio.fail_after(CEILING):
        client, server = await tls_pair(server_tls, ca, sockets)
        ctx = HTTPConnectionContext(port_table=lambda: table, pool=UpstreamPool(), limits=LIMITS)
        nursery.start_soon(serve_http_connection, server, ctx)
        await client.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        start = trio.current_time()
        await big.broken.wait()
        took = trio.current_time() - start
        await trio.aclose_forcefully(client)
    assert big.sent < big.size
    assert took < 3, took
