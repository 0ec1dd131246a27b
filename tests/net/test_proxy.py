"""The HTTP/1.1 front end and proxy, end to end: a client on a memory stream,
``serve_http_connection`` in the middle, real upstreams on loopback."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest
import trio
import trio.testing

from edgegw import ir
from edgegw.echo import serve_echo
from edgegw.net import http as http_module
from edgegw.net.http import HTTPConnectionContext, HTTPLimits, serve_http_connection
from edgegw.net.upstream import UpstreamPool
from edgegw.proto.http1 import _Parser
from edgegw.routing import compile_port

CEILING = 10


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


def backend(port: int, name: str = "default/echo:80", **kw: object) -> ir.Backend:
    return ir.Backend(name=name, endpoints=(ir.Endpoint(address="127.0.0.1", port=port),), **kw)  # type: ignore[arg-type]


def port_of(
    *rules: ir.HTTPRouteRule, hostname: str | None = None, extra: tuple[ir.Listener, ...] = ()
) -> ir.Port:
    route = ir.HTTPRoute(namespace="default", name="r", rules=rules)
    listener = ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name="http",
        protocol="HTTP",
        port=8080,
        hostname=hostname,
        http_routes=(route,),
    )
    return ir.Port(address="127.0.0.1", port=8080, listeners=(listener, *extra))


@pytest.fixture
async def echo_port(nursery: trio.Nursery) -> int:
    listeners = await nursery.start(serve_echo, "127.0.0.1", 0, "echo-pod", "ns")
    return int(listeners[0].socket.getsockname()[1])


class Client:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def read_response(self) -> Response | None:
        head: h11.Response | None = None
        body = b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(bytes(await self.stream.receive_some(65536)))
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return Response(
                    head.status_code,
                    {k.decode(): v.decode() for k, v in head.headers},
                    body,
                    list(head.headers),
                )

    async def request(self, raw: bytes) -> Response | None:
        await self.stream.send_all(raw)
        self.conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
        self.conn.send(h11.EndOfMessage())
        return await self.read_response()


StartGateway = Callable[..., Client]
"""Serves one connection of a port on a memory stream; keywords go to the connection context."""


@pytest.fixture
async def gateway(nursery: trio.Nursery) -> StartGateway:
    pool = UpstreamPool()

    def start(port: ir.Port, **ctx_kw: object) -> Client:
        table = compile_port(port)
        client, server = trio.testing.memory_stream_pair()
        ctx = HTTPConnectionContext(
            port_table=lambda: table,
            pool=pool,
            client=("192.0.2.7", 5555),
            background=nursery,
            **ctx_kw,  # type: ignore[arg-type]
        )
        nursery.start_soon(serve_http_connection, server, ctx)
        return Client(client)

    return start


def get(path: str = "/", host: str = "example.com", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(), extra)


async def test_keep_alive_forwarding_headers_and_hop_by_hop(
    gateway: StartGateway, echo_port: int
) -> None:
    with trio.fail_after(CEILING):
        client = gateway(port_of(ir.HTTPRouteRule(index=0, backends=(backend(echo_port),))))
        extra = (
            b"X-Forwarded-For: 10.0.0.1\r\nConnection: X-Secret\r\nX-Secret: s\r\nTE: trailers\r\n"
        )
        first = await client.request(get("/a?b=1", extra=extra))
        second = await client.request(get("/again"))
    assert first is not None
    assert second is not None
    seen = first.json()
    assert seen["path"] == "/a?b=1"
    assert seen["host"] == "example.com"
    assert seen["headers"]["X-Forwarded-For"] == ["10.0.0.1, 192.0.2.7"]
    assert seen["headers"]["X-Forwarded-Proto"] == ["http"]
    assert seen["headers"]["X-Forwarded-Host"] == ["example.com"]
    assert "X-Secret" not in seen["headers"]
    assert "Te" not in seen["headers"]
    assert second.json()["path"] == "/again"


async def test_pipelined_requests_are_answered_in_order(
    gateway: StartGateway, echo_port: int
) -> None:
    with trio.fail_after(CEILING):
        client = gateway(port_of(ir.HTTPRouteRule(index=0, backends=(backend(echo_port),))))
        await client.stream.send_all(get("/1") + get("/2") + get("/3"))
        paths = []
        for _ in range(3):
            client.conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            client.conn.send(h11.EndOfMessage())
            response = await client.read_response()
            assert response is not None
            paths.append(response.json()["path"])
    assert paths == ["/1", "/2", "/3"]


@pytest.mark.parametrize(
    ("rule", "status"),
    [
        (ir.HTTPRouteRule(index=0, invalid="unsupported filter"), 500),
        (ir.HTTPRouteRule(index=0, backends=(ir.Backend(name="x", invalid="not found"),)), 500),
        (
            ir.HTTPRouteRule(
                index=0,
                backends=(
                    ir.Backend(
                        name="x", weight=0, endpoints=(ir.Endpoint(address="127.0.0.1", port=1),)
                    ),
                ),
            ),
            500,
        ),
        (ir.HTTPRouteRule(index=0, backends=(ir.Backend(name="x"),)), 503),
        (ir.HTTPRouteRule(index=0, backends=(backend(1),)), 503),
        (ir.HTTPRouteRule(index=0, matches=(ir.HTTPMatch(path_type="Exact", path="/only"),)), 404),
    ],
    ids=["invalid-rule", "invalid-backend", "zero-weights", "no-endpoints", "refused", "no-route"],
)
async def test_errors_have_the_specified_status(
    gateway: StartGateway, rule: ir.HTTPRouteRule, status: int
) -> None:
    with trio.fail_after(CEILING):
        client = gateway(port_of(rule))
        response = await client.request(get("/x"))
    assert response is not None
    assert response.status == status


async def slow_upstream(nursery: trio.Nursery, delay: float) -> int:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await trio.sleep(delay)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    return int(listeners[0].socket.getsockname()[1])


async def test_backend_timeout_is_504(gateway: StartGateway, nursery: trio.Nursery) -> None:
    with trio.fail_after(CEILING):
        port = await slow_upstream(nursery, 5)
        rule = ir.HTTPRouteRule(index=0, backends=(backend(port),), backend_request_timeout=0.2)
        response = await gateway(port_of(rule)).request(get())
    assert response is not None
    assert response.status == 504


async def test_retry_on_listed_status_reaches_a_healthy_endpoint(
    gateway: StartGateway, nursery: trio.Nursery, echo_port: int
) -> None:
    async def failing(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n")

    bad = (await nursery.start(trio.serve_tcp, failing, 0))[0].socket.getsockname()[1]
    endpoints = (
        ir.Endpoint(address="127.0.0.1", port=bad),
        ir.Endpoint(address="127.0.0.1", port=echo_port),
    )
    rule = ir.HTTPRouteRule(
        index=0,
        backends=(ir.Backend(name="b", endpoints=endpoints),),
        retry=ir.Retry(codes=(503,), attempts=2, backoff=0.001),
    )
    with trio.fail_after(CEILING):
        client = gateway(port_of(rule))
        statuses = [(await client.request(get())).status for _ in range(4)]  # type: ignore[union-attr]
    assert statuses == [200, 200, 200, 200]


async def test_redirect_is_answered_without_upstream(gateway: StartGateway) -> None:
    redirect = ir.RequestRedirectFilter(scheme="https", status_code=301)
    rule = ir.HTTPRouteRule(index=0, filters=(redirect,), backends=(backend(1),))
    with trio.fail_after(CEILING):
        response = await gateway(port_of(rule)).request(get("/p?q=1"))
    assert response is not None
    assert response.status == 301
    assert response.headers["location"] == "https://example.com/p?q=1"


async def test_rewrite_and_header_modifiers(gateway: StartGateway, echo_port: int) -> None:
    rule = ir.HTTPRouteRule(
        index=0,
        matches=(ir.HTTPMatch(path="/api"),),
        filters=(
            ir.URLRewriteFilter(
                hostname="internal", path=ir.PathModifier(type="ReplacePrefixMatch", value="/v2")
            ),
            ir.RequestHeaderModifierFilter(
                modifier=ir.HeaderModifier(set=(("x-team", "a"),), remove=("x-drop",))
            ),
            ir.ResponseHeaderModifierFilter(
                modifier=ir.HeaderModifier(add=(("x-served-by", "edgegw"),))
            ),
        ),
        backends=(backend(echo_port),),
    )
    with trio.fail_after(CEILING):
        response = await gateway(port_of(rule)).request(
            get("/api/users?id=1", extra=b"X-Drop: 1\r\n")
        )
    assert response is not None
    seen = response.json()
    assert (seen["host"], seen["path"]) == ("internal", "/v2/users?id=1")
    assert seen["headers"]["X-Team"] == ["a"]
    assert "X-Drop" not in seen["headers"]
    assert response.headers["x-served-by"] == "edgegw"


async def test_cors_preflight_is_answered_here(gateway: StartGateway) -> None:
    cors = ir.CORSFilter(allow_origins=("https://app.example",), allow_methods=("GET", "PUT"))
    rule = ir.HTTPRouteRule(index=0, filters=(cors,), backends=(backend(1),))
    raw = (
        b"OPTIONS /x HTTP/1.1\r\nHost: example.com\r\nOrigin: https://app.example\r\n"
        b"Access-Control-Request-Method: PUT\r\n\r\n"
    )
    with trio.fail_after(CEILING):
        response = await gateway(port_of(rule)).request(raw)
    assert response is not None
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"


async def test_session_cookie_pins_the_endpoint(
    gateway: StartGateway, nursery: trio.Nursery
) -> None:
    ports = []
    for name in ("one", "two"):
        listeners = await nursery.start(serve_echo, "127.0.0.1", 0, name, "ns")
        ports.append(listeners[0].socket.getsockname()[1])
    endpoints = tuple(ir.Endpoint(address="127.0.0.1", port=p) for p in ports)
    rule = ir.HTTPRouteRule(
        index=0,
        backends=(ir.Backend(name="b", endpoints=endpoints),),
        session_persistence=ir.SessionPersistence(name="sticky"),
    )
    with trio.fail_after(CEILING):
        client = gateway(port_of(rule))
        first = await client.request(get())
        assert first is not None
        cookie = first.headers["set-cookie"].split(";")[0].encode()
        pods = {
            (await client.request(get(extra=b"Cookie: a=b; " + cookie + b"\r\n"))).json()["pod"]  # type: ignore[union-attr]
            for _ in range(6)
        }
    assert pods == {first.json()["pod"]}


async def test_mirror_gets_a_copy_and_the_client_gets_the_main_answer(
    gateway: StartGateway, nursery: trio.Nursery, echo_port: int
) -> None:
    seen: list[bytes] = []

    async def mirror(stream: trio.SocketStream) -> None:
        seen.append(await stream.receive_some(65536))
        await stream.send_all(b"HTTP/1.1 500 X\r\nContent-Length: 0\r\n\r\n")

    mirror_port = (await nursery.start(trio.serve_tcp, mirror, 0))[0].socket.getsockname()[1]
    flt = ir.RequestMirrorFilter(backend=backend(mirror_port, name="mirror"))
    rule = ir.HTTPRouteRule(index=0, filters=(flt,), backends=(backend(echo_port),))
    with trio.fail_after(CEILING):
        response = await gateway(port_of(rule)).request(get("/m"))
        while not seen:
            await trio.sleep(0.01)
    assert response is not None
    assert response.status == 200
    assert seen[0].startswith(b"GET /m HTTP/1.1\r\n")


async def test_chunked_upload_and_100_continue(gateway: StartGateway, echo_port: int) -> None:
    async def counter(stream: trio.SocketStream) -> None:
        parser_data = b""
        while not parser_data.endswith(b"0\r\n\r\n"):
            parser_data += await stream.receive_some(65536)
        body = parser_data.split(b"\r\n\r\n", 1)[1]
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    async with trio.open_nursery() as inner:
        port = (await inner.start(trio.serve_tcp, counter, 0))[0].socket.getsockname()[1]
        rule = ir.HTTPRouteRule(index=0, backends=(backend(port),))
        with trio.fail_after(CEILING):
            client = gateway(port_of(rule))
            await client.stream.send_all(
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            assert (await client.stream.receive_some(100)).startswith(b"HTTP/1.1 100 Continue")
            await client.stream.send_all(b"5\r\nhello\r\n0\r\n\r\n")
            client.conn.send(
                h11.Request(
                    method="POST",
                    target="/",
                    headers=[("host", "x"), ("transfer-encoding", "chunked")],
                )
            )
            client.conn.send(h11.EndOfMessage())
            response = await client.read_response()
        inner.cancel_scope.cancel()
    assert response is not None
    assert response.body == b"5\r\nhello\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: a\r\n"
            + b"".join(b"X-%d: v\r\n" % i for i in range(150))
            + b"\r\n",
            431,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    ],
    ids=["431", "cl-te-smuggling", "obs-fold"],
)
async def test_bad_requests_are_refused_and_closed(
    gateway: StartGateway, raw: bytes, status: int
) -> None:
    with trio.fail_after(CEILING):
        client = gateway(port_of(ir.HTTPRouteRule(index=0)))
        await client.stream.send_all(raw)
        data = b""
        while chunk := await client.stream.receive_some(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 %d " % status)
    assert b"connection: close" in data


async def test_slowloris_gets_408_and_close(
    gateway: StartGateway, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(CEILING * 10):
        client = gateway(port_of(ir.HTTPRouteRule(index=0)), limits=HTTPLimits(header_timeout=2))
        await client.stream.send_all(b"GET / HTTP/1.1\r\nHo")
        data = b""
        while chunk := await client.stream.receive_some(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 408 ")


async def test_host_for_another_listener_than_sni_is_421(
    gateway: StartGateway, echo_port: int
) -> None:
    other = ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name="other",
        protocol="HTTPS",
        port=8080,
        hostname="other.example",
    )
    port = port_of(
        ir.HTTPRouteRule(index=0, backends=(backend(echo_port),)),
        hostname="example.com",
        extra=(other,),
    )
    with trio.fail_after(CEILING):
        client = gateway(port, scheme="https", sni_listener="default/gw/http")
        ok = await client.request(get(host="example.com"))
        misdirected = await client.request(get(host="other.example"))
    assert ok is not None
    assert ok.status == 200
    assert ok.json()["headers"]["X-Forwarded-Proto"] == ["https"]
    assert misdirected is not None
    assert misdirected.status == 421


async def test_finished_connections_leave_no_reference_cycles(
    gateway: StartGateway, echo_port: int
) -> None:
    """A closed connection goes with reference counting: nothing of it waits for the collector.

    With cycles, each connection's parser, buffers and sockets waited for the cyclic
    collector, which then took a tenth of the CPU under ``Connection: close`` load.
    """
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        with trio.fail_after(CEILING):
            for body in (b"", b"a body takes the other upstream path"):
                client = gateway(port_of(ir.HTTPRouteRule(index=0, backends=(backend(echo_port),))))
                fields = [("host", "example.com"), ("connection", "close")]
                fields.append(("content-length", str(len(body))))
                data = client.conn.send(h11.Request(method="POST", target="/", headers=fields))
                data += client.conn.send(h11.Data(data=body)) if body else b""
                data += client.conn.send(h11.EndOfMessage())
                await client.stream.send_all(data)
                response = await client.read_response()
                assert response is not None
                assert response.status == 200
                assert await client.stream.receive_some(1) == b""  # closed by the gateway
                await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        ours = (_Parser, http_module._Connection, http_module._Body, http_module._Writer)
        assert [type(o).__name__ for o in gc.garbage if isinstance(o, ours)] == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
