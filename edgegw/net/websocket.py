"""WebSocket tunnels: HTTP/1.1 Upgrade and RFC 8441 extended CONNECT, once a plan says so.

Theory of operation
-------------------
A WebSocket request is decided like every other one: the front end calls
``proxy.handle_request`` with a ``Tunnel`` from here, ``decide`` matches,
filters and plans it (redirects, CORS, header modifiers, rewrites, mirrors,
session persistence, the backend), and only a plan that forwards reaches
``forward`` below. Nothing here routes.

Both client forms reach the backend the same way, as an HTTP/1.1 Upgrade
(``ws``, or ``wss`` over TLS), since that is what every WebSocket server
speaks; the plan's head already carries ``Connection: Upgrade``:

- HTTP/1.1 client (``H1Tunnel``): the client's ``Sec-WebSocket-*`` fields
  go with the head, the backend's answer goes back with the route's response
  fields applied (``decide.response_fields``), and after a 101 both sides
  are copied byte for byte.
- HTTP/2 client (``H2Tunnel``): the extended CONNECT stream gets a fresh
  ``Sec-WebSocket-Key``; a 101 is answered ``:status 200`` (the accept token
  is an HTTP/1.1 affair) and the stream's DATA is copied to the backend
  connection and back. The frames inside are the same in both protocols, so
  close frames, pings and extensions pass untouched.

The handshake (connect, 101) is bounded by ``HANDSHAKE_TIMEOUT`` and the
rule's timeouts; a tunnel is closed when either side closes or nothing moved
either way for ``IDLE_TIMEOUT`` seconds. Upgrades are not retried.
"""

from __future__ import annotations

import base64
import logging
import os

import trio

from edgegw import ir
from edgegw.net.context import HTTPConnectionContext, ResponseWriter
from edgegw.net.decide import RequestPlan, response_fields
from edgegw.net.proxy import send_error, stream_response
from edgegw.net.upstream import RequestBody, UpstreamBroken, UpstreamError, UpstreamPool
from edgegw.proto.events import (
    Event,
    Headers,
    InformationalResponseReceived,
    RequestReceived,
    ResponseReceived,
)
from edgegw.proto.http1 import (
    ProtocolError,
    ResponseParser,
    serialize_request_head,
    serialize_response_head,
)

log = logging.getLogger("edgegw.net.websocket")

