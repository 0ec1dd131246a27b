"""The proxy with no socket at all: the client on a memory stream, the dialler swapped for one
that hands out memory streams to an in-process backend.

What a user would check, without the kernel in the way: a request reaches the
backend as the rule rewrote it and its answer comes back with the rule's
response fields; keep-alive reuses the one upstream connection; a WebSocket
upgrade is tunnelled byte for byte, and one on a redirect rule is redirected
without dialling anything.
"""

from __future__ import annotations

import json

import h11
import trio
import trio.testing

from edgegw import ir
from edgegw.net.dial import Dialer
from edgegw.net.http import HTTPConnectionContext, serve_http_connection
from edgegw.net.upstream import UpstreamPool
from edgegw.routing import compile_port

CEILING = 10


class MemoryDialer(Dialer):
    """Every ``open_stream`` is a memory stream whose other end ``MemoryBackend`` serves."""

    def __init__(self, nursery: trio.Nursery) -> None:
        super().__init__()
        self.nursery = nursery
        self.dialled: list[ir.Endpoint] = []

    async def open_stream(self, endpoint: ir.Endpoint) -> trio.abc.Stream:
        self.dialled.append(endpoint)
        ours, theirs = trio.testing.memory_stream_pair()
        self.nursery.start_soon(_serve_backend, theirs)
        return ours


async def _serve_backend(stream: trio.abc.Stream) -> None:
    """HTTP/1.1 answering with what it saw as JSON; an Upgrade becomes a byte echo."""
    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data:
                return
            conn.receive_data(bytes(data))
        elif isinstance(event, h11.Request):
            fields = {k.decode(): v.decode() for k, v in event.headers}
            if fields.get("upgrade") == "websocket" and event.target != b"/refused":
                return await _echo_tunnel(stream, fields)
            body = json.dumps({"path": event.target.decode(), "headers": fields}).encode()
            headers = [("content-length", str(len(body))), ("x-from", "memory")]
            out = conn.send(h11.Response(status_code=200, headers=headers)) or b""
            await stream.send_all(out + (conn.send(h11.Data(data=body)) or b""))
        elif isinstance(event, h11.EndOfMessage):
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            conn.start_next_cycle()
        else:
            return


async def _echo_tunnel(stream: trio.abc.Stream, fields: dict[str, str]) -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    await stream.send_all(head + b"X-Key: " + fields["sec-websocket-key"].encode() + b"\r\n\r\n")
    while data := await stream.receive_some(65536):
        await stream.send_all(data)


def _port(*filters: ir.HTTPFilter) -> ir.Port:
    endpoint = ir.Endpoint(address="192.0.2.10", port=80)  # never dialled for real
    rule = ir.HTTPRouteRule(
        index=0,
        filters=filters,
        backends=(ir.Backend(name="default/mem:80", endpoints=(endpoint,)),),
    )
    route = ir.HTTPRoute(namespace="default", name="r", rules=(rule,))
    listener = ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name="http",
        protocol="HTTP",
        port=8080,
        http_routes=(route,),
    )
    return ir.Port(address="127.0.0.1", port=8080, listeners=(listener,))


async def _connect(nursery: trio.Nursery, port: ir.Port, dialer: MemoryDialer) -> trio.abc.Stream:
    table = compile_port(port)
    pool = UpstreamPool(dialer=dialer)
    ctx = HTTPConnectionContext(port_table=lambda: table, pool=pool, client=("192.0.2.7", 1))
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(serve_http_connection, server, ctx)
    return client


async def _read_head(stream: trio.abc.Stream) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


async def test_requests_reach_the_backend_through_the_swapped_dialler(
    nursery: trio.Nursery,
) -> None:
    modifier = ir.HeaderModifier(set=(("x-rule", "yes"),))
    response_modifier = ir.HeaderModifier(add=(("x-resp", "added"),))
    port = _port(
        ir.RequestHeaderModifierFilter(modifier=modifier),
        ir.ResponseHeaderModifierFilter(modifier=response_modifier),
    )
    dialer = MemoryDialer(nursery)
    with trio.fail_after(CEILING):
        client = await _connect(nursery, port, dialer)
        conn = h11.Connection(h11.CLIENT)
        seen = []
        for path in ("/one", "/two"):
            request = h11.Request(method="GET", target=path, headers=[("host", "a.example")])
            await client.send_all(
                (conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b"")
            )
            head: h11.Response | None = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await client.receive_some(65536)))
                elif isinstance(event, h11.Response):
                    head = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            assert head is not None
            assert (b"x-resp", b"added") in list(head.headers)
            assert (b"x-from", b"memory") in list(head.headers)
            seen.append(json.loads(body))
            conn.start_next_cycle()
    assert [s["path"] for s in seen] == ["/one", "/two"]
    assert seen[0]["headers"]["x-rule"] == "yes"
    assert seen[0]["headers"]["x-forwarded-for"] == "192.0.2.7"
    assert len(dialer.dialled) == 1  # the second request reused the pooled connection


async def test_websocket_upgrade_is_tunnelled_through_memory(nursery: trio.Nursery) -> None:
    dialer = MemoryDialer(nursery)
    with trio.fail_after(CEILING):
        client = await _connect(nursery, _port(), dialer)
        await client.send_all(
            b"GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: a2V5\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head, rest = await _read_head(client)
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"x-key: a2V5" in head  # the client's key reached the backend
        await client.send_all(b"\x81\x02hi")
        echoed = rest
        while len(echoed) < 4:
            echoed += await client.receive_some(65536)
    assert echoed == b"\x81\x02hi"


async def test_websocket_upgrade_on_a_redirect_rule_is_redirected(nursery: trio.Nursery) -> None:
    redirect = ir.RequestRedirectFilter(scheme="https", status_code=301)
    dialer = MemoryDialer(nursery)
    with trio.fail_after(CEILING):
        client = await _connect(nursery, _port(redirect), dialer)
        await client.send_all(
            b"GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: a2V5\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head, _ = await _read_head(client)
    assert head.startswith(b"HTTP/1.1 301 ")
    assert b"location: https://a.example/ws" in head.lower()
    assert dialer.dialled == []


async def test_a_refused_websocket_handshake_reaches_the_client_whole(
    nursery: trio.Nursery,
) -> None:
    response_modifier = ir.HeaderModifier(add=(("x-resp", "added"),))
    port = _port(ir.ResponseHeaderModifierFilter(modifier=response_modifier))
    with trio.fail_after(CEILING):
        client = await _connect(nursery, port, MemoryDialer(nursery))
        await client.send_all(
            b"GET /refused HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: a2V5\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head, rest = await _read_head(client)
        while b'"path"' not in rest or not rest.endswith(b"}"):
            rest += await client.receive_some(65536)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")  # the backend's answer, not a 101
    assert b"x-resp: added" in head
    assert b"connection: close" in head
    assert json.loads(rest)["path"] == "/refused"
