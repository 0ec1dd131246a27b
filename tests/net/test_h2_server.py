"""The HTTP/2 front end on memory streams: requests, drain, and abuse that must end a connection."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from typing import TypeVar

import h2.config
import h2.connection
import h2.events as ev
import hpack
import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame

from edgegw import ir
from edgegw.echo import serve_echo
from edgegw.net.context import DrainSignal, HTTPConnectionContext
from edgegw.net.h2server import serve_h2_connection
from edgegw.net.upstream import UpstreamPool
from edgegw.proto.http2 import H2Limits
from edgegw.routing import compile_port
from tests.h2text import text_headers

CEILING = 10
E = TypeVar("E", bound=ev.Event)
REQUEST = [(":method", "GET"), (":scheme", "http"), (":authority", "example.com")]


def port_of(*rules: ir.HTTPRouteRule) -> ir.Port:
    route = ir.HTTPRoute(namespace="default", name="r", rules=rules)
    listener = ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name="http",
        protocol="HTTP",
        port=8080,
        http_routes=(route,),
    )
    return ir.Port(address="127.0.0.1", port=8080, listeners=(listener,))


NOWHERE = port_of(ir.HTTPRouteRule(index=0, matches=(ir.HTTPMatch(path="/routed"),)))


class Client:
    """An ``h2`` client on the memory stream; collects every event it reads."""

    def __init__(
        self, stream: trio.abc.Stream, settings: dict[SettingCodes, int] | None = None
    ) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration())
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.events: list[ev.Event] = []
        self.closed = False

    async def flush(self) -> None:
        await self.stream.send_all(self.conn.data_to_send())

    async def read_until(self, done: Callable[[], bool]) -> None:
        while not done() and not self.closed:
            data = await self.stream.receive_some(65536)
            if not data:
                self.closed = True
                return
            self.events += self.conn.receive_data(data)
            await self.flush()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def get(self, stream_id: int, path: str) -> tuple[dict[str, str], bytes]:
        self.conn.send_headers(stream_id, [*REQUEST, (":path", path)], end_stream=True)
        await self.flush()
        ended = lambda: any(e.stream_id == stream_id for e in self.of(ev.StreamEnded))  # noqa: E731
        await self.read_until(ended)
        head = next(e for e in self.of(ev.ResponseReceived) if e.stream_id == stream_id)
        body = b"".join(e.data for e in self.of(ev.DataReceived) if e.stream_id == stream_id)
        return text_headers(head.headers), body


async def read_frames(stream: trio.abc.Stream) -> list[Frame]:
    """Every frame until the peer closes, parsed without an h2 state machine."""
    raw = b""
    while data := await stream.receive_some(65536):
        raw += data
    frames = []
    while len(raw) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9 : 9 + length]))
        frames.append(frame)
        raw = raw[9 + length :]
    return frames


@pytest.fixture
def start(nursery: trio.Nursery) -> Callable[..., tuple[Client, HTTPConnectionContext]]:
    def start_(
        port: ir.Port = NOWHERE, limits: H2Limits | None = None, **client_kw: object
    ) -> tuple[Client, HTTPConnectionContext]:
        table = compile_port(port)
        client_stream, server_stream = trio.testing.memory_stream_pair()
        ctx = HTTPConnectionContext(
            port_table=lambda: table, pool=UpstreamPool(), client=("192.0.2.7", 5555)
        )
        nursery.start_soon(lambda: serve_h2_connection(server_stream, ctx, limits=limits))
        return Client(client_stream, **client_kw), ctx  # type: ignore[arg-type]

    return start_


async def test_settings_advertise_limits(start: Callable[..., tuple[Client, object]]) -> None:
    client, _ = start(limits=H2Limits(max_concurrent_streams=7))
    await client.flush()
    with trio.fail_after(CEILING):
        await client.read_until(lambda: bool(client.of(ev.RemoteSettingsChanged)))
    settings = client.conn.remote_settings
    assert settings.max_concurrent_streams == 7
    assert settings.enable_connect_protocol == 1


async def test_request_to_an_echo_backend(
    start: Callable[..., tuple[Client, object]], nursery: trio.Nursery
) -> None:
    listeners = await nursery.start(serve_echo, "127.0.0.1", 0, "pod", "ns")
    echo_port = listeners[0].socket.getsockname()[1]
    backend = ir.Backend(name="b", endpoints=(ir.Endpoint(address="127.0.0.1", port=echo_port),))
    client, _ = start(port_of(ir.HTTPRouteRule(index=0, backends=(backend,))))
    with trio.fail_after(CEILING):
        head, body = await client.get(1, "/hello?x=1")
        head3, _ = await client.get(3, "/again")
    assert head[":status"] == "200"
    assert b'"path":"/hello?x=1"' in body
    assert head3[":status"] == "200"


async def test_repeated_request_heads_are_each_served_as_they_were_sent(
    start: Callable[..., tuple[Client, object]], nursery: trio.Nursery
) -> None:
    listeners = await nursery.start(serve_echo, "127.0.0.1", 0, "pod", "ns")
    echo_port = listeners[0].socket.getsockname()[1]
    backend = ir.Backend(name="b", endpoints=(ir.Endpoint(address="127.0.0.1", port=echo_port),))
    client, _ = start(port_of(ir.HTTPRouteRule(index=0, backends=(backend,))))
    paths = [f"/p{i}?q={i}" for i in range(20)]  # more heads than a connection remembers
    stream_id = 1
    with trio.fail_after(CEILING):
        for path in [*paths, *paths[:3], "/p0?q=0", "/p1?q=1"]:
            head, body = await client.get(stream_id, path)
            assert head[":status"] == "200"
            assert f'"path":"{path}"'.encode() in body
            stream_id += 2


def ended(client: Client, stream_id: int) -> bool:
    return any(e.stream_id == stream_id for e in client.of(ev.StreamEnded))


async def test_the_same_head_with_and_without_a_body_is_framed_for_each(
    start: Callable[..., tuple[Client, object]], nursery: trio.Nursery
) -> None:
    listeners = await nursery.start(serve_echo, "127.0.0.1", 0, "pod", "ns")
    echo_port = listeners[0].socket.getsockname()[1]
    backend = ir.Backend(name="b", endpoints=(ir.Endpoint(address="127.0.0.1", port=echo_port),))
    client, _ = start(port_of(ir.HTTPRouteRule(index=0, backends=(backend,))))
    fields = [*REQUEST[1:], (":method", "POST"), (":path", "/same")]
    seen = []
    with trio.fail_after(CEILING):
        for stream_id, body in ((1, b""), (3, b"abc"), (5, b""), (7, b"de")):
            client.conn.send_headers(stream_id, fields, end_stream=not body)
            if body:
                client.conn.send_data(stream_id, body, end_stream=True)
            await client.flush()
            await client.read_until(functools.partial(ended, client, stream_id))
            data = b"".join(e.data for e in client.of(ev.DataReceived) if e.stream_id == stream_id)
            seen.append(json.loads(data)["headers"].get("Transfer-Encoding"))
    assert seen == [None, ["chunked"], None, ["chunked"]]


async def test_drain_of_a_busy_connection_sends_goaway_at_once_and_finishes_the_stream(
    start: Callable[..., tuple[Client, HTTPConnectionContext]], nursery: trio.Nursery
) -> None:
    listeners = await nursery.start(serve_echo, "127.0.0.1", 0, "pod", "ns")
    echo_port = listeners[0].socket.getsockname()[1]
    backend = ir.Backend(name="b", endpoints=(ir.Endpoint(address="127.0.0.1", port=echo_port),))
    client, ctx = start(port_of(ir.HTTPRouteRule(index=0, backends=(backend,))))
    fields = [*REQUEST, (":method", "POST"), (":path", "/upload")][1:]
    client.conn.send_headers(1, fields)  # the body is still to come: the stream stays open
    await client.flush()
    with trio.fail_after(CEILING):
        await client.read_until(lambda: bool(client.of(ev.RemoteSettingsChanged)))
        client.conn.ping(b"in-order")  # answered once the HEADERS before it were taken in
        await client.flush()
        await client.read_until(lambda: bool(client.of(ev.PingAckReceived)))
        ctx.drain.start()
        await client.read_until(lambda: bool(client.of(ev.ConnectionTerminated)))
        assert not client.of(ev.StreamEnded)  # GOAWAY came first, while the stream was busy
        assert client.of(ev.ConnectionTerminated)[0].last_stream_id == 1
        # h2 refuses to send after a GOAWAY, which HTTP/2 allows: finish in raw frames.
        await client.stream.send_all(DataFrame(1, b"the body", flags=["END_STREAM"]).serialize())
        frames = await read_frames(client.stream)  # until the gateway closes
    headers = [f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == 1]
    assert dict(client.conn.decoder.decode(headers[0].data, raw=True))[b":status"] == b"200"
    data = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
    assert b'"method":"POST"' in data


async def test_no_route_answers_404_on_its_stream(
    start: Callable[..., tuple[Client, object]],
) -> None:
    client, _ = start()
    with trio.fail_after(CEILING):
        head, body = await client.get(1, "/elsewhere")
    assert head[":status"] == "404"
    assert body == b"Not Found\n"


async def test_drain_sends_goaway_and_closes(
    start: Callable[..., tuple[Client, HTTPConnectionContext]], autojump_clock: object
) -> None:
    client, ctx = start()
    await client.flush()
    await client.read_until(lambda: bool(client.of(ev.RemoteSettingsChanged)))
    assert isinstance(ctx.drain, DrainSignal)
    ctx.drain.start()
    with trio.fail_after(CEILING):
        await client.read_until(lambda: False)
    goaway = client.of(ev.ConnectionTerminated)
    assert goaway
    assert goaway[0].error_code == ErrorCodes.NO_ERROR
    assert client.closed


async def test_rapid_reset_ends_the_connection(
    start: Callable[..., tuple[Client, object]], autojump_clock: object
) -> None:
    client, _ = start(limits=H2Limits(max_resets=20, reset_window=10))
    stream_id = 1
    with trio.fail_after(CEILING):
        while not client.closed and stream_id < 400:
            client.conn.send_headers(stream_id, [*REQUEST, (":path", "/x")])
            client.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            stream_id += 2
            try:
                await client.flush()
            except trio.BrokenResourceError:
                break
            if stream_id % 20 == 1:
                with trio.move_on_after(0.01):
                    await client.read_until(lambda: bool(client.of(ev.ConnectionTerminated)))
        await client.read_until(lambda: bool(client.of(ev.ConnectionTerminated)))
    goaway = client.of(ev.ConnectionTerminated)
    assert goaway
    assert goaway[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert stream_id < 200


async def test_resets_below_the_budget_are_fine(
    start: Callable[..., tuple[Client, object]], autojump_clock: object
) -> None:
    client, _ = start(limits=H2Limits(max_resets=5, reset_window=1))
    for round_ in range(4):  # 4 resets per window, 4 windows: never over budget
        for i in range(4):
            stream_id = 1 + 2 * (round_ * 4 + i)
            client.conn.send_headers(stream_id, [*REQUEST, (":path", "/x")])
            client.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        await client.flush()
        await trio.sleep(1.5)
    with trio.fail_after(CEILING):
        head, _ = await client.get(33, "/x")
    assert head[":status"] == "404"


async def test_continuation_flood_ends_the_connection(
    start: Callable[..., tuple[Client, object]], autojump_clock: object
) -> None:
    client, _ = start()
    await client.flush()
    block = hpack.Encoder().encode([*REQUEST, (":path", "/x")])
    headers = HeadersFrame(1, data=block, flags=["END_STREAM"])
    frames = [headers.serialize()]
    frames += [ContinuationFrame(1, data=b"\x40\x01a\x01b").serialize() for _ in range(200)]
    with trio.fail_after(CEILING):
        with contextlib.suppress(trio.BrokenResourceError):
            await client.stream.send_all(b"".join(frames))
        await client.read_until(lambda: False)
    assert client.closed
    assert client.of(ev.ConnectionTerminated)


async def test_hpack_bomb_ends_the_connection(
    start: Callable[..., tuple[Client, object]], autojump_clock: object
) -> None:
    client, _ = start(limits=H2Limits(max_header_list_size=16 * 1024))
    bomb = [(f"x-bomb-{i % 2}", "v" * 2000) for i in range(200)]  # ~400 KB from ~4 KB of HPACK
    client.conn.send_headers(1, [*REQUEST, (":path", "/x"), *bomb], end_stream=True)
    data = client.conn.data_to_send()
    assert len(data) < 16 * 1024
    with trio.fail_after(CEILING):
        await client.stream.send_all(data)
        await client.read_until(lambda: False)
    goaway = client.of(ev.ConnectionTerminated)
    assert client.closed
    assert goaway
    assert goaway[0].error_code in (ErrorCodes.ENHANCE_YOUR_CALM, ErrorCodes.PROTOCOL_ERROR)


async def test_zero_window_stall_ends_the_connection(
    start: Callable[..., tuple[Client, object]], autojump_clock: object
) -> None:
    client, _ = start(
        limits=H2Limits(stall_timeout=5), settings={SettingCodes.INITIAL_WINDOW_SIZE: 0}
    )
    client.conn.send_headers(1, [*REQUEST, (":path", "/x")], end_stream=True)
    await client.flush()
    started = trio.current_time()
    with trio.fail_after(CEILING + 5):
        await client.read_until(lambda: False)
    assert client.closed
    assert 5 <= trio.current_time() - started < 7
    assert client.of(ev.ResponseReceived)  # the head went out; the body never could


async def test_a_reset_cancels_its_stream_upstream_and_the_connection_goes_on(
    start: Callable[..., tuple[Client, object]], nursery: trio.Nursery
) -> None:
    asked, dropped = trio.Event(), trio.Event()

    async def silent(stream: trio.SocketStream) -> None:  # reads the request, never answers
        while await stream.receive_some(65536):
            asked.set()
        dropped.set()

    listeners = await nursery.start(trio.serve_tcp, silent, 0)
    silent_port = listeners[0].socket.getsockname()[1]
    backend = ir.Backend(name="b", endpoints=(ir.Endpoint(address="127.0.0.1", port=silent_port),))
    rule = ir.HTTPRouteRule(index=0, matches=(ir.HTTPMatch(path="/silent"),), backends=(backend,))
    client, _ = start(port_of(rule))
    client.conn.send_headers(1, [*REQUEST, (":path", "/silent")], end_stream=True)
    await client.flush()
    with trio.fail_after(CEILING):  # the upstream read timeout is far longer
        await asked.wait()
        client.conn.reset_stream(1, ErrorCodes.CANCEL)
        await client.flush()
        await dropped.wait()  # the exchange was cancelled: its upstream connection closed
        head, _ = await client.get(3, "/elsewhere")  # the connection serves on
    assert head[":status"] == "404"
