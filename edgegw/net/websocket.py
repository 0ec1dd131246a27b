"""WebSocket through the gateway: HTTP/1.1 Upgrade and RFC 8441 extended CONNECT.

Theory of operation
-------------------
Both client forms reach the backend the same way, as an HTTP/1.1 Upgrade
(``ws``, or ``wss`` over TLS), since that is what every WebSocket server
speaks:

- HTTP/1.1 client (``serve_upgrade``, called by ``net/http.py`` for an
  Upgrade request): the client's handshake is forwarded (Host, path, the
  ``Sec-WebSocket-*`` fields, X-Forwarded-*), the backend's answer goes back
  as it came, and after a 101 both sides are copied byte for byte.
- HTTP/2 client (``serve_h2_websocket``, from ``net/h2server.py``): the
  CONNECT stream with ``:protocol = websocket`` becomes an Upgrade request
  with a fresh ``Sec-WebSocket-Key``; a 101 is answered ``:status 200`` (the
  accept token is an HTTP/1.1 affair) and the stream's DATA is copied to the
  backend connection and back. The frames inside are the same in both
  protocols, so close frames, pings and extensions pass untouched.

Routing is the proxy's: listener by Host, the route match, request header
modifiers and URL rewrites, a backend by weight, an endpoint from the pool.
A tunnel is closed when either side closes or nothing moved either way for
``IDLE_TIMEOUT`` seconds.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import trio

from edgegw import ir
from edgegw.net.context import HTTPConnectionContext
from edgegw.net.tls_client import client_context
from edgegw.net.upstream import UpstreamConnection, UpstreamError, UpstreamPool
from edgegw.proto.events import HeaderList, RequestReceived
from edgegw.proto.http1 import reason_phrase, serialize_request_head, serialize_response_head
from edgegw.proto.http2 import H2Request, split_host
from edgegw.routing import filters as f
from edgegw.routing import pick_backend

if TYPE_CHECKING:
    from edgegw.net.h2server import H2Body, H2ServerConnection, H2Stream, H2Writer

log = logging.getLogger("edgegw.net.websocket")

IDLE_TIMEOUT = 300.0
HANDSHAKE_TIMEOUT = 10.0
_MAX_HEAD = 64 * 1024
_READ = 65536
_DROP = frozenset(
    {
        b"host",
        b"connection",
        b"upgrade",
        b"keep-alive",
        b"te",
        b"transfer-encoding",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"sec-websocket-key",
        b"sec-websocket-version",
    }
)


def is_websocket_upgrade(event: RequestReceived) -> bool:
    """True for a GET asking ``Upgrade: websocket``."""
    if event.method != b"GET":
        return False
    return any(n == b"upgrade" and b"websocket" in v.lower() for n, v in event.headers)


@dataclass(slots=True)
class _Target:
    """Where a WebSocket request goes, after routing and filters."""

    backend: ir.Backend
    authority: str
    path: str  # with the query
    headers: HeaderList


def _route(
    ctx: HTTPConnectionContext,
    host: str,
    authority: str,
    path: str,
    query: str,
    headers: HeaderList,
) -> _Target | int:
    """Listener, route, filters and backend; an HTTP status when there is nowhere to go."""
    table = ctx.port_table()
    listener = table.listener_for_host(host)
    if listener is None and ctx.sni_listener is not None:
        listener = next((t for t in table.listeners if t.listener.key == ctx.sni_listener), None)
    if listener is None:
        return 404
    if ctx.sni_listener is not None and listener.listener.key != ctx.sni_listener:
        return 421
    match = listener.match(host, "GET", path, query, headers)
    if match is None:
        return 404
    if match.rule.invalid:
        return 500
    for flt in match.rule.filters:
        if isinstance(flt, ir.RequestHeaderModifierFilter):
            headers = f.apply_header_modifier(headers, flt.modifier)
        elif isinstance(flt, ir.URLRewriteFilter):
            authority, path = f.rewrite(flt, authority, path, match.match)
    backend = pick_backend(match.rule, random.random())
    if backend is None or backend.invalid:
        return 500
    if not backend.endpoints:
        return 503
    for flt in backend.filters:
        if isinstance(flt, ir.RequestHeaderModifierFilter):
            headers = f.apply_header_modifier(headers, flt.modifier)
    return _Target(backend, authority, path + "?" + query if query else path, headers)


def _upgrade_head(
    ctx: HTTPConnectionContext, target: _Target, key: bytes, client_authority: str
) -> bytes:
    out: HeaderList = [(b"host", target.authority.encode("latin-1"))]
    forwarded: bytes | None = None
    for name, value in target.headers:
        if name == b"x-forwarded-for":
            forwarded = value if forwarded is None else forwarded + b", " + value
        elif name not in _DROP:
            out.append((name, value))
    client = (ctx.client[0] if ctx.client else "").encode()
    out += [
        (b"connection", b"Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-key", key),
        (b"x-forwarded-for", forwarded + b", " + client if forwarded else client),
        (b"x-forwarded-proto", ctx.scheme.encode()),
        (b"x-forwarded-host", client_authority.encode("latin-1")),
    ]
    return serialize_request_head(b"GET", target.path.encode("latin-1"), out)


def _http1_over_tls(backend: ir.Backend) -> ir.Backend:
    """The backend as the Upgrade reaches it: HTTP/1.1, so its TLS offers ALPN http/1.1.

    A backend spoken to as h2 over TLS (a GRPCRoute's, an ``h2c`` Service port
    under a BackendTLSPolicy) offers only ``h2``, which the server would pick;
    an HTTP/1.1 Upgrade on that connection would then be nonsense to it.
    """
    tls = backend.tls
    if tls is None or not tls.alpn or tls.alpn == ("http/1.1",):
        return backend
    return msgspec.structs.replace(backend, tls=msgspec.structs.replace(tls, alpn=("http/1.1",)))


async def _connect(pool: UpstreamPool, target: _Target) -> trio.abc.Stream:
    """A fresh connection to one endpoint; TLS for ``wss`` backends.

    Raises:
        UpstreamError: no connection could be made.
    """
    endpoint = pool.choose(target.backend)
    if endpoint is None:
        raise UpstreamError("no endpoint")
    backend = _http1_over_tls(target.backend)
    plain = msgspec.structs.replace(backend, tls=None) if backend.app_protocol == "wss" else backend
    conn = await pool.acquire(endpoint, plain, fresh=True)
    stream = conn.stream
    if backend.app_protocol != "wss":
        return _Owned(stream, pool, conn)
    if backend.tls is not None:
        context, name = client_context(backend.tls), backend.tls.hostname
    else:
        context, name = ssl.create_default_context(), target.authority.rsplit(":", 1)[0]
    tls_stream = trio.SSLStream(stream, context, server_hostname=name)
    try:
        await tls_stream.do_handshake()
    except (ssl.SSLError, trio.BrokenResourceError) as exc:
        pool.release(conn, reusable=False)
        raise UpstreamError(f"TLS to {name}: {exc}") from exc
    return _Owned(tls_stream, pool, conn)


class _Owned(trio.abc.Stream):
    """An upstream stream whose pool accounting ends when it is closed."""

    def __init__(
        self, stream: trio.abc.Stream, pool: UpstreamPool, conn: UpstreamConnection
    ) -> None:
        self.stream = stream
        self._pool = pool
        self._conn = conn
        self._released = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def send_eof(self) -> None:
        send_eof = getattr(self.stream, "send_eof", None)
        if send_eof is not None:
            await send_eof()

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._conn, reusable=False)
        await trio.aclose_forcefully(self.stream)


async def _read_head(stream: trio.abc.Stream) -> tuple[int, bytes, HeaderList, bytes]:
    """The backend's response head: (status, raw head, headers, bytes after it).

    Raises:
        UpstreamError: closed, too long or malformed.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _MAX_HEAD:
            raise UpstreamError("response head too long")
        chunk = await stream.receive_some(_READ)
        if not chunk:
            raise UpstreamError("backend closed during the handshake")
        data += chunk
    raw, _, rest = data.partition(b"\r\n\r\n")
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise UpstreamError("malformed response head")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    return int(parts[1]), raw + b"\r\n\r\n", headers, rest


