"""TCPRoute relays and TLS passthrough: bytes in both directions, zero-copy where possible.

Theory of operation
-------------------
A connection is served in three steps, the first two synchronous decisions:

1. optionally read a PROXY protocol header (listeners that accept it), then
   for TLS passthrough read the ClientHello (``read_client_hello``) without
   consuming it for good: the bytes are kept and replayed upstream;
2. take the port's *current* ``L4Table`` from ``ctx.table()`` (a reload
   swaps it; this connection keeps the one it took), pick the route, a
   backend by weight and one of its endpoints. No route, an invalid backend
   or no endpoint closes the client without a word (no TLS alert), as does a
   full listener (``ConnectionLimits``);
3. connect (``connect_timeout``), write the PROXY header the backend asked
   for, replay what was peeked, then relay both directions until both ends
   have finished.

The relay runs one task per direction. When one side sends EOF we shut down
the write half of the other (half-close), and the opposite direction keeps
flowing. An error on either direction (reset, broken pipe) ends both. When
both ends are plain sockets, bytes move with ``os.splice`` through a pipe
(socket → pipe → socket), never entering Python: the kernel's readiness is
awaited with ``trio.lowlevel.wait_readable``/``wait_writable`` on the file
descriptors. Other streams (a terminated TLS stream) are copied through
``receive_some``/``send_all``. ``RelayStats`` counts which path was taken.

An idle watchdog cancels a relay on which nothing moved for
``idle_timeout`` seconds. ``Drain`` gives every live relay a common deadline
when its listener goes away or the process shuts down.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
import random
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import trio

from edgegw import ir
from edgegw.net.dial import Dialer
from edgegw.net.dns import ResolveError
from edgegw.net.fastio import close_now
from edgegw.net.tls_client import client_context
from edgegw.proto import proxyproto, sniff
from edgegw.routing import l4

log = logging.getLogger("edgegw.net.tcp")

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
COPY_CHUNK = 64 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
HAS_SPLICE = hasattr(os, "splice")
CLOSED_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ETIMEDOUT}

Address = tuple[str, int]


@dataclass
class RelayStats:
    """Counters for metrics and tests; one instance may be shared by many ports.

    The process-wide instance also keeps one child per ``(listener, route)``
    (``route()``), which ``/metrics`` renders, and rejections by where they
    happened: a listener key, or the port when no listener was chosen yet.
    """

    connections: int = 0
    active: int = 0
    spliced: int = 0
    copied: int = 0
    rejected: int = 0  # no route, no backend, limit reached, bad hello
    upstream_errors: int = 0
    bytes_up: int = 0  # client → backend
    bytes_down: int = 0
    routes: dict[tuple[str, str], RelayStats] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)

    def route(self, listener: str, route: str) -> RelayStats:
        """The counters of one route on one listener (created on first use)."""
        key = (listener, route)
        found = self.routes.get(key)
        if found is None:
            found = self.routes[key] = RelayStats()
        return found

    def reject(self, where: str) -> None:
        self.rejected += 1
        self.rejections[where] = self.rejections.get(where, 0) + 1


def port_label(port: ir.Port) -> str:
    """How metrics name a port when no listener was picked: ``tcp/127.0.0.1:443``."""
    return f"{port.transport}/{port.address}:{port.port}"


def route_label(route: ir.L4Route) -> str:
    return f"{route.namespace}/{route.name}"


class ConnectionLimits:
    """At most ``limit`` live connections per listener (keyed by ``Listener.key``)."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self.active: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[bool]:
        """Yields False when the listener is full (the caller closes the client)."""
        count = self.active.get(key, 0)
        if count >= self.limit:
            yield False
            return
        self.active[key] = count + 1
        try:
            yield True
        finally:
            self.active[key] -= 1


class Drain:
    """A shared deadline for live relays: ``start(grace)`` and they end by then at the latest."""

    def __init__(self) -> None:
        self.deadline = math.inf
        self._scopes: set[trio.CancelScope] = set()

    @contextlib.contextmanager
    def track(self) -> Iterator[trio.CancelScope]:
        with trio.CancelScope(deadline=self.deadline) as scope:
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    def start(self, grace: float) -> None:
        """Let live connections run for up to ``grace`` more seconds."""
        self.deadline = min(self.deadline, trio.current_time() + grace)
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, self.deadline)

    @property
    def live(self) -> int:
        return len(self._scopes)


