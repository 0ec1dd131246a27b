"""The fast socket path: direct I/O, watchdog timeouts, cancel; and the HTTP front end on it."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from edgegw import ir
from edgegw.net.fastio import TICK, FastSocket, StreamIO, TimedOut, open_io
from edgegw.net.http import HTTPConnectionContext, HTTPLimits, serve_http_connection
from edgegw.net.upstream import UpstreamPool
from edgegw.routing import compile_port

CEILING = 10


async def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def test_open_io_picks_the_fast_path_for_plain_sockets_only() -> None:
    a, b = await socket_pair()
    client, _server = trio.testing.memory_stream_pair()
    assert isinstance(open_io(a), FastSocket)
    assert isinstance(open_io(client), StreamIO)
    await a.aclose()
    await b.aclose()


async def test_send_and_receive_including_a_large_write() -> None:
    a, b = await socket_pair()
    fa, fb = FastSocket(a.socket), FastSocket(b.socket)
    big = b"x" * (4 * 1024 * 1024)
    received = bytearray()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fa.send_all, big)
            while len(received) < len(big):
                received += await fb.recv(wait_first=True)
        await a.aclose()
        assert await fb.recv() == b""
    assert received == big
    await b.aclose()


async def test_recv_times_out_at_its_deadline(autojump_clock: trio.abc.Clock) -> None:
    a, b = await socket_pair()
    fb = FastSocket(b.socket)
    start = trio.current_time()
    with trio.fail_after(CEILING * 10), pytest.raises(TimedOut):
        await fb.recv(start + 3)
    assert 3 <= trio.current_time() - start <= 3 + TICK + 0.01
    await a.aclose()
    await b.aclose()


async def test_cancel_wakes_a_waiter_and_later_waits_fail_at_once() -> None:
    a, b = await socket_pair()
    fb = FastSocket(b.socket)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:

            async def wait() -> None:
                with pytest.raises(TimedOut):
                    await fb.recv(math.inf, wait_first=True)

            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            fb.cancel()
        with pytest.raises(TimedOut):
            await fb.recv(math.inf)
    await a.aclose()
    await b.aclose()


async def test_stream_io_times_out_and_cancels(autojump_clock: trio.abc.Clock) -> None:
    client, server = trio.testing.memory_stream_pair()
    io = StreamIO(server)
    with trio.fail_after(CEILING * 10):
        with pytest.raises(TimedOut):
            await io.recv(trio.current_time() + 2)
        await client.send_all(b"hi")
        assert await io.recv(trio.current_time() + 2) == b"hi"
        io.cancel()
        with pytest.raises(TimedOut):
            await io.recv(trio.current_time() + 2)


def context(**kw: object) -> HTTPConnectionContext:
    listener = ir.Listener(
        gateway_namespace="d", gateway_name="g", name="l", protocol="HTTP", port=80
    )
    table = compile_port(ir.Port(address="127.0.0.1", port=80, listeners=(listener,)))
    return HTTPConnectionContext(port_table=lambda: table, pool=UpstreamPool(), **kw)  # type: ignore[arg-type]


async def read_all(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_fast_path_answers_keeps_alive_then_times_out_idle(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    client, server = await socket_pair()
    nursery.start_soon(
        serve_http_connection, server, context(limits=HTTPLimits(keepalive_timeout=5))
    )
    with trio.fail_after(CEILING * 10):
        await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 2)
        first = await client.receive_some(65536)
        while first.count(b"HTTP/1.1 404") < 2:
            first += await client.receive_some(65536)
        start = trio.current_time()
        assert await read_all(client) == b""  # closed silently after keepalive_timeout
    assert 5 <= trio.current_time() - start <= 5 + TICK + 0.01


async def test_fast_path_slow_head_gets_408(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    client, server = await socket_pair()
    nursery.start_soon(serve_http_connection, server, context(limits=HTTPLimits(header_timeout=2)))
    with trio.fail_after(CEILING * 10):
        await client.send_all(b"GET / HTTP/1.1\r\nHo")
        assert (await read_all(client)).startswith(b"HTTP/1.1 408 ")


async def test_fast_path_idle_connection_closes_on_drain(nursery: trio.Nursery) -> None:
    client, server = await socket_pair()
    ctx = context()
    nursery.start_soon(serve_http_connection, server, ctx)
    with trio.fail_after(CEILING):
        await trio.testing.wait_all_tasks_blocked()
        ctx.drain.start()
        assert await read_all(client) == b""


class _H2CRecorder:
    """Stands in for the HTTP/2 server: records what it was handed."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def __call__(
        self, stream: trio.abc.Stream, ctx: HTTPConnectionContext, *, received: bytes
    ) -> None:
        del ctx
        self.received.append(received)
        await stream.send_all(b"h2 here")


async def test_a_split_h2c_preface_goes_to_http2_with_every_byte_read(
    nursery: trio.Nursery,
) -> None:
    client, server = await socket_pair()
    h2c = _H2CRecorder()
    nursery.start_soon(lambda: serve_http_connection(server, context(), h2c=h2c))
    with trio.fail_after(CEILING):
        await client.send_all(b"PRI * HTTP/2.0\r\n")
        await trio.testing.wait_all_tasks_blocked()
        await client.send_all(b"\r\nSM\r\n\r\n\x00\x00")  # the rest, and a frame's start
        assert await read_all(client) == b"h2 here"
    assert h2c.received == [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"]
    await client.aclose()


async def test_http1_next_to_h2c_is_served_as_http1(nursery: trio.Nursery) -> None:
    client, server = await socket_pair()
    h2c = _H2CRecorder()
    nursery.start_soon(lambda: serve_http_connection(server, context(), h2c=h2c))
    with trio.fail_after(CEILING):
        await client.send_all(b"P")  # could still be the preface
        await trio.testing.wait_all_tasks_blocked()
        await client.send_all(b"OST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        assert (await client.receive_some(65536)).startswith(b"HTTP/1.1 404 ")
    assert h2c.received == []
    await client.aclose()


async def test_a_stalled_h2c_preface_is_closed_after_the_header_timeout(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    client, server = await socket_pair()
    limits = HTTPLimits(header_timeout=2, keepalive_timeout=60)
    h2c = _H2CRecorder()
    nursery.start_soon(lambda: serve_http_connection(server, context(limits=limits), h2c=h2c))
    with trio.fail_after(CEILING * 10):
        await client.send_all(b"PRI * HTTP/2")
        start = trio.current_time()
        assert await read_all(client) == b""
    assert 2 <= trio.current_time() - start <= 2 + TICK + 0.01
    assert h2c.received == []
    await client.aclose()
