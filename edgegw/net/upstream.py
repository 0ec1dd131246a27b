"""The process-wide pool of upstream connections, load balancing and passive health.

Theory of operation
-------------------
Everything that can be decided without I/O is decided synchronously, then the
I/O is done (the httpcore shape): ``choose`` picks an endpoint of a backend
(least outstanding requests, ties broken round-robin, ejected endpoints
skipped), then ``acquire`` either pops an idle keep-alive connection to it or
opens a new one. Because the decisions involve no ``await``, two tasks can
never pick the same idle connection.

Passive health: a connect that is refused or times out ejects the endpoint for
5 s, doubling on each consecutive failure up to 60 s; any success resets it.
When every endpoint of a backend is ejected, the one whose ejection ends first
is tried anyway: a guess beats a certain 503.

Idle connections are kept LIFO (the warmest first) and dropped after
``idle_timeout``; a reused connection may still have been closed by the peer
in the meantime, which the proxy detects (EOF before any response byte) and
answers by retrying once on a fresh connection (``UpstreamConnection.reused``).

Errors, translated here from trio/OS errors::

    UpstreamError
    ├── ConnectError      could not connect (refused, unreachable, timeout, DNS) → 503
    ├── UpstreamTimeout   no (complete) answer in time → 504
    └── UpstreamBroken    the connection failed or the peer broke HTTP → 502

TLS to backends (``ir.Backend.tls``) plugs in at ``_wrap_tls``: the pool key
already includes the TLS settings, so TLS and plain connections never mix.
"""

from __future__ import annotations

import math
import random
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol

import trio

from edgegw import ir
from edgegw.net.dns import DNSCache, ResolveError
from edgegw.net.fastio import TimedOut, open_io
from edgegw.net.tls_client import client_context
from edgegw.proto.events import (
    Event,
    Headers,
    InformationalResponseReceived,
    ResponseReceived,
)
from edgegw.proto.http1 import (
    ProtocolError,
    ResponseParser,
    serialize_chunk,
    serialize_last_chunk,
    serialize_request_head,
)

Policy = Literal["least_request", "round_robin"]
EJECT_BASE = 5.0
EJECT_MAX = 60.0
_now = trio.current_time


class UpstreamError(Exception):
    """Base of the upstream errors; ``status`` is what the client should get."""

    status = 502


class ConnectError(UpstreamError):
    status = 503


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamBroken(UpstreamError):
    status = 502


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    connect_timeout: float = 5.0
    idle_timeout: float = 30.0  # how long an idle pooled connection is kept
    max_idle_per_endpoint: int = 256
    read_timeout: float = 60.0  # silence from the upstream while we wait for bytes


EndpointKey = tuple[str, str, int, "ir.BackendTLS | None"]


class UpstreamConnection:
    """One connection to one endpoint; ``reused`` if it served a request before.

    Plain sockets are driven through a ``FastSocket``, other streams (TLS)
    through their trio ``Stream`` interface; ``io`` is either.
    """

    __slots__ = ("address", "idle_since", "io", "key", "parser", "reused", "stream")

    def __init__(
        self,
        stream: trio.abc.Stream,
        key: EndpointKey,
        address: str,
        reused: bool = False,
        idle_since: float = 0.0,
    ) -> None:
        self.stream = stream
        self.io = open_io(stream)
        self.key = key
        self.address = address  # "ip:port" or the socket path, for logs
        self.reused = reused
        self.idle_since = idle_since
        self.parser: ResponseParser | None = None  # kept from the last exchange, for reuse

    async def send_all(self, data: bytes) -> None:
        """Write, translating transport failures to ``UpstreamBroken``."""
        try:
            await self.io.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise UpstreamBroken(f"upstream {self.address}: {exc}") from exc

    async def receive_some(self, deadline: float = math.inf, *, wait_first: bool = False) -> bytes:
        """Read, translating transport failures to ``UpstreamBroken``.

        Raises:
            UpstreamBroken: the connection failed.
            UpstreamTimeout: nothing arrived before ``deadline``.
        """
        try:
            return await self.io.recv(deadline, wait_first=wait_first)
        except TimedOut:
            raise UpstreamTimeout(f"upstream {self.address} timed out") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise UpstreamBroken(f"upstream {self.address}: {exc}") from exc

    def close(self) -> None:
        """Close without awaiting, so pool decisions stay synchronous.

        Sockets close synchronously; a TLS stream is closed through its transport
        (no close_notify, which an upstream does not need).
        """
        if self.parser is not None:
            self.parser.release()
            self.parser = None
        stream: object = self.stream
        while not isinstance(stream, trio.SocketStream) and hasattr(stream, "transport_stream"):
            stream = stream.transport_stream
        if isinstance(stream, trio.SocketStream):
            stream.socket.close()
        elif callable(close := getattr(stream, "close", None)):
            close()


