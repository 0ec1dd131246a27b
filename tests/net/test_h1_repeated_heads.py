"""A keep-alive client repeating its request head: every request still decided on its own.

The parser hands a repeated head back as the same event, the front end frames it once,
``decide`` reuses the upstream head it made of it, and the serialised request and response
heads are kept for the next one (``proto/http1.py``, ``net/http.py``,
``decide.upstream_head``, ``UpstreamConnection.request_head``). What a user checks: each
request reaches the backend as if it were the first, each response the client, a changed
head is seen at once, and per-request work (a generated request ID, header filters) still
happens for every one of them.
"""

from __future__ import annotations

from functools import partial

import msgspec
import trio
import trio.testing

from edgegw import ir
from edgegw.net.connection import UpstreamConnection
from edgegw.net.context import RequestRecord
from edgegw.net.http import serve_http_connection
from edgegw.net.upstream import UpstreamPool
from edgegw.proto.http1 import serialize_request_head
from tests.net import test_proxy
from tests.net.test_h1_at_hand import OK, context, read_head, socket_pair, start_backend
from tests.net.test_proxy import CEILING, Client, Response, StartGateway, backend, get, port_of

echo_port = test_proxy.echo_port  # the fixtures
gateway = test_proxy.gateway


def _listener(echo: int, **listener_kw: object) -> ir.Port:
    rule = ir.HTTPRouteRule(
        index=0,
        backends=(backend(echo),),
        filters=(
            ir.RequestHeaderModifierFilter(modifier=ir.HeaderModifier(add=(("x-added", "1"),))),
            ir.ResponseHeaderModifierFilter(modifier=ir.HeaderModifier(set=(("x-resp", "2"),))),
        ),
    )
    port = port_of(rule)
    listener = msgspec.structs.replace(port.listeners[0], **listener_kw)
    return msgspec.structs.replace(port, listeners=(listener,))


async def _send(client: Client, raw: bytes) -> Response:
    response = await client.request(raw)
    assert response is not None
    return response


async def test_a_repeated_head_reaches_the_backend_whole_each_time(
    gateway: StartGateway, echo_port: int
) -> None:
    same = get("/a?b=1", extra=b"X-Forwarded-For: 10.0.0.1\r\nAccept: */*\r\n")
    other = get("/a?b=1", extra=b"X-Forwarded-For: 10.0.0.2\r\nAccept: */*\r\n")
    with trio.fail_after(CEILING):
        client = gateway(_listener(echo_port))
        seen = [await _send(client, raw) for raw in (same, same, other, same, same)]
    for i, response in enumerate(seen):
        assert response.status == 200
        assert response.headers["x-resp"] == "2"  # the response modifier, every time
        echoed = response.json()
        assert echoed["path"] == "/a?b=1"
        assert echoed["headers"]["X-Added"] == ["1"]  # the request modifier, every time
        client_ip = "10.0.0.2" if i == 2 else "10.0.0.1"
        assert echoed["headers"]["X-Forwarded-For"] == [f"{client_ip}, 192.0.2.7"]
        assert echoed["headers"]["Accept"] == ["*/*"]
    assert seen[0].json() == seen[1].json() == seen[3].json()


async def test_a_generated_request_id_differs_for_each_repeated_head(
    gateway: StartGateway, echo_port: int
) -> None:
    policy = ir.ClientPolicy(name="default/p", headers=ir.ClientHeaders(request_id="Generate"))
    with trio.fail_after(CEILING):
        client = gateway(_listener(echo_port, client_policy=policy))
        seen = [await _send(client, get("/id")) for _ in range(4)]
    ids = [response.json()["headers"]["X-Request-Id"][0] for response in seen]
    assert len(set(ids)) == 4


