"""TLS passthrough over real loopback sockets: a real TLS server behind, picked by SNI."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable

import pytest
import trio
import trustme

from edgegw import ir
from edgegw.net import tcp
from edgegw.routing import l4

Handler = Callable[[trio.SocketStream], Awaitable[None]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("abc.example.com", "*.example.com").configure_cert(ctx)

    def remember_sni(obj: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        obj.sni_seen = name  # type: ignore[attr-defined]

    ctx.sni_callback = remember_sni
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def start_server(nursery: trio.Nursery, handler: Handler) -> int:
    serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
    listeners = await nursery.start(serve, handler, 0)
    return int(listeners[0].socket.getsockname()[1])


async def start_tls_backend(nursery: trio.Nursery, ctx: ssl.SSLContext, name: bytes) -> int:
    """A TLS server that answers with its name and the SNI it was asked for."""

    async def handler(raw: trio.SocketStream) -> None:
        stream = trio.SSLStream(raw, ctx, server_side=True)
        try:
            request = await stream.receive_some(100)
            await stream.do_handshake()
            sni = getattr(stream._ssl_object, "sni_seen", None)  # set by remember_sni
            await stream.send_all(name + b" sni=" + str(sni).encode() + b" got=" + request)
            await stream.aclose()
        except trio.BrokenResourceError:
            pass

    return await start_server(nursery, handler)


def passthrough_port(routes: dict[tuple[str, ...], int], hostname: str | None = None) -> ir.Port:
    l4_routes = tuple(
        ir.L4Route(
            namespace="default",
            name=f"r{port}",
            kind="TLSRoute",
            hostnames=hosts,
            backends=(
                ir.Backend(
                    name=f"b{port}", endpoints=(ir.Endpoint(address="127.0.0.1", port=port),)
                ),
            ),
        )
        for hosts, port in routes.items()
    )
    listener = ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name="tls",
        protocol="TLS",
        port=0,
        hostname=hostname,
        tls=ir.ListenerTLS(mode="Passthrough"),
        l4_routes=l4_routes,
    )
    return ir.Port(address="127.0.0.1", port=0, listeners=(listener,))


async def start_gateway(nursery: trio.Nursery, port: ir.Port) -> tuple[int, tcp.TCPContext]:
    table = l4.compile_l4(port)
    ctx = tcp.TCPContext(table=lambda: table)

    async def handler(stream: trio.SocketStream) -> None:
        await tcp.serve_tls_passthrough(stream, ctx)

    return await start_server(nursery, handler), ctx


async def tls_request(
    port: int, client_ctx: ssl.SSLContext, server_name: str, request: bytes = b"hi"
) -> bytes:
    raw = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(raw, client_ctx, server_hostname=server_name)
    await stream.send_all(request)
    data = b""
    while chunk := await stream.receive_some(1000):
        data += chunk
    return data


async def test_sni_picks_exact_then_wildcard_backend(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            exact = await start_tls_backend(nursery, server_ctx, b"exact")
            wild = await start_tls_backend(nursery, server_ctx, b"wild")
            port = passthrough_port({("abc.example.com",): exact, ("*.example.com",): wild})
            gateway, ctx = await start_gateway(nursery, port)
            answer = await tls_request(gateway, client_ctx, "abc.example.com")
            assert answer == b"exact sni=abc.example.com got=hi"
            answer = await tls_request(gateway, client_ctx, "other.example.com")
            assert answer == b"wild sni=other.example.com got=hi"
            assert ctx.stats.spliced == 2
            nursery.cancel_scope.cancel()


async def test_unknown_sni_is_closed_without_an_alert(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    hello_obj = client_ctx.wrap_bio(incoming, outgoing, server_hostname="non.matching.com")
    with pytest.raises(ssl.SSLWantReadError):
        hello_obj.do_handshake()
    hello = outgoing.read()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            backend = await start_tls_backend(nursery, server_ctx, b"exact")
            gateway, ctx = await start_gateway(
                nursery, passthrough_port({("abc.example.com",): backend})
            )
            raw = await trio.open_tcp_stream("127.0.0.1", gateway)
            await raw.send_all(hello)
            assert await raw.receive_some(100) == b""  # EOF: not a 0x15 alert record
            assert ctx.stats.rejected == 1
            with pytest.raises(trio.BrokenResourceError):
                await tls_request(gateway, client_ctx, "non.matching.com")
            nursery.cancel_scope.cancel()


async def test_no_sni_reaches_only_a_catch_all_route(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    client_ctx_no_check = ssl.create_default_context()
    client_ctx_no_check.check_hostname = False
    client_ctx_no_check.verify_mode = ssl.CERT_NONE
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            backend = await start_tls_backend(nursery, server_ctx, b"any")
            named, _ = await start_gateway(
                nursery, passthrough_port({("abc.example.com",): backend})
            )
            catch_all, _ = await start_gateway(nursery, passthrough_port({(): backend}))
            with pytest.raises(trio.BrokenResourceError):
                await tls_request(named, client_ctx_no_check, None)  # type: ignore[arg-type]
            answer = await tls_request(catch_all, client_ctx_no_check, None)  # type: ignore[arg-type]
            assert answer == b"any sni=None got=hi"
            nursery.cancel_scope.cancel()


async def test_client_hello_sent_byte_by_byte(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """Every byte of the hello in its own TCP segment; the handshake must still complete."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx.wrap_bio(incoming, outgoing, server_hostname="abc.example.com")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            backend = await start_tls_backend(nursery, server_ctx, b"exact")
            gateway, ctx = await start_gateway(
                nursery, passthrough_port({("abc.example.com",): backend})
            )
            raw = await trio.open_tcp_stream("127.0.0.1", gateway)
            with pytest.raises(ssl.SSLWantReadError):
                obj.do_handshake()
            hello = outgoing.read()
            for i in range(len(hello)):
                await raw.send_all(hello[i : i + 1])
                await trio.sleep(0.0005)
            while True:
                incoming.write(await raw.receive_some(65536))
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await raw.send_all(outgoing.read())
            obj.write(b"split")
            await raw.send_all(outgoing.read())
            answer = b""
            while True:
                try:
                    chunk = obj.read(1000)
                    answer += chunk
                    if chunk:
                        continue
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLZeroReturnError:
                    break
                data = await raw.receive_some(65536)
                if not data:
                    break
                incoming.write(data)
            assert answer == b"exact sni=abc.example.com got=split"
            assert ctx.stats.rejected == 0
            nursery.cancel_scope.cancel()


async def test_not_tls_is_closed(server_ctx: ssl.SSLContext) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            backend = await start_tls_backend(nursery, server_ctx, b"any")
            gateway, ctx = await start_gateway(nursery, passthrough_port({(): backend}))
            raw = await trio.open_tcp_stream("127.0.0.1", gateway)
            await raw.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await raw.receive_some(100) == b""
            assert (ctx.stats.rejected, ctx.stats.connections) == (1, 0)
            nursery.cancel_scope.cancel()
