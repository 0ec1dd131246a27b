"""TCPRoute relay over real loopback sockets: half-close, big transfers, splice, limits, PROXY."""

from __future__ import annotations

import collections
import functools
import hashlib
import random
from collections.abc import Awaitable, Callable

import pytest
import trio

from edgegw import ir
from edgegw.net import tcp
from edgegw.proto import proxyproto
from edgegw.routing import l4

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def start_server(nursery: trio.Nursery, handler: Handler) -> int:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, host="127.0.0.1"), handler, 0)
    return int(listeners[0].socket.getsockname()[1])


def tcp_port(*backends: ir.Backend, accept_proxy: bool = False) -> ir.Port:
    route = ir.L4Route(namespace="default", name="r", kind="TCPRoute", backends=backends)
    listener = ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name="tcp",
        protocol="TCP",
        port=0,
        l4_routes=(route,),
        proxy_protocol_accept=accept_proxy,
    )
    return ir.Port(address="127.0.0.1", port=0, listeners=(listener,))


def to(port: int, name: str = "b", weight: int = 1, proxy: int = 0) -> ir.Backend:
    return ir.Backend(
        name=name,
        weight=weight,
        endpoints=(ir.Endpoint(address="127.0.0.1", port=port),),
        proxy_protocol=proxy,  # type: ignore[arg-type]
    )


async def start_relay(nursery: trio.Nursery, ctx: tcp.TCPContext) -> int:
    async def handler(stream: trio.SocketStream) -> None:
        await tcp.serve_tcp_connection(stream, ctx)

    return await start_server(nursery, handler)


def context(port: ir.Port, **kw: object) -> tcp.TCPContext:
    table = l4.compile_l4(port)
    return tcp.TCPContext(table=lambda: table, **kw)  # type: ignore[arg-type]


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def echo(stream: trio.SocketStream) -> None:
    while data := await stream.receive_some(65536):
        await stream.send_all(data)
    await stream.send_eof()


async def count_then_reply(stream: trio.SocketStream) -> None:
    """Reads to EOF, then answers how much it got: only works if half-close is relayed."""
    received = len(await read_all(stream))
    await stream.send_all(f"got {received} bytes".encode())


async def test_half_close_client_still_gets_the_reply() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            backend = await start_server(nursery, count_then_reply)
            ctx = context(tcp_port(to(backend)))
            relay = await start_relay(nursery, ctx)
            client = await trio.open_tcp_stream("127.0.0.1", relay)
            await client.send_all(b"x" * 100_000)
            await client.send_eof()
            assert await read_all(client) == b"got 100000 bytes"
            await client.aclose()
            assert ctx.stats.spliced == 1
            assert ctx.stats.bytes_up == 100_000
            nursery.cancel_scope.cancel()


async def test_server_speaks_first_and_closes() -> None:
    async def banner(stream: trio.SocketStream) -> None:
        await stream.send_all(b"220 ready\r\n")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            ctx = context(tcp_port(to(await start_server(nursery, banner))))
            client = await trio.open_tcp_stream("127.0.0.1", await start_relay(nursery, ctx))
            assert await read_all(client) == b"220 ready\r\n"
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "copy"])
async def test_large_transfer_is_byte_for_byte(splice: bool) -> None:
    block = random.Random(1).randbytes(1 << 20)
    total = 48
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            ctx = context(tcp_port(to(await start_server(nursery, echo))), splice=splice)
            client = await trio.open_tcp_stream("127.0.0.1", await start_relay(nursery, ctx))

            async def send() -> None:
                for i in range(total):
                    await client.send_all(bytes([i]) + block[1:])
                await client.send_eof()

            nursery.start_soon(send)
            received = hashlib.sha256()
            size = 0
            while chunk := await client.receive_some(1 << 20):
                received.update(chunk)
                size += len(chunk)
            expected = hashlib.sha256(b"".join(bytes([i]) + block[1:] for i in range(total)))
            assert size == total << 20
            assert received.hexdigest() == expected.hexdigest()
            assert (ctx.stats.spliced, ctx.stats.copied) == ((1, 0) if splice else (0, 1))
            assert ctx.stats.bytes_up == ctx.stats.bytes_down == total << 20
            nursery.cancel_scope.cancel()


async def test_reset_by_backend_ends_the_client_connection() -> None:
    async def reset(stream: trio.SocketStream) -> None:
        await stream.receive_some(10)
        await trio.aclose_forcefully(stream)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            ctx = context(tcp_port(to(await start_server(nursery, reset))))
            client = await trio.open_tcp_stream("127.0.0.1", await start_relay(nursery, ctx))
            await client.send_all(b"hello" * 1000)
            try:
                leftover = await read_all(client)
            except trio.BrokenResourceError:
                leftover = b""  # reset passed on: fine too
            assert leftover == b""
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "backend",
    [
        ir.Backend(name="invalid", invalid="Service default/nope not found"),
        ir.Backend(name="empty"),
        ir.Backend(name="refused", endpoints=(ir.Endpoint(address="127.0.0.1", port=1),)),
    ],
)
async def test_unusable_backend_closes_the_client(backend: ir.Backend) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            ctx = context(tcp_port(backend))
            client = await trio.open_tcp_stream("127.0.0.1", await start_relay(nursery, ctx))
            assert await read_all(client) == b""
            assert ctx.stats.connections == 0
            nursery.cancel_scope.cancel()