async def _open_tunnel(
    ctx: HTTPConnectionContext, target: _Target, key: bytes, authority: str
) -> tuple[trio.abc.Stream, int, bytes, HeaderList, bytes] | int:
    """Connect and shake hands with the backend; an HTTP status on failure."""
    try:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            upstream = await _connect(ctx.pool, target)
            try:
                await upstream.send_all(_upgrade_head(ctx, target, key, authority))
                status, raw, headers, rest = await _read_head(upstream)
            except BaseException:
                await upstream.aclose()
                raise
    except trio.TooSlowError:
        return 504
    except UpstreamError as exc:
        log.debug("WebSocket backend %s: %s", target.backend.name, exc)
        return getattr(exc, "status", 502) if type(exc) is not UpstreamError else 502
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return 502
    return upstream, status, raw, headers, rest


# --- HTTP/1.1 clients -----------------------------------------------------------------------


def _split_target(target: bytes) -> tuple[str, str]:
    path, _, query = target.decode("latin-1").partition("?")
    return path, query


async def serve_upgrade(
    stream: trio.abc.Stream,
    event: RequestReceived,
    ctx: HTTPConnectionContext,
    *,
    received: bytes = b"",
) -> bool:
    """Proxy one HTTP/1.1 WebSocket upgrade; the connection is done afterwards.

    Args:
        stream: the client connection (plain or TLS), head already read.
        event: the Upgrade request.
        ctx: this connection's routing tables and pool.
        received: bytes the client sent after the head (early frames).

    Returns:
        False: the client connection must not carry another request.
    """
    authority = next((v.decode("latin-1") for n, v in event.headers if n == b"host"), "")
    headers = [(n, v) for n, v in event.headers if n != b"host"]
    path, query = _split_target(event.target)
    target = _route(ctx, split_host(authority), authority, path, query, headers)
    if isinstance(target, int):
        return await _h1_error(stream, target)
    key = next((v for n, v in event.headers if n == b"sec-websocket-key"), b"")
    opened = await _open_tunnel(ctx, target, key, authority)
    if isinstance(opened, int):
        return await _h1_error(stream, opened)
    upstream, status, raw, _headers, rest = opened
    try:
        await stream.send_all(raw + rest)
        if status == 101:
            if received:
                await upstream.send_all(received)
            await _relay(stream, upstream)
        else:
            await _copy_until_eof(upstream, stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await upstream.aclose()
    return False


async def _h1_error(stream: trio.abc.Stream, status: int) -> bool:
    text = reason_phrase(status) + b"\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(text)),
        (b"connection", b"close"),
    ]
    await stream.send_all(serialize_response_head(status, headers) + text)
    return False


