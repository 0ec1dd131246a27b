"""The HTTP/1.1 hot path reads what is at hand without waiting; what is not yet there
(part of a head, a closed pooled connection) still takes the waiting path and its limits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from edgegw import ir
from edgegw.net import fastio
from edgegw.net.fastio import TICK
from edgegw.net.http import HTTPConnectionContext, HTTPLimits, serve_http_connection
from edgegw.net.upstream import UpstreamPool
from edgegw.routing import compile_port

CEILING = 10
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def start_backend(nursery: trio.Nursery, handler: Handler) -> int:
    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    return int(listeners[0].socket.getsockname()[1])


def context(port: int, pool: UpstreamPool, **kw: object) -> HTTPConnectionContext:
    backend = ir.Backend(name="b", endpoints=(ir.Endpoint(address="127.0.0.1", port=port),))
    route = ir.HTTPRoute(
        namespace="d", name="r", rules=(ir.HTTPRouteRule(index=0, backends=(backend,)),)
    )
    listener = ir.Listener(
        gateway_namespace="d",
        gateway_name="g",
        name="l",
        protocol="HTTP",
        port=80,
        http_routes=(route,),
    )
    table = compile_port(ir.Port(address="127.0.0.1", port=80, listeners=(listener,)))
    return HTTPConnectionContext(port_table=lambda: table, pool=pool, **kw)  # type: ignore[arg-type]


async def read_head(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


async def read_all(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_a_next_head_half_at_hand_gets_the_header_timeout_not_keep_alive(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    got_request, release = trio.Event(), trio.Event()

    async def held(stream: trio.SocketStream) -> None:
        await read_head(stream)
        got_request.set()
        await release.wait()
        await stream.send_all(OK_CLOSE)  # nothing left in the pool when the test ends
        await read_all(stream)

    port = await start_backend(nursery, held)
    client, server = await socket_pair()
    limits = HTTPLimits(header_timeout=2, keepalive_timeout=60)
    nursery.start_soon(serve_http_connection, server, context(port, UpstreamPool(), limits=limits))
    with trio.fail_after(CEILING * 10):
        await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await got_request.wait()
        # The next head's start is in the socket before the answer goes out: the loop
        # finds it with its non-blocking read and must then wait for the rest.
        await client.send_all(b"GET / HTTP/1.1\r\nHo")
        await trio.testing.wait_all_tasks_blocked()
        release.set()
        answer = await read_head(client)
        start = trio.current_time()
        rest = await read_all(client)
        await client.aclose()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert (answer + rest).count(b"HTTP/1.1 408 ") == 1
    assert 2 <= trio.current_time() - start <= 2 + TICK + 0.01


async def test_a_response_head_split_across_reads_is_waited_for(nursery: trio.Nursery) -> None:
    got_request, release = trio.Event(), trio.Event()

    async def split(stream: trio.SocketStream) -> None:
        while await read_head(stream):
            got_request.set()
            await stream.send_all(OK[:20])
            await release.wait()
            await stream.send_all(OK[20:])

    port = await start_backend(nursery, split)
    client, server = await socket_pair()
    nursery.start_soon(serve_http_connection, server, context(port, UpstreamPool()))
    with trio.fail_after(CEILING):
        await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await got_request.wait()
        await trio.testing.wait_all_tasks_blocked()
        release.set()
        answer = await read_head(client)
        while not answer.endswith(b"ok"):
            answer += await client.receive_some(65536)
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_a_pooled_connection_the_backend_closed_is_replaced(nursery: trio.Nursery) -> None:
    connections: list[int] = []

    async def one_answer(stream: trio.SocketStream) -> None:
        connections.append(1)
        await read_head(stream)
        await stream.send_all(OK)
        await stream.aclose()  # the pooled connection is closed when the next request comes

    port = await start_backend(nursery, one_answer)
    client, server = await socket_pair()
    pool = UpstreamPool()
    nursery.start_soon(serve_http_connection, server, context(port, pool))
    with trio.fail_after(CEILING):
        for _ in range(3):
            await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            answer = await read_head(client)
            while not answer.endswith(b"ok"):
                answer += await client.receive_some(65536)
            assert answer.startswith(b"HTTP/1.1 200 ")
            await trio.testing.wait_all_tasks_blocked()
    assert len(connections) == 3


async def test_reuse_takes_only_an_idle_connection_and_counts_it(nursery: trio.Nursery) -> None:
    async def answer(stream: trio.SocketStream) -> None:
        await read_all(stream)

    port = await start_backend(nursery, answer)
    endpoint = ir.Endpoint(address="127.0.0.1", port=port)
    backend = ir.Backend(name="b", endpoints=(endpoint,))
    pool = UpstreamPool()
    with trio.fail_after(CEILING):
        assert pool.reuse(endpoint, backend) is None
        assert pool.in_flight(endpoint, backend) == 0
        conn = await pool.acquire(endpoint, backend)
        pool.release(conn, reusable=True)
        assert pool.in_flight(endpoint, backend) == 0
        assert pool.reuse(endpoint, backend) is conn
        assert pool.in_flight(endpoint, backend) == 1
        assert pool.reuse(endpoint, backend) is None
        pool.release(conn, reusable=False)


async def test_a_read_that_found_nothing_is_followed_by_a_wait_not_another_read(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Client and backend both answer only once the gateway waits: each at-hand read
    finds nothing, and the next syscall on that socket must be the wait."""
    empty: set[int] = set()  # descriptors whose last read found nothing, no wait since
    misses, repeats = [0], [0]
    read, wait_readable = fastio._read, fastio._wait_readable

    def counting_read(fd: int, size: int) -> bytes:
        try:
            data = read(fd, size)
        except BlockingIOError:
            misses[0] += 1
            repeats[0] += fd in empty
            empty.add(fd)
            raise
        empty.discard(fd)
        return data

    async def counting_wait(fd: int) -> None:
        empty.discard(fd)
        await wait_readable(fd)

    monkeypatch.setattr(fastio, "_read", counting_read)
    monkeypatch.setattr(fastio, "_wait_readable", counting_wait)

    async def slow(stream: trio.SocketStream) -> None:
        while await read_head(stream):
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(OK)

    port = await start_backend(nursery, slow)
    client, server = await socket_pair()
    nursery.start_soon(serve_http_connection, server, context(port, UpstreamPool()))
    with trio.fail_after(CEILING):
        for _ in range(3):
            await trio.testing.wait_all_tasks_blocked()
            await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            answer = await read_head(client)
            while not answer.endswith(b"ok"):
                answer += await client.receive_some(65536)
            assert answer.startswith(b"HTTP/1.1 200 ")
    assert misses[0] >= 4  # the next request and the answer were not at hand
    assert repeats[0] == 0
