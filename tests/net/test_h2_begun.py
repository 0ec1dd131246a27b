"""HTTP/2 requests begun by the connection's own task: the upstream requests of one read
are written at once, answers already here are sent without a worker, the others wait on
workers; a slow answer never holds up the rest, and a reset still ends its exchange."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import h2.events as ev
import trio
import trio.testing
from h2.errors import ErrorCodes

from edgegw import ir
from edgegw.echo import serve_echo
from edgegw.net.context import HTTPConnectionContext
from tests.net.test_h2_server import REQUEST, Client, ended, port_of
from tests.net.test_h2_server import start as start  # the fixture

CEILING = 10
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def read_head(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return b""
        data += chunk
    return data


def rule(port: int, path: str) -> ir.HTTPRouteRule:
    backend = ir.Backend(name=path, endpoints=(ir.Endpoint(address="127.0.0.1", port=port),))
    return ir.HTTPRouteRule(index=0, matches=(ir.HTTPMatch(path=path),), backends=(backend,))


def body_of(client: Client, stream_id: int) -> bytes:
    return b"".join(e.data for e in client.of(ev.DataReceived) if e.stream_id == stream_id)


async def test_a_slow_answer_does_not_hold_up_the_others_begun_in_the_same_read(
    start: Callable[..., tuple[Client, HTTPConnectionContext]], nursery: trio.Nursery
) -> None:
    release = trio.Event()
    connections: list[int] = []

    async def fast(stream: trio.SocketStream) -> None:
        connections.append(1)
        while await read_head(stream):
            await stream.send_all(OK)

    async def slow(stream: trio.SocketStream) -> None:
        while await read_head(stream):
            await release.wait()
            await stream.send_all(OK)

    fast_port = (await nursery.start(trio.serve_tcp, fast, 0))[0].socket.getsockname()[1]
    slow_port = (await nursery.start(trio.serve_tcp, slow, 0))[0].socket.getsockname()[1]
    port = ir.Port(
        address="127.0.0.1",
        port=8080,
        listeners=(
            ir.Listener(
                gateway_namespace="default",
                gateway_name="gw",
                name="http",
                protocol="HTTP",
                port=8080,
                http_routes=(
                    ir.HTTPRoute(
                        namespace="default",
                        name="r",
                        rules=(rule(fast_port, "/fast"), rule(slow_port, "/slow")),
                    ),
                ),
            ),
        ),
    )
    client, _ = start(port)
    with trio.fail_after(CEILING):
        # pooled connections to both backends first: then a read's requests begin at once
        for stream_id, path in ((1, "/fast"), (3, "/fast")):
            client.conn.send_headers(stream_id, [*REQUEST, (":path", path)], end_stream=True)
        await client.flush()
        await client.read_until(lambda: ended(client, 1) and ended(client, 3))
        release.set()
        head, _ = await client.get(5, "/slow")
        assert head[":status"] == "200"
        release = trio.Event()
        for stream_id, path in ((7, "/slow"), (9, "/fast"), (11, "/fast"), (13, "/fast")):
            client.conn.send_headers(stream_id, [*REQUEST, (":path", path)], end_stream=True)
        await client.flush()  # one read for all four
        await client.read_until(lambda: all(ended(client, i) for i in (9, 11, 13)))
        assert not ended(client, 7)  # still waiting on its backend
        release.set()
        await client.read_until(functools.partial(ended, client, 7))
    assert all(body_of(client, i) == b"ok" for i in (1, 3, 5, 7, 9, 11, 13))
    assert len(connections) <= 3  # kept alive and reused, not one per request


async def test_a_reset_in_the_read_that_began_its_request_ends_that_exchange(
    start: Callable[..., tuple[Client, HTTPConnectionContext]], nursery: trio.Nursery
) -> None:
    answered, dropped = [0], trio.Event()

    async def answer_later(stream: trio.SocketStream) -> None:
        while await read_head(stream):
            await trio.testing.wait_all_tasks_blocked()  # the gateway is waiting for it
            answered[0] += 1
            try:
                await stream.send_all(OK)
            except trio.BrokenResourceError:
                break
        dropped.set()

    port = (await nursery.start(trio.serve_tcp, answer_later, 0))[0].socket.getsockname()[1]
    client, _ = start(port_of(rule(port, "/later")))
    with trio.fail_after(CEILING):
        head, _ = await client.get(1, "/later")  # a pooled connection now
        assert head[":status"] == "200"
        client.conn.send_headers(3, [*REQUEST, (":path", "/later")], end_stream=True)
        client.conn.reset_stream(3, ErrorCodes.CANCEL)
        await client.flush()  # HEADERS and RST_STREAM in one read
        await dropped.wait()  # the exchange was cancelled: its upstream connection closed
        head, body = await client.get(5, "/later")  # the connection serves on
    assert head[":status"] == "200"
    assert body == b"ok"
    assert not body_of(client, 3)


async def test_requests_begun_in_the_reader_are_balanced_over_the_endpoints(
    start: Callable[..., tuple[Client, HTTPConnectionContext]], nursery: trio.Nursery
) -> None:
    ports = []
    for pod in ("a", "b"):
        listeners = await nursery.start(serve_echo, "127.0.0.1", 0, pod, "ns")
        ports.append(listeners[0].socket.getsockname()[1])
    backend = ir.Backend(
        name="b", endpoints=tuple(ir.Endpoint(address="127.0.0.1", port=p) for p in ports)
    )
    client, _ = start(port_of(ir.HTTPRouteRule(index=0, backends=(backend,))))
    pods = []
    with trio.fail_after(CEILING):
        for stream_id in range(1, 17, 2):  # one at a time: least-request ties, round robin
            head, body = await client.get(stream_id, "/which")
            assert head[":status"] == "200"
            pods.append(json.loads(body)["pod"])
    assert pods.count("a") == pods.count("b") == 4