IDLE_TIMEOUT = 300.0
HANDSHAKE_TIMEOUT = 10.0
_READ = 65536
_UPGRADED = [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")]


def is_websocket_upgrade(event: RequestReceived) -> bool:
    """True for a GET asking ``Upgrade: websocket``."""
    if event.method != b"GET":
        return False
    return any(n == b"upgrade" and b"websocket" in v.lower() for n, v in event.headers)


async def _open_upstream(
    pool: UpstreamPool, plan: RequestPlan, authority: str
) -> tuple[trio.abc.Stream, ir.Endpoint]:
    """A connection of its own to the planned endpoint (``UpstreamPool.open_tunnel``).

    Raises:
        UpstreamError: no connection could be made.
    """
    assert plan.backend is not None
    endpoint = plan.pinned or pool.choose(plan.backend)
    if endpoint is None:
        raise UpstreamError("no endpoint")
    plan.record.upstream = pool.describe(endpoint)
    return await pool.open_tunnel(endpoint, plan.backend, authority), endpoint


class _HandshakeReply:
    """The backend's answer to the Upgrade, read by the one HTTP/1.1 response parser.

    An ``UpstreamReply``: a refusal (not 101) streams to the client through
    ``proxy.stream_response`` like any response; after a 101 the bytes that
    followed the head are ``rest``.
    """

    __slots__ = ("_parser", "_stream", "head")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._parser = ResponseParser(b"GET", upgrade=True)
        self.head: ResponseReceived | None = None

    async def read_head(self) -> ResponseReceived:
        """The final response head (1xx other than 101 skipped).

        Raises:
            UpstreamBroken: closed, too long or malformed.
        """
        while True:
            event = await self.next_event()
            if isinstance(event, ResponseReceived):
                self.head = event
                return event
            if not isinstance(event, InformationalResponseReceived):
                raise UpstreamBroken("unexpected event before the response head")

    async def next_event(self) -> Event:
        """The next parser event, reading from the backend when none is queued.

        Raises:
            UpstreamBroken: closed early or not HTTP.
        """
        parser = self._parser
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                raise UpstreamBroken(f"WebSocket backend: {exc}") from exc
            if event is not None:
                return event
            parser.receive_data(await self._stream.receive_some(_READ))

    def pending(self) -> bool:
        return bool(self._parser._events)

    @property
    def rest(self) -> bytes:
        return self._parser.trailing_data

    def release(self) -> None:
        self._parser.release()


class _Opened:
    """A backend that answered the handshake: its stream and its reply."""

    __slots__ = ("endpoint", "reply", "status", "stream")

    def __init__(
        self, stream: trio.abc.Stream, endpoint: ir.Endpoint, reply: _HandshakeReply
    ) -> None:
        self.stream, self.endpoint, self.reply = stream, endpoint, reply
        assert reply.head is not None
        self.status = reply.head.status_code

    @property
    def headers(self) -> Headers:
        assert self.reply.head is not None
        return self.reply.head.headers

    async def refuse(self, writer: ResponseWriter, plan: RequestPlan) -> None:
        """Pass a refusal (not 101) on to the client as any response, body and all."""
        with trio.move_on_after(IDLE_TIMEOUT):
            await stream_response(self.reply, writer, plan, self.endpoint)

    async def aclose(self) -> None:
        self.reply.release()
        await self.stream.aclose()


def _handshake_timeout(plan: RequestPlan) -> float:
    rule = plan.rule
    assert rule is not None
    limits = [HANDSHAKE_TIMEOUT, rule.request_timeout or 0, rule.backend_request_timeout or 0]
    return min(t for t in limits if t > 0)


async def _open_tunnel(ctx: HTTPConnectionContext, plan: RequestPlan) -> _Opened | int:
    """Connect and shake hands with the backend; an HTTP status on failure."""
    method, target, fields = plan.head
    host = fields[0][1].decode("latin-1")
    try:
        with trio.fail_after(_handshake_timeout(plan)):
            upstream, endpoint = await _open_upstream(ctx.pool, plan, host)
            try:
                await upstream.send_all(serialize_request_head(method, target, fields))
                reply = _HandshakeReply(upstream)
                await reply.read_head()
            except BaseException:
                await upstream.aclose()
                raise
    except trio.TooSlowError:
        return 504
    except UpstreamError as exc:
        log.debug("WebSocket backend %s: %s", plan.record.backend, exc)
        assert plan.backend is not None
        ctx.observer.upstream_error(plan.backend.name, plan.record.upstream, type(exc).__name__)
        return exc.status if type(exc) is not UpstreamError else 502
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return 502
    opened = _Opened(upstream, endpoint, reply)
    ctx.pool.report_status(endpoint, plan.backend, opened.status)  # passive health
    return opened


# --- HTTP/1.1 clients -----------------------------------------------------------------------


class H1Tunnel:
    """The tunnel for an HTTP/1.1 Upgrade; the client connection is done afterwards."""

    __slots__ = ("_read_size", "_received", "_stream")

    def __init__(
        self, stream: trio.abc.Stream, received: bytes = b"", read_size: int | None = None
    ) -> None:
        """Args: the client connection (head already read), early bytes after the head, and
        the most one read may take from either side (ClientTrafficPolicy bufferLimit)."""
        self._stream = stream
        self._received = received
        self._read_size = read_size or _READ

    async def forward(
        self, plan: RequestPlan, writer: ResponseWriter, ctx: HTTPConnectionContext
    ) -> None:
        """Shake hands with the backend, answer the client, then copy both ways."""
        opened = await _open_tunnel(ctx, plan)
        if isinstance(opened, int):
            return await send_error(writer, opened, False)
        upstream, status = opened.stream, opened.status
        plan.record.status = status
        try:
            if status != 101:
                return await opened.refuse(writer, plan)
            fields = response_fields(plan, opened.headers, opened.endpoint) + _UPGRADED
            client = self._stream
            await client.send_all(serialize_response_head(101, fields) + opened.reply.rest)
            if self._received:
                await upstream.send_all(self._received)
            await _relay(client, upstream, self._read_size)
        except (trio.BrokenResourceError, trio.ClosedResourceError, UpstreamError):
            pass
        finally:
            await opened.aclose()
        return None


async def _relay(client: trio.abc.Stream, upstream: trio.abc.Stream, read_size: int) -> None:
    """Copy both ways, ``read_size`` bytes at most at a time, until either side closes or
    both are idle for ``IDLE_TIMEOUT``."""
    async with trio.open_nursery() as nursery:
        idle = trio.CancelScope(deadline=trio.current_time() + IDLE_TIMEOUT)

        async def copy(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
            try:
                while data := await source.receive_some(read_size):
                    idle.deadline = trio.current_time() + IDLE_TIMEOUT
                    await sink.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            nursery.cancel_scope.cancel()

        with idle:
            nursery.start_soon(copy, client, upstream)
            nursery.start_soon(copy, upstream, client)
            await trio.sleep_forever()
        nursery.cancel_scope.cancel()


# --- HTTP/2 clients (RFC 8441) ----------------------------------------------------------------


class H2Tunnel:
    """The tunnel for an extended CONNECT stream; the plan's body is the stream's DATA."""

    __slots__ = ("_read_size",)

    def __init__(self, read_size: int | None = None) -> None:
        """Args: the most one read from the backend may take (ClientTrafficPolicy bufferLimit);
        the client's side is bounded by the stream's flow-control window."""
        self._read_size = read_size or _READ

    async def forward(
        self, plan: RequestPlan, writer: ResponseWriter, ctx: HTTPConnectionContext
    ) -> None:
        """Shake hands with the backend as HTTP/1.1, answer 200, then copy both ways."""
        fields = plan.head[2]
        if not any(name == b"sec-websocket-key" for name, _ in fields):
            fields.append((b"sec-websocket-key", base64.b64encode(os.urandom(16))))
        if not any(name == b"sec-websocket-version" for name, _ in fields):
            fields.append((b"sec-websocket-version", b"13"))
        opened = await _open_tunnel(ctx, plan)
        if isinstance(opened, int):
            return await send_error(writer, opened, False)
        upstream = opened.stream
        try:
            if opened.status != 101:
                return await opened.refuse(writer, plan)
            passed = response_fields(plan, opened.headers, opened.endpoint)
            passed = [h for h in passed if h[0] != b"sec-websocket-accept"]
            await writer.send_head(200, passed, content_length=None, body=True)
            await writer.flush()
            if opened.reply.rest:
                await writer.send_data(opened.reply.rest)
                await writer.flush()
            await _relay_h2(plan.req.body, writer, upstream, self._read_size)
        except UpstreamError:
            pass
        finally:
            await opened.aclose()
        return None


async def _relay_h2(
    body: RequestBody, writer: ResponseWriter, upstream: trio.abc.Stream, read_size: int
) -> None:
    async with trio.open_nursery() as nursery:
        idle = trio.CancelScope(deadline=trio.current_time() + IDLE_TIMEOUT)

        async def from_client() -> None:
            try:
                while data := await body.receive():
                    idle.deadline = trio.current_time() + IDLE_TIMEOUT
                    await upstream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            nursery.cancel_scope.cancel()

        async def from_backend() -> None:
            try:
                while data := await upstream.receive_some(read_size):
                    idle.deadline = trio.current_time() + IDLE_TIMEOUT
                    await writer.send_data(bytes(data))
                    await writer.flush()  # a frame must not wait for the next one
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            nursery.cancel_scope.cancel()

        with idle:
            nursery.start_soon(from_client)
            nursery.start_soon(from_backend)
            await trio.sleep_forever()
        nursery.cancel_scope.cancel()
    await writer.end()
