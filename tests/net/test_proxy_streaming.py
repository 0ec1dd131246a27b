"""Large bodies stream through in both directions without being held whole."""

from __future__ import annotations

import tracemalloc

import trio
import trio.testing

from edgegw import ir
from edgegw.net.http import HTTPConnectionContext, serve_http_connection
from edgegw.net.upstream import UpstreamPool
from edgegw.routing import compile_port

SIZE = 50 * 1024 * 1024
PIECE = b"x" * 65536


async def sink_upstream(stream: trio.SocketStream) -> None:
    """Reads a Content-Length upload, answers with a streamed response of the same size."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    got = len(rest)
    while got < length:
        got += len(await stream.receive_some(65536))
    await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(got // len(PIECE)):
        await stream.send_all(b"10000\r\n" + PIECE + b"\r\n")
    await stream.send_all(b"0\r\n\r\n")


async def test_50mb_up_and_down_with_bounded_memory(nursery: trio.Nursery) -> None:
    port = (await nursery.start(trio.serve_tcp, sink_upstream, 0))[0].socket.getsockname()[1]
    backend = ir.Backend(name="b", endpoints=(ir.Endpoint(address="127.0.0.1", port=port),))
    listener = ir.Listener(
        gateway_namespace="d", gateway_name="g", name="l", protocol="HTTP", port=80,
        http_routes=(
            ir.HTTPRoute(
                namespace="d", name="r", rules=(ir.HTTPRouteRule(index=0, backends=(backend,)),)
            ),
        ),
    )  # fmt: skip
    table = compile_port(ir.Port(address="127.0.0.1", port=80, listeners=(listener,)))
    client, server = trio.testing.lockstep_stream_pair()
    ctx = HTTPConnectionContext(port_table=lambda: table, pool=UpstreamPool())
    nursery.start_soon(serve_http_connection, server, ctx)
    received = 0

    async def upload() -> None:
        await client.send_all(b"PUT /u HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % SIZE)
        for _ in range(SIZE // len(PIECE)):
            await client.send_all(PIECE)

    tracemalloc.start()
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as inner:
                inner.start_soon(upload)
                tail = b""
                while not tail.endswith(b"0\r\n\r\n"):
                    chunk = await client.receive_some(65536)
                    assert chunk
                    received += len(chunk)
                    tail = (tail + chunk)[-16:]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received > SIZE  # the body plus chunk framing
    assert peak < 8 * 1024 * 1024, peak