async def test_weighted_backends() -> None:
    def named(name: bytes) -> Handler:
        async def handler(stream: trio.SocketStream) -> None:
            await stream.send_all(name)

        return handler

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a = await start_server(nursery, named(b"a"))
            b = await start_server(nursery, named(b"b"))
            ctx = context(tcp_port(to(a, "a", 1), to(b, "b", 3)), rand=random.Random(5).random)
            relay = await start_relay(nursery, ctx)
            seen: collections.Counter[bytes] = collections.Counter()
            for _ in range(200):
                client = await trio.open_tcp_stream("127.0.0.1", relay)
                seen[await read_all(client)] += 1
                await client.aclose()
            assert set(seen) == {b"a", b"b"}
            assert 0.65 < seen[b"b"] / 200 < 0.85
            nursery.cancel_scope.cancel()


async def test_idle_connection_is_closed_busy_one_is_not() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            ctx = context(tcp_port(to(await start_server(nursery, echo))), idle_timeout=0.3)
            relay = await start_relay(nursery, ctx)
            busy = await trio.open_tcp_stream("127.0.0.1", relay)
            idle = await trio.open_tcp_stream("127.0.0.1", relay)
            start = trio.current_time()
            for _ in range(10):  # 0.6 s of traffic, 0.06 s apart
                await busy.send_all(b"ping")
                assert await busy.receive_some(10) == b"ping"
                await trio.sleep(0.06)
            assert await read_all(idle) == b""
            assert 0.25 < trio.current_time() - start < 2.0
            await busy.send_all(b"still here")
            assert await busy.receive_some(20) == b"still here"
            nursery.cancel_scope.cancel()


async def test_connection_limit_per_listener() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            ctx = context(
                tcp_port(to(await start_server(nursery, echo))),
                limits=tcp.ConnectionLimits(limit=1),
            )
            relay = await start_relay(nursery, ctx)
            first = await trio.open_tcp_stream("127.0.0.1", relay)
            await first.send_all(b"1")
            assert await first.receive_some(10) == b"1"
            second = await trio.open_tcp_stream("127.0.0.1", relay)
            assert await read_all(second) == b""
            await first.aclose()
            while ctx.limits.active.get("default/gw/tcp"):
                await trio.sleep(0.01)
            third = await trio.open_tcp_stream("127.0.0.1", relay)
            await third.send_all(b"3")
            assert await third.receive_some(10) == b"3"
            nursery.cancel_scope.cancel()


async def test_drain_deadline_ends_live_connections() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            ctx = context(tcp_port(to(await start_server(nursery, echo))))
            client = await trio.open_tcp_stream("127.0.0.1", await start_relay(nursery, ctx))
            await client.send_all(b"a")
            assert await client.receive_some(10) == b"a"
            assert ctx.drain.live == 1
            ctx.drain.start(0.3)
            await client.send_all(b"b")  # still served during the grace period
            assert await client.receive_some(10) == b"b"
            start = trio.current_time()
            assert await read_all(client) == b""
            assert trio.current_time() - start < 1.0
            nursery.cancel_scope.cancel()


async def test_reload_swaps_the_table_for_new_connections_only() -> None:
    async def named(stream: trio.SocketStream) -> None:
        while data := await stream.receive_some(100):
            await stream.send_all(b"old:" + data)

    async def new_named(stream: trio.SocketStream) -> None:
        await stream.send_all(b"new")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            old = l4.compile_l4(tcp_port(to(await start_server(nursery, named))))
            current = [old]
            ctx = tcp.TCPContext(table=lambda: current[0])
            relay = await start_relay(nursery, ctx)
            kept = await trio.open_tcp_stream("127.0.0.1", relay)
            await kept.send_all(b"1")
            assert await kept.receive_some(10) == b"old:1"
            current[0] = l4.compile_l4(tcp_port(to(await start_server(nursery, new_named))))
            fresh = await trio.open_tcp_stream("127.0.0.1", relay)
            assert await read_all(fresh) == b"new"
            await kept.send_all(b"2")
            assert await kept.receive_some(10) == b"old:2"
            nursery.cancel_scope.cancel()


async def proxy_header_backend(stream: trio.SocketStream) -> None:
    """Answers with the PROXY header it was sent, parsed, then echoes the rest."""
    data = b""
    while not isinstance(parsed := proxyproto.parse(data), proxyproto.ProxyHeader):
        data += await stream.receive_some(200)
    await stream.send_all(repr((parsed.version, parsed.source, parsed.destination)).encode())
    await stream.send_all(b"|" + data[parsed.size :] + await read_all(stream))


@pytest.mark.parametrize("version", [1, 2])
async def test_backend_sees_the_client_in_a_proxy_header(version: int) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            backend = await start_server(nursery, proxy_header_backend)
            ctx = context(tcp_port(to(backend, proxy=version)))
            relay = await start_relay(nursery, ctx)
            client = await trio.open_tcp_stream("127.0.0.1", relay)
            await client.send_all(b"payload")
            await client.send_eof()
            client_port = client.socket.getsockname()[1]
            expected = (version, ("127.0.0.1", client_port), ("127.0.0.1", relay))
            assert await read_all(client) == repr(expected).encode() + b"|payload"
            nursery.cancel_scope.cancel()


async def test_accepted_proxy_header_is_passed_on() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            backend = await start_server(nursery, proxy_header_backend)
            ctx = context(tcp_port(to(backend, proxy=1), accept_proxy=True))
            relay = await start_relay(nursery, ctx)
            client = await trio.open_tcp_stream("127.0.0.1", relay)
            header = proxyproto.encode_v2(("203.0.113.7", 4242), ("198.51.100.1", 443))
            await client.send_all(header + b"payload")
            await client.send_eof()
            expected = (1, ("203.0.113.7", 4242), ("198.51.100.1", 443))
            assert await read_all(client) == repr(expected).encode() + b"|payload"

            without = await trio.open_tcp_stream("127.0.0.1", relay)
            await without.send_all(b"GET / HTTP/1.1\r\n\r\n")
            assert await read_all(without) == b""
            assert ctx.stats.rejected == 1
            nursery.cancel_scope.cancel()
