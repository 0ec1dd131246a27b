"""A request body that arrived with its head goes upstream in the head's write, and is
kept: a pooled connection found dead is replaced as for a request without a body."""

from __future__ import annotations

import functools

import h2.events as h2ev
import msgspec
import trio
import trio.testing

from edgegw import ir
from edgegw.net.context import HTTPConnectionContext
from edgegw.net.h2server import serve_h2_connection
from edgegw.net.http import serve_http_connection
from edgegw.net.upstream import UpstreamPool
from edgegw.routing import compile_port
from tests.net.test_h1_at_hand import CEILING, OK, context, read_head, socket_pair, start_backend
from tests.net.test_h2_server import REQUEST, Client, ended, port_of

BODY = b"0123456789" * 50


async def read_answer(stream: trio.SocketStream) -> bytes:
    """A 200 with the backend's "ok" (anything else fails at once, not at the ceiling)."""
    answer = await read_head(stream)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    while not answer.endswith(b"ok"):
        answer += await stream.receive_some(65536)
    return answer


async def test_a_post_on_a_pooled_connection_the_backend_closed_is_resent(
    nursery: trio.Nursery,
) -> None:
    bodies: list[bytes] = []

    async def one_answer(stream: trio.SocketStream) -> None:
        request = await read_head(stream)
        head, _, body = request.partition(b"\r\n\r\n")
        assert b"content-length: 500" in head.lower()
        while len(body) < len(BODY):
            body += await stream.receive_some(65536)
        bodies.append(body)
        await stream.send_all(OK)
        await stream.aclose()  # the pooled connection is closed when the next request comes

    port = await start_backend(nursery, one_answer)
    client, server = await socket_pair()
    nursery.start_soon(serve_http_connection, server, context(port, UpstreamPool()))
    post = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\n\r\n" + BODY
    with trio.fail_after(CEILING):
        for _ in range(3):
            await client.send_all(post)
            answer = await read_answer(client)
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert b"connection: close" not in answer.lower()
            await trio.testing.wait_all_tasks_blocked()
    assert bodies == [BODY] * 3


async def test_a_body_that_comes_after_its_head_is_still_streamed(nursery: trio.Nursery) -> None:
    got_head, bodies = trio.Event(), []

    async def echo_length(stream: trio.SocketStream) -> None:
        request = await read_head(stream)
        got_head.set()
        body = request.partition(b"\r\n\r\n")[2]
        while len(body) < len(BODY):
            body += await stream.receive_some(65536)
        bodies.append(body)
        await stream.send_all(OK)

    port = await start_backend(nursery, echo_length)
    client, server = await socket_pair()
    nursery.start_soon(serve_http_connection, server, context(port, UpstreamPool()))
    with trio.fail_after(CEILING):
        await client.send_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\n\r\n")
        await client.send_all(BODY[:100])
        await got_head.wait()  # the head went up before the rest of the body was there
        await client.send_all(BODY[100:])
        assert (await read_answer(client)).startswith(b"HTTP/1.1 200 ")
    assert bodies == [BODY]


async def test_an_answer_before_a_long_body_was_read_reaches_the_client(
    nursery: trio.Nursery,
) -> None:
    """A body too long to leave with its head: the upstream answers without reading it,
    and the answer still comes back while the client is mid-body."""
    done = trio.Event()

    async def answers_at_once(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(OK)
        await done.wait()

    port = await start_backend(nursery, answers_at_once)
    client, server = await socket_pair()
    nursery.start_soon(serve_http_connection, server, context(port, UpstreamPool()))
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n"
    with trio.fail_after(CEILING):
        await client.send_all(head + b"x" * 100_000)
        answer = await read_answer(client)
        rest = await client.receive_some(65536)  # the gateway ends the connection: the
    done.set()  # rest of the body was not read, so no request can follow on it
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert rest == b""


async def test_http2_posts_reach_an_http1_backend_framed_and_are_resent(
    nursery: trio.Nursery,
) -> None:
    """From HTTP/2 (with and without content-length) to an HTTP/1.1 backend that closes
    each connection after one answer: each request is resent on a fresh connection."""
    requests: list[bytes] = []

    async def one_answer(stream: trio.SocketStream) -> None:
        request = await read_head(stream)
        while not (request.endswith(b"\r\n\r\nde") or request.endswith(b"0\r\n\r\n")):
            request += await stream.receive_some(65536)
        requests.append(request)
        await stream.send_all(OK)
        await stream.aclose()

    port = await start_backend(nursery, one_answer)
    backend = ir.Backend(name="b", endpoints=(ir.Endpoint(address="127.0.0.1", port=port),))
    table = compile_port(port_of(ir.HTTPRouteRule(index=0, backends=(backend,))))
    ctx = HTTPConnectionContext(port_table=lambda: table, pool=UpstreamPool())
    client_stream, server_stream = trio.testing.memory_stream_pair()
    nursery.start_soon(serve_h2_connection, server_stream, ctx)
    client = Client(client_stream)
    post = [*REQUEST[1:], (":method", "POST"), (":path", "/up")]
    with trio.fail_after(CEILING):
        for stream_id, fields, body in (
            (1, post, b"abc"),
            (3, [*post, ("content-length", "2")], b"de"),
        ):
            client.conn.send_headers(stream_id, fields)
            client.conn.send_data(stream_id, body, end_stream=True)
            await client.flush()
            await client.read_until(functools.partial(ended, client, stream_id))
            await trio.testing.wait_all_tasks_blocked()
    statuses = [dict(e.headers)[b":status"] for e in client.of(h2ev.ResponseReceived)]
    assert statuses == [b"200", b"200"]
    assert requests[0].endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert b"transfer-encoding: chunked" in requests[0].lower()
    assert requests[1].endswith(b"\r\n\r\nde")
    assert b"content-length: 2\r\n" in requests[1].lower()


async def test_a_post_retried_on_503_sends_its_body_whole_each_time(
    nursery: trio.Nursery,
) -> None:
    bodies: list[bytes] = []

    async def first_fails(stream: trio.SocketStream) -> None:
        while request := await read_head(stream):
            body = request.partition(b"\r\n\r\n")[2]
            while len(body) < len(BODY):
                body += await stream.receive_some(65536)
            bodies.append(body)
            unavailable = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
            await stream.send_all(unavailable if len(bodies) == 1 else OK)

    ports = [await start_backend(nursery, first_fails) for _ in range(2)]
    endpoints = tuple(ir.Endpoint(address="127.0.0.1", port=port) for port in ports)
    retry = ir.Retry(codes=(503,), attempts=2, backoff=0.001)
    rule = ir.HTTPRouteRule(index=0, backends=(ir.Backend(name="b", endpoints=endpoints),))
    table = compile_port(port_of(msgspec.structs.replace(rule, retry=retry)))
    ctx = HTTPConnectionContext(port_table=lambda: table, pool=UpstreamPool())
    client, server = await socket_pair()
    nursery.start_soon(serve_http_connection, server, ctx)
    post = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\n\r\n" + BODY
    with trio.fail_after(CEILING):
        await client.send_all(post)
        await read_answer(client)
    assert bodies == [BODY, BODY]