@dataclass
class TCPContext:
    """What a TCP/TLS-passthrough connection needs; long-lived parts are shared across reloads."""

    table: Callable[[], l4.L4Table]
    connect_timeout: float = 10.0
    idle_timeout: float = 3600.0
    handshake_timeout: float = 10.0  # PROXY header and ClientHello must arrive by then
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    drain: Drain = field(default_factory=Drain)
    stats: RelayStats = field(default_factory=RelayStats)
    rand: Callable[[], float] = random.random
    splice: bool = HAS_SPLICE
    dialer: Dialer = field(default_factory=Dialer)  # the process's, shared with HTTP


@dataclass(frozen=True, slots=True)
class Sniffed:
    """The first bytes of a TLS connection: what they were and the bytes themselves."""

    result: sniff.Result
    data: bytes

    @property
    def hello(self) -> sniff.ClientHello | None:
        return self.result if isinstance(self.result, sniff.ClientHello) else None


async def read_client_hello(
    stream: trio.abc.ReceiveStream, initial: bytes = b"", max_size: int = sniff.DEFAULT_MAX_SIZE
) -> Sniffed:
    """Read until the ClientHello is complete or clearly not one; nothing is lost.

    ``data`` holds every byte read (``initial`` included), to be replayed to
    whoever serves the connection. EOF before a verdict gives ``Malformed``.
    """
    parser = sniff.ClientHelloParser(max_size)
    data = initial
    result = parser.feed(initial)
    while isinstance(result, sniff.NeedMore):
        chunk = bytes(await stream.receive_some(COPY_CHUNK))
        if not chunk:
            return Sniffed(sniff.Malformed("connection closed before the ClientHello ended"), data)
        data += chunk
        result = parser.feed(chunk)
    return Sniffed(result, bytes(data))


async def read_proxy_header(
    stream: trio.abc.ReceiveStream,
) -> tuple[proxyproto.ProxyHeader | None, bytes]:
    """Read a PROXY v1/v2 header; returns it (None if absent) and the bytes after it.

    Raises:
        proxyproto.ProxyProtocolError: malformed header.
    """
    data = b""
    while True:
        parsed = proxyproto.parse(data)
        if isinstance(parsed, proxyproto.ProxyHeader):
            return parsed, data[parsed.size :]
        if isinstance(parsed, proxyproto.NotProxy):
            return None, data
        chunk = await stream.receive_some(proxyproto.V1_MAX)
        if not chunk:
            raise proxyproto.ProxyProtocolError("connection closed inside the PROXY header")
        data += chunk


async def serve_tcp_connection(stream: trio.SocketStream, ctx: TCPContext) -> None:
    """Serve one connection accepted on a TCP listener (TCPRoute)."""
    table = ctx.table()
    try:
        with trio.fail_after(ctx.handshake_timeout):
            origin, initial = await accept_proxy(stream, required=table.accept_proxy_protocol)
        match = table.route_for_tcp()
        if match is None:
            ctx.stats.reject(port_label(table.port))
            return
        await relay_to_route(stream, ctx, match, initial=initial, origin=origin)
    except (trio.TooSlowError, proxyproto.ProxyProtocolError) as exc:
        ctx.stats.reject(port_label(table.port))
        log.debug("closing %s: %s", _peer(stream), exc)
    finally:
        await close_now(stream)


async def serve_tls_passthrough(
    stream: trio.SocketStream,
    ctx: TCPContext,
    *,
    sniffed: Sniffed | None = None,
    origin: tuple[Address, Address] | None = None,
) -> None:
    """Serve one TLS connection by its SNI without terminating it.

    Pass ``sniffed`` (and ``origin`` from an accepted PROXY header) when the
    caller already read the ClientHello to choose between passthrough and
    termination. No SNI match, a bad hello or no usable backend closes the
    connection without a TLS alert.
    """
    table = ctx.table()
    try:
        if sniffed is None:
            with trio.fail_after(ctx.handshake_timeout):
                origin, initial = await accept_proxy(stream, required=table.accept_proxy_protocol)
                sniffed = await read_client_hello(stream, initial)
        hello = sniffed.hello
        match = table.route_for_sni(hello.server_name) if hello else None
        if match is None:
            ctx.stats.reject(port_label(table.port))
            return
        await relay_to_route(stream, ctx, match, initial=sniffed.data, origin=origin)
    except (trio.TooSlowError, proxyproto.ProxyProtocolError) as exc:
        ctx.stats.reject(port_label(table.port))
        log.debug("closing %s: %s", _peer(stream), exc)
    finally:
        await close_now(stream)


