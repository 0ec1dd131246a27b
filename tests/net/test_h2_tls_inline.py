"""HTTP/2 over TLS inline (``TLSIO``) on a real socket pair: answers larger than the kernel's
buffers leave whole and in order when the writer's records have to wait for room."""

from __future__ import annotations

import socket
from functools import partial

import h2.events as ev
import trio
import trustme

from edgegw import ir
from edgegw.net import tls
from edgegw.net.context import HTTPConnectionContext
from edgegw.net.h2server import serve_h2_connection
from edgegw.net.upstream import UpstreamPool
from edgegw.routing import compile_port
from tests.net.test_h2_server import REQUEST, Client, port_of
from tests.net.test_proxy import backend
from tests.net.test_tls_stream import ca, server_tls, tls_pair

__all__ = ["ca", "server_tls"]  # the fixtures, shared with test_tls_stream

BODY = bytes(range(251)) * 2000  # ~490 KiB: many records, far more than the buffers hold


async def _backend(stream: trio.SocketStream) -> None:
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(65536)
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(BODY) + BODY)
    await stream.aclose()


def _small_buffers() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    a, b = trio.socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return trio.SocketStream(a), trio.SocketStream(b)


async def test_a_large_answer_over_tls_inline_arrives_whole_and_in_order(
    server_tls: tls.ServerTLS, ca: trustme.CA, nursery: trio.Nursery
) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), _backend, 0)
    table = compile_port(
        port_of(
            ir.HTTPRouteRule(index=0, backends=(backend(listeners[0].socket.getsockname()[1]),))
        )
    )
    with trio.fail_after(20):
        client_stream, server_stream = await tls_pair(server_tls, ca, _small_buffers)
        ctx = HTTPConnectionContext(port_table=lambda: table, pool=UpstreamPool())
        nursery.start_soon(serve_h2_connection, server_stream, ctx)
        client = Client(client_stream)
        client.conn.send_headers(1, [*REQUEST, (":path", "/big")], end_stream=True)
        await client.flush()
        body = bytearray()
        while not client.of(ev.StreamEnded) and not client.closed:
            data = await client_stream.receive_some(65536)
            for event in client.conn.receive_data(data):
                client.events.append(event)
                if isinstance(event, ev.DataReceived):
                    body += event.data
                    client.conn.acknowledge_received_data(event.flow_controlled_length, 1)
            await client.flush()
    assert [e.stream_id for e in client.of(ev.StreamEnded)] == [1]
    assert body == BODY