async def test_a_changed_path_or_host_after_repeats_is_routed_anew(
    gateway: StartGateway, echo_port: int
) -> None:
    rules = (
        ir.HTTPRouteRule(
            index=0,
            matches=(ir.HTTPMatch(path_type="PathPrefix", path="/in"),),
            backends=(backend(echo_port),),
        ),
    )
    with trio.fail_after(CEILING):
        client = gateway(port_of(*rules, hostname="a.example"))
        statuses = []
        for raw in (
            get("/in/x", host="a.example"),
            get("/in/x", host="a.example"),
            get("/out", host="a.example"),
            get("/in/x", host="b.example"),
            get("/in/x", host="a.example"),
        ):
            statuses.append((await _send(client, raw)).status)
    assert statuses == [200, 200, 404, 404, 200]


def test_an_upstream_connection_serialises_a_changed_head_anew() -> None:
    _client, stream = trio.testing.memory_stream_pair()
    conn = UpstreamConnection(stream, ("tcp", "192.0.2.1", 80, None), "192.0.2.1:80")
    fields = [(b"host", b"a"), (b"x", b"1")]
    first = conn.request_head((b"GET", b"/", fields))
    assert first == serialize_request_head(b"GET", b"/", fields)
    assert conn.request_head((b"GET", b"/", list(fields))) == first
    fields.append((b"y", b"2"))  # the same list, changed since: what is sent is what it holds
    assert conn.request_head((b"GET", b"/", fields)) == first[:-2] + b"y: 2\r\n\r\n"
    assert conn.request_head((b"HEAD", b"/", fields)).startswith(b"HEAD / HTTP/1.1\r\n")


async def _alternating_backend(stream: trio.SocketStream) -> None:
    """Answers request n with ``X-N: n // 2``: each head twice, then another."""
    buf, n = b"", 0
    while data := await stream.receive_some(65536):
        buf += data
        while b"\r\n\r\n" in buf:
            _, _, buf = buf.partition(b"\r\n\r\n")
            head = b"HTTP/1.1 200 OK\r\nX-N: %d\r\nContent-Length: 2\r\n\r\nok" % (n // 2)
            await stream.send_all(head)
            n += 1


async def test_each_response_head_reaches_the_client_as_the_backend_sent_it(
    gateway: StartGateway, nursery: trio.Nursery
) -> None:
    serve = partial(trio.serve_tcp, host="127.0.0.1")
    listeners = await nursery.start(serve, _alternating_backend, 0)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(CEILING):
        client = gateway(port_of(ir.HTTPRouteRule(index=0, backends=(backend(port),))))
        seen = [await _send(client, get("/")) for _ in range(6)]
    assert [response.headers["x-n"] for response in seen] == ["0", "0", "1", "1", "2", "2"]
    assert all(response.body == b"ok" for response in seen)


class _Records:
    """An observer that keeps what the access log would get."""

    def __init__(self) -> None:
        self.done: list[RequestRecord] = []

    def request_done(self, record: RequestRecord) -> None:
        self.done.append(record)

    def upstream_error(self, backend: str, upstream: str, kind: str) -> None:
        pass

    def policy_decision(self, kind: str, policy: str, outcome: str) -> None:
        pass


async def test_a_client_gone_before_its_answer_leaves_nothing_in_flight(
    nursery: trio.Nursery,
) -> None:
    async def quick(stream: trio.SocketStream) -> None:
        while await read_head(stream):
            await stream.send_all(OK)

    port = await start_backend(nursery, quick)
    pool, records = UpstreamPool(), _Records()
    client, server = await socket_pair()
    ctx = context(port, pool, observer=records)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as inner:
            inner.start_soon(serve_http_connection, server, ctx)
            await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await read_head(client)).startswith(b"HTTP/1.1 200 ")
            await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            await client.aclose()  # gone: the answer has nowhere to go
    endpoint = ir.Endpoint(address="127.0.0.1", port=port)
    assert pool.in_flight(endpoint, ir.Backend(name="b", endpoints=(endpoint,))) == 0
    assert [record.status for record in records.done] == [200, 200]