async def _copy_until_eof(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
    with trio.move_on_after(IDLE_TIMEOUT):
        while data := await source.receive_some(_READ):
            await sink.send_all(data)


async def _relay(client: trio.abc.Stream, upstream: trio.abc.Stream) -> None:
    """Copy both ways until either side closes or both are idle for ``IDLE_TIMEOUT``."""
    async with trio.open_nursery() as nursery:
        idle = trio.CancelScope(deadline=trio.current_time() + IDLE_TIMEOUT)

        async def copy(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
            try:
                while data := await source.receive_some(_READ):
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


async def serve_h2_websocket(
    conn: H2ServerConnection, st: H2Stream, head: H2Request, writer: H2Writer
) -> None:
    """Proxy one extended CONNECT stream to a WebSocket backend (see the module docstring)."""
    from edgegw.net.h2server import H2Body  # h2server imports this module lazily

    ctx = conn.ctx
    target = _route(ctx, head.host, head.authority, head.path, head.query, head.headers)
    if isinstance(target, int):
        return await writer.simple(target)
    key = base64.b64encode(os.urandom(16))
    opened = await _open_tunnel(ctx, target, key, head.authority)
    if isinstance(opened, int):
        return await writer.simple(opened)
    upstream, status, _raw, headers, rest = opened
    try:
        if status != 101:
            return await writer.simple(status if status >= 200 else 502)
        passed = [
            (n, v)
            for n, v in headers
            if n in (b"sec-websocket-protocol", b"sec-websocket-extensions")
        ]
        await writer.send_head(200, passed, content_length=None, body=True)
        await writer.flush()
        if rest:
            await writer.send_data(rest)
            await writer.flush()
        await _relay_h2(H2Body(conn, st, None, timeout=IDLE_TIMEOUT), writer, upstream)
    finally:
        await upstream.aclose()
    return None


async def _relay_h2(body: H2Body, writer: H2Writer, upstream: trio.abc.Stream) -> None:
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
                while data := await upstream.receive_some(_READ):
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
    if not writer.ended:
        await writer.end()