async def accept_proxy(
    stream: trio.abc.ReceiveStream, *, required: bool
) -> tuple[tuple[Address, Address] | None, bytes]:
    """On ports that accept the PROXY protocol (``required``), read the header first.

    Returns the client and destination addresses the header gives (None when
    the port does not accept it, or for LOCAL/UNKNOWN headers) and the bytes
    that followed it.

    Raises:
        proxyproto.ProxyProtocolError: the header is missing or malformed.
    """
    if not required:
        return None, b""
    header, rest = await read_proxy_header(stream)
    if header is None:
        raise proxyproto.ProxyProtocolError("PROXY header required on this listener")
    if header.source is None or header.destination is None:
        return None, rest  # LOCAL/UNKNOWN: the connection's own addresses stand
    return (header.source, header.destination), rest


async def read_tls_start(
    stream: trio.abc.ReceiveStream, table: l4.L4Table | None, within: float
) -> tuple[Sniffed | None, tuple[Address, Address] | None]:
    """A TLS port's first bytes: the PROXY header where accepted, then the ClientHello.

    Returns ``(None, None)`` when they did not arrive within ``within`` seconds or the
    PROXY header was bad; the caller closes the connection without an alert.
    """
    required = table is not None and table.accept_proxy_protocol
    with trio.move_on_after(within):
        try:
            origin, initial = await accept_proxy(stream, required=required)
        except proxyproto.ProxyProtocolError as exc:
            log.debug("closing a TLS connection: %s", exc)
            return None, None
        return await read_client_hello(stream, initial), origin
    return None, None


async def relay_to_route(
    client: trio.abc.Stream,
    ctx: TCPContext,
    match: l4.L4Match,
    *,
    initial: bytes = b"",
    origin: tuple[Address, Address] | None = None,
) -> None:
    """Pick a backend of ``match.route``, connect, replay ``initial`` and relay until done.

    Also the entry point for TLS Terminate listeners, with the decrypted
    stream as ``client``. Returns quietly when the connection cannot be
    served (the caller closes ``client``).
    """
    listener = match.listener.key
    with ctx.limits.hold(listener) as admitted:
        if not admitted:
            ctx.stats.reject(listener)
            return
        backend = l4.pick_backend(match.route.backends, ctx.rand())
        endpoint = None if backend is None else l4.pick_endpoint(backend, ctx.rand())
        if backend is None or endpoint is None:
            ctx.stats.reject(listener)
            return
        route_stats = ctx.stats.route(listener, route_label(match.route))
        with ctx.drain.track():
            upstream = await _dial_backend(endpoint, ctx)
            if upstream is None:
                route_stats.upstream_errors += 1
                return
            ctx.stats.connections += 1
            route_stats.connections += 1
            route_stats.active += 1
            try:
                async with upstream:
                    header = _proxy_header(backend, client, origin)
                    target = await _reencrypt(upstream, backend, header, ctx)
                    if target is None:
                        route_stats.upstream_errors += 1
                        return
                    first = header + initial if target is upstream else initial
                    if first:
                        await target.send_all(first)
                    await relay(client, target, ctx, route_stats)
            finally:
                route_stats.active -= 1


async def _reencrypt(
    upstream: trio.abc.Stream, backend: ir.Backend, header: bytes, ctx: TCPContext
) -> trio.abc.Stream | None:
    """TLS to the backend when a BackendTLSPolicy asks (TLS Terminate listeners only).

    The PROXY header, if any, goes first in the clear, as a backend expects it.
    Returns ``upstream`` itself for plain backends, None when the handshake failed.
    """
    tls = backend.tls
    if tls is None:
        return upstream
    if header:
        await upstream.send_all(header)
    try:
        with trio.fail_after(ctx.connect_timeout):
            return await ctx.dialer.start_tls(upstream, client_context(tls), tls.hostname)
    except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError, OSError) as exc:
        log.info("TLS to backend %s failed: %s", tls.hostname, exc)
        return None


async def _dial_backend(endpoint: ir.Endpoint, ctx: TCPContext) -> trio.abc.Stream | None:
    """A connection to ``endpoint`` through the shared dialler; None (logged) on failure."""
    try:
        with trio.fail_after(ctx.connect_timeout):
            return await ctx.dialer.open_stream(endpoint)
    except (OSError, ResolveError, trio.TooSlowError) as exc:
        ctx.stats.upstream_errors += 1
        log.info("connect to %s:%s failed: %s", endpoint.address, endpoint.port, exc)
        return None


def _proxy_header(
    backend: ir.Backend, client: trio.abc.Stream, origin: tuple[Address, Address] | None
) -> bytes:
    if not backend.proxy_protocol:
        return b""
    source, destination = origin or _addresses(client)
    return proxyproto.encode(backend.proxy_protocol, source, destination)