@dataclass(slots=True)
class _EndpointState:
    idle: list[UpstreamConnection] = field(default_factory=list)
    in_flight: int = 0
    ejected_until: float = 0.0
    failures: int = 0


class UpstreamPool:
    """Keep-alive connections to every endpoint, shared by all client connections."""

    def __init__(
        self,
        *,
        limits: UpstreamLimits | None = None,
        dns: DNSCache | None = None,
        policy: Policy = "least_request",
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.limits = limits or UpstreamLimits()
        self.dns = dns or DNSCache(clock=clock)
        self._policy = policy
        self._clock = clock
        self._states: dict[EndpointKey, _EndpointState] = {}
        self._rr: dict[str, int] = {}
        self._descriptions: dict[ir.Endpoint, str] = {}
        self.mirrors_in_flight = 0  # request copies running (``proxy.MIRRORS_MAX``)

    def describe(self, endpoint: ir.Endpoint) -> str:
        """``endpoint`` as logs name it ("ip:port", "[v6]:port" or a socket path), cached."""
        text = self._descriptions.get(endpoint)
        if text is None:
            if len(self._descriptions) > 4096:
                self._descriptions.clear()
            text = self._descriptions[endpoint] = describe_endpoint(endpoint)
        return text

    # --- synchronous decisions ------------------------------------------------------------

    def _state(self, key: EndpointKey) -> _EndpointState:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _EndpointState()
        return state

    def choose(
        self, backend: ir.Backend, exclude: frozenset[ir.Endpoint] = frozenset()
    ) -> ir.Endpoint | None:
        """The endpoint of ``backend`` the next request should go to, or ``None`` if none."""
        if len(backend.endpoints) == 1:  # no choice (and an ejected one is tried anyway)
            return backend.endpoints[0]
        endpoints = [e for e in backend.endpoints if e not in exclude] or list(backend.endpoints)
        if not endpoints:
            return None
        start = self._rr.get(backend.name, 0)
        self._rr[backend.name] = start + 1
        now = self._clock()
        n = len(endpoints)
        best: ir.Endpoint | None = None
        best_load = 1 << 62
        soonest: tuple[float, ir.Endpoint] | None = None
        for i in range(n) if n <= 8 or self._policy == "round_robin" else _two_random(n):
            endpoint = endpoints[(start + i) % n]
            state = self._state(_key(endpoint, backend))
            if state.ejected_until > now:
                if soonest is None or state.ejected_until < soonest[0]:
                    soonest = (state.ejected_until, endpoint)
                continue
            if self._policy == "round_robin":
                return endpoint
            if state.in_flight < best_load:
                best, best_load = endpoint, state.in_flight
        if best is not None:
            return best
        return soonest[1] if soonest is not None else endpoints[start % n]

    def _take_idle(self, state: _EndpointState) -> UpstreamConnection | None:
        now = self._clock()
        while state.idle:
            conn = state.idle.pop()
            if now - conn.idle_since < self.limits.idle_timeout:
                return conn
            conn.close()
        return None

    def release(self, conn: UpstreamConnection, *, reusable: bool) -> None:
        """Hand a connection back after an exchange: pooled if clean, else closed."""
        state = self._state(conn.key)
        state.in_flight -= 1
        if reusable and len(state.idle) < self.limits.max_idle_per_endpoint:
            conn.reused = True
            conn.idle_since = self._clock()
            state.idle.append(conn)
        else:
            conn.close()

    def in_flight(self, endpoint: ir.Endpoint, backend: ir.Backend) -> int:
        """Requests outstanding to an endpoint (for tests and metrics)."""
        return self._state(_key(endpoint, backend)).in_flight

    def is_ejected(self, endpoint: ir.Endpoint, backend: ir.Backend) -> bool:
        """True while passive health keeps the endpoint out of rotation."""
        return self._state(_key(endpoint, backend)).ejected_until > self._clock()

    def _eject(self, state: _EndpointState) -> None:
        delay = min(EJECT_BASE * (2 ** min(state.failures, 10)), EJECT_MAX)
        state.failures += 1
        state.ejected_until = self._clock() + delay
        for conn in state.idle:
            conn.close()
        state.idle.clear()

    # --- I/O ------------------------------------------------------------------------------

    async def acquire(
        self, endpoint: ir.Endpoint, backend: ir.Backend, *, fresh: bool = False
    ) -> UpstreamConnection:
        """A connection to ``endpoint``: an idle pooled one unless ``fresh``, else a new one.

        Raises:
            ConnectError: the endpoint could not be reached; it is ejected for a while.
        """
        key = _key(endpoint, backend)
        state = self._state(key)
        conn = None if fresh else self._take_idle(state)
        state.in_flight += 1
        if conn is not None:
            return conn
        try:
            stream = await self._connect(endpoint, backend)
        except BaseException:
            state.in_flight -= 1
            raise
        state.failures = 0
        state.ejected_until = 0.0
        return UpstreamConnection(stream, key, describe_endpoint(endpoint))

    async def _connect(self, endpoint: ir.Endpoint, backend: ir.Backend) -> trio.abc.Stream:
        state = self._state(_key(endpoint, backend))
        try:
            with trio.fail_after(self.limits.connect_timeout):
                stream = await self._open(endpoint)
        except (OSError, ResolveError, trio.TooSlowError) as exc:
            self._eject(state)
            raise ConnectError(
                f"connect to {describe_endpoint(endpoint)}: {exc or 'timeout'}"
            ) from exc
        if backend.tls is not None:
            return await self._wrap_tls(stream, backend.tls)
        return stream

    async def _open(self, endpoint: ir.Endpoint) -> trio.abc.Stream:
        if endpoint.kind == "unix":
            return await trio.open_unix_socket(endpoint.address)
        if endpoint.kind == "fqdn":
            addresses = await self.dns.resolve(endpoint.address)
            return await _open_first(addresses, endpoint.port)
        return await trio.open_tcp_stream(endpoint.address, endpoint.port)

    async def _wrap_tls(self, stream: trio.abc.Stream, tls: ir.BackendTLS) -> trio.abc.Stream:
        """TLS to a backend (BackendTLSPolicy): SNI ``tls.hostname``, verified as it says.

        Raises:
            ConnectError: the handshake failed (wrong CA, name mismatch, not TLS).
        """
        wrapped = trio.SSLStream(stream, client_context(tls), server_hostname=tls.hostname)
        try:
            await wrapped.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            await trio.aclose_forcefully(stream)
            raise ConnectError(f"TLS to backend {tls.hostname}: {exc}") from exc
        if "h2" in tls.alpn and wrapped.selected_alpn_protocol() != "h2":
            await trio.aclose_forcefully(wrapped)  # it would not understand the h2 preface
            raise ConnectError(f"TLS to backend {tls.hostname}: ALPN h2 not selected")
        return wrapped


async def _open_first(addresses: tuple[str, ...], port: int) -> trio.abc.Stream:
    error: OSError | None = None
    for address in addresses:
        try:
            return await trio.open_tcp_stream(address, port)
        except OSError as exc:
            error = exc
    raise error or OSError("no addresses")


def _key(endpoint: ir.Endpoint, backend: ir.Backend) -> EndpointKey:
    return (endpoint.kind, endpoint.address, endpoint.port, backend.tls)


def describe_endpoint(endpoint: ir.Endpoint) -> str:
    if endpoint.kind == "unix":
        return endpoint.address
    if ":" in endpoint.address:
        return f"[{endpoint.address}]:{endpoint.port}"
    return f"{endpoint.address}:{endpoint.port}"


def _two_random(n: int) -> tuple[int, int]:
    """Two distinct offsets: power-of-two-choices for large endpoint sets."""
    a = random.randrange(n)
    return (a, (a + 1 + random.randrange(n - 1)) % n)


# --- one HTTP/1.1 exchange ------------------------------------------------------------------


class RequestBody(Protocol):
    """A request body as the front end delivers it, whatever the client protocol.

    ``length`` is 0 for no body, ``None`` when unknown (chunked, HTTP/2 DATA).
    ``started`` turns True once any byte was taken: from then on the request
    cannot be sent again (retried).
    """

    length: int | None
    started: bool
    finished: bool

    @property
    def trailers(self) -> Headers:
        """Trailers that ended the body: sent on over chunked HTTP/1.1 or HTTP/2."""
        ...

    async def receive(self) -> bytes:
        """The next piece; ``b""`` at the end."""
        ...


class UpstreamResponse:
    """The response being read from one upstream connection."""

    __slots__ = ("_parser", "_pool", "_read_timeout", "conn", "head", "received", "trailers")

    def __init__(
        self,
        conn: UpstreamConnection,
        parser: ResponseParser,
        read_timeout: float,
        pool: UpstreamPool | None = None,
    ) -> None:
        self.conn = conn
        self._pool = pool
        self.head: ResponseReceived | None = None
        self.trailers: Headers = ()
        self.received = 0
        self._parser = parser
        self._read_timeout = read_timeout

    async def next_event(self) -> Event:
        """The next parser event, reading from the upstream when none is queued.

        Raises:
            UpstreamBroken: the upstream closed early or broke HTTP.
            UpstreamTimeout: it was silent for ``read_timeout``.
        """
        parser = self._parser
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                raise UpstreamBroken(f"upstream {self.conn.address}: {exc}") from exc
            if event is not None:
                return event
            data = await self.conn.receive_some(_now() + self._read_timeout)
            self.received += len(data)
            parser.receive_data(data)

    def pending(self) -> bool:
        """True when an event is ready without reading (so a flush can wait)."""
        return bool(self._parser._events)

    @property
    def reusable(self) -> bool:
        return self._parser.reusable

    def release(self, *, reusable: bool | None = None) -> None:
        """Give the connection back to the pool (``exchange`` only); idempotent."""
        pool = self._pool
        if pool is not None:
            self._pool = None
            parser = self._parser
            if reusable is None:
                reusable = parser.reusable
            if reusable and parser.reusable:
                self.conn.parser = parser
            else:
                self.conn.parser = None
                parser.release()
            pool.release(self.conn, reusable=reusable)


async def exchange(
    pool: UpstreamPool,
    endpoint: ir.Endpoint,
    backend: ir.Backend,
    head: tuple[bytes, bytes, list[tuple[bytes, bytes]]],
) -> UpstreamResponse:
    """``open_exchange`` for a body-less request, without a context manager (the hot path).

    The caller must call ``release()`` on the result once done with it, even on
    errors; the connection is pooled only if the response was read to its end.

    Raises:
        ConnectError, UpstreamBroken, UpstreamTimeout: see the module docstring.
    """
    method, target, headers = head
    request_head = serialize_request_head(method, target, headers)
    fresh = False
    while True:
        conn = await pool.acquire(endpoint, backend, fresh=fresh)
        parser = conn.parser
        if parser is None or method == b"HEAD":
            parser = ResponseParser(method)
        else:
            conn.parser = None
            parser.reset()
        response = UpstreamResponse(conn, parser, pool.limits.read_timeout, pool)
        try:
            await conn.send_all(request_head)
            # Let the others run first: by then the answer has often arrived, and a read
            # that finds it costs less than registering a wait (under wrk, -8% CPU/request).
            await trio.lowlevel.checkpoint()
            response.head = await _read_head(response)
        except UpstreamBroken:
            response.release(reusable=False)
            if conn.reused and response.received == 0:
                fresh = True
                continue
            raise
        except BaseException:
            response.release(reusable=False)
            raise
        return response


@asynccontextmanager
async def open_exchange(
    pool: UpstreamPool,
    endpoint: ir.Endpoint,
    backend: ir.Backend,
    head: tuple[bytes, bytes, list[tuple[bytes, bytes]]],
    body: RequestBody,
) -> AsyncIterator[UpstreamResponse]:
    """Send a request to ``endpoint`` and yield the response once its head arrived.

    The body, if any, is sent by a task of its own while the response is
    read, so an upstream that answers before reading everything (or streams
    its answer as it reads) cannot deadlock us. Body-less requests, the hot
    path, need no task. On exit the connection goes back to the pool if both
    directions ended cleanly, else it is closed.

    A reused keep-alive connection that turns out dead (EOF before any byte)
    is replaced once by a fresh one, when the body allows resending.

    Raises:
        ConnectError, UpstreamBroken, UpstreamTimeout: see the module docstring.
    """
    if body.length == 0:
        plain = await exchange(pool, endpoint, backend, head)
        try:
            yield plain
        finally:
            plain.release()
        return
    method, target, headers = head
    request_head = serialize_request_head(method, target, headers)
    fresh = False
    while True:
        conn = await pool.acquire(endpoint, backend, fresh=fresh)
        response = UpstreamResponse(conn, ResponseParser(method), pool.limits.read_timeout)
        reusable = False
        try:
            failure: list[BaseException] = []
            with _collapse_groups():
                async with trio.open_nursery() as nursery:
                    try:
                        await conn.send_all(request_head)
                        nursery.start_soon(_pump_body, conn, body, failure, nursery.cancel_scope)
                        response.head = await _read_head(response, wait_first=True)
                    except UpstreamBroken:
                        nursery.cancel_scope.cancel()
                        if conn.reused and response.received == 0 and not body.started:
                            fresh = True
                            continue
                        raise
                    yield response
                    reusable = response.reusable and body.finished and not failure
                    if not body.finished:
                        nursery.cancel_scope.cancel()
            if failure:
                raise failure[0]
            return
        finally:
            response._parser.release()  # a fresh parser per body exchange: never kept
            pool.release(conn, reusable=reusable)


@contextmanager
def _collapse_groups() -> Iterator[None]:
    """Re-raise a lone exception out of a nursery's group, so callers can catch it by type."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise


async def _read_head(response: UpstreamResponse, *, wait_first: bool = False) -> ResponseReceived:
    if wait_first:  # the request just left: reading now would only say EAGAIN
        conn = response.conn
        data = await conn.receive_some(_now() + response._read_timeout, wait_first=True)
        response.received += len(data)
        response._parser.receive_data(data)
    while True:
        event = await response.next_event()
        if isinstance(event, ResponseReceived):
            return event
        if not isinstance(event, InformationalResponseReceived):
            raise UpstreamBroken("unexpected event before the response head")


async def _pump_body(
    conn: UpstreamConnection,
    body: RequestBody,
    failure: list[BaseException],
    scope: trio.CancelScope,
) -> None:
    """Copy the request body upstream; client-side failures stop the whole exchange.

    An upstream that stops reading is not an error here: the response side
    reports it, or has already answered.
    """
    chunked = body.length is None
    try:
        while True:
            data = await body.receive()
            if not data:
                if chunked:
                    await conn.send_all(serialize_last_chunk(body.trailers))
                return
            await conn.send_all(serialize_chunk(data) if chunked else data)
    except UpstreamBroken:
        return
    except Exception as exc:
        failure.append(exc)
        scope.cancel()