def _socket_of(stream: object) -> trio.socket.SocketType | None:
    while stream is not None and not isinstance(stream, trio.SocketStream):
        stream = getattr(stream, "transport_stream", None)
    return stream.socket if isinstance(stream, trio.SocketStream) else None


def _addresses(stream: trio.abc.Stream) -> tuple[Address | None, Address | None]:
    sock = _socket_of(stream)
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None, None
    peer, local = sock.getpeername(), sock.getsockname()
    return (peer[0], peer[1]), (local[0], local[1])


def _peer(stream: trio.abc.Stream) -> object:
    try:
        return _addresses(stream)[0]
    except OSError:
        return None


# --- the relay ------------------------------------------------------------------------------


class _Activity:
    """When bytes last moved on a relay, for the idle watchdog."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = trio.current_time()


async def relay(
    a: trio.abc.Stream, b: trio.abc.Stream, ctx: TCPContext, route: RelayStats | None = None
) -> None:
    """Move bytes both ways until both directions ended, one failed, or idle time ran out.

    Bytes are counted in ``ctx.stats`` and, when given, in ``route`` too.
    """
    sock_a, sock_b = _plain_socket(a), _plain_socket(b)
    if ctx.splice and sock_a is not None and sock_b is not None:
        ctx.stats.spliced += 1
        up = _splice_direction(sock_a, sock_b)
        down = _splice_direction(sock_b, sock_a)
    else:
        ctx.stats.copied += 1
        up, down = _copy_direction(a, b), _copy_direction(b, a)
    activity = _Activity()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_idle_watchdog, activity, ctx.idle_timeout, scope)
            async with trio.open_nursery() as directions:
                tallies = (ctx.stats,) if route is None else (ctx.stats, route)
                directions.start_soon(_run_direction, up, activity, tallies, True, scope)
                directions.start_soon(_run_direction, down, activity, tallies, False, scope)
            nursery.cancel_scope.cancel()


Tallies = tuple[RelayStats, ...]
Direction = Callable[["_Activity", Tallies, bool], Awaitable[None]]


async def _run_direction(
    move: Direction, activity: _Activity, stats: Tallies, up: bool, scope: trio.CancelScope
) -> None:
    try:
        await move(activity, stats, up)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("relay ended: %s", exc)
        scope.cancel()  # a reset on one side ends both directions


async def _idle_watchdog(activity: _Activity, idle: float, scope: trio.CancelScope) -> None:
    while True:
        await trio.sleep_until(activity.last + idle)
        if trio.current_time() >= activity.last + idle:
            scope.cancel()
            return


def _plain_socket(stream: object) -> trio.socket.SocketType | None:
    """The socket of a plain SocketStream (not a TLS stream wrapping one)."""
    return stream.socket if isinstance(stream, trio.SocketStream) else None


def _count(tallies: Tallies, up: bool, n: int) -> None:
    for stats in tallies:
        if up:
            stats.bytes_up += n
        else:
            stats.bytes_down += n


def _copy_direction(src: trio.abc.Stream, dst: trio.abc.Stream) -> Direction:
    async def move(activity: _Activity, stats: Tallies, up: bool) -> None:
        while data := await src.receive_some(COPY_CHUNK):
            await dst.send_all(data)
            activity.last = trio.current_time()
            _count(stats, up, len(data))
        if isinstance(dst, trio.abc.HalfCloseableStream):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await dst.send_eof()
        else:
            raise trio.ClosedResourceError("peer cannot half-close; ending the relay")

    return move


def _splice_direction(src: trio.socket.SocketType, dst: trio.socket.SocketType) -> Direction:
    async def move(activity: _Activity, stats: Tallies, up: bool) -> None:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):
                fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)
            await _splice_loop(src, dst, (read_end, write_end), activity, stats, up)
        finally:
            os.close(read_end)
            os.close(write_end)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    return move


async def _splice_loop(
    src: trio.socket.SocketType,
    dst: trio.socket.SocketType,
    pipe: tuple[int, int],
    activity: _Activity,
    stats: Tallies,
    up: bool,
) -> None:
    """socket → pipe → socket until EOF on ``src``; bytes never enter Python."""
    read_end, write_end = pipe
    src_fd, dst_fd = src.fileno(), dst.fileno()
    flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
    while True:
        try:
            in_pipe = os.splice(src_fd, write_end, CHUNK, flags=flags)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(src)
            continue
        if in_pipe == 0:
            return
        activity.last = trio.current_time()
        _count(stats, up, in_pipe)
        while in_pipe:
            try:
                in_pipe -= os.splice(read_end, dst_fd, in_pipe, flags=flags)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(dst)
        await trio.lowlevel.checkpoint()
