"""The one upstream interface: the pool of backend connections, load balancing, health.

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

A backend under a BackendTrafficPolicy ``healthCheck`` or ``circuitBreaker``
carries an ``ir.ClusterPolicy``, and ``clusters`` (``net/clusters.py``) takes
over: ``choose`` balances over the endpoints its checks keep in rotation (the
ejection above then stays out of the way, as Envoy has no such default),
``exchange`` and ``open_tunnel`` pass its circuit breaker first and report
each status and failure to its outlier detector. Backends without one take
the unchanged fast path.

Idle connections are kept LIFO (the warmest first) and dropped after
``idle_timeout``, or when a non-blocking read shows the peer closed them (read
once a connection has been idle ``close_check_after``: a connection handed back
a moment ago is not read again, which would cost every request a syscall).
Idle times are real time (``time.monotonic``, one C call), not trio's clock
(three Python calls): they are read twice per pooled exchange and never
become a deadline.
The peer may still close one just as a request goes out on it, which shows as
EOF before any response byte: without a retry policy that request is resent
once on a fresh connection (``UpstreamConnection.reused``); with one
(``counted``), it is a failed try that counts against ``retry.attempts``.

The pool picks the protocol (the httpcore shape): ``exchange`` sends one
request to an endpoint over HTTP/1.1 (``h1upstream``) or HTTP/2 (``h2upstream``,
for ``h2c`` and ``h2`` backends; its connections are multiplexed, and it is
owned by this pool), and hands the response to a callback; ``open_tunnel``
gives a WebSocket tunnel its own connection (TLS with ALPN http/1.1 for
``wss``). Every connection comes from the ``Dialer`` (``net/dial.py``),
which tests replace with memory streams.

Errors, translated here from trio/OS errors (the tree is drawn in
``net/connection.py``): ``ConnectError`` → 503, ``UpstreamTimeout`` → 504,
``UpstreamBroken`` → 502 (``UpstreamReset``, nothing answered at all, → 503).

TLS to backends (``ir.Backend.tls``) plugs in at ``_wrap_tls``: the pool key
already includes the TLS settings, so TLS and plain connections never mix.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

import msgspec
import trio

from edgegw import ir
from edgegw.net.clusters import Breaker, Clusters
from edgegw.net.connection import (
    ConnectError,
    EndpointKey,
    Overflow,
    RequestBody,
    UpstreamBroken,
    UpstreamConnection,
    UpstreamError,
    UpstreamLimits,
    UpstreamTimeout,
    describe_endpoint,
)
from edgegw.net.dial import Dialer
from edgegw.net.dns import DNSCache, ResolveError
from edgegw.net.h1upstream import (
    Begun,
    abandon_begun,
    begin_bodyless,
    finish_bodyless,
    open_h1_exchange,
    send_bodyless,
    take_whole,
    whole_at_hand,
)
from edgegw.net.h2upstream import H2Pool, h2_exchange
from edgegw.net.tls_client import client_context
from edgegw.proto.events import Event, HeaderList, ResponseReceived
from edgegw.proto.http1 import recase

__all__ = [
    "Begun",
    "ConnectError",
    "Overflow",
    "RequestBody",
    "UpstreamBroken",
    "UpstreamConnection",
    "UpstreamError",
    "UpstreamLimits",
    "UpstreamPool",
    "UpstreamReply",
    "UpstreamTimeout",
]

Policy = Literal["least_request", "round_robin", "random"]
# BackendTrafficPolicy loadBalancer types, per backend; unset: the pool's own policy
_POLICIES: dict[str, Policy] = {
    "LeastRequest": "least_request",
    "RoundRobin": "round_robin",
    "Random": "random",
}
EJECT_BASE = 5.0
EJECT_MAX = 60.0
_H2 = ("h2c", "h2")  # backend protocols spoken over HTTP/2
_R = TypeVar("_R")
_idle_clock = time.monotonic  # how long a pooled connection was idle (see above)


class UpstreamReply(Protocol):
    """A response being read from a backend, over HTTP/1.1 or HTTP/2."""

    head: ResponseReceived | None

    async def next_event(self) -> Event: ...

    def pending(self) -> bool: ...


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
        dialer: Dialer | None = None,
        policy: Policy = "least_request",
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.limits = limits or UpstreamLimits()
        self.dialer = dialer or Dialer(dns, clock=clock)
        self.h2 = H2Pool(self)
        self._policy = policy
        self._clock = clock
        self._states: dict[EndpointKey, _EndpointState] = {}
        self._rr: dict[str, int] = {}
        self._descriptions: dict[ir.Endpoint, str] = {}
        self.clusters = Clusters(clock)  # BackendTrafficPolicy healthCheck, circuitBreaker
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
        """The endpoint of ``backend`` the next request should go to, or ``None`` if none.

        A backend under a health check balances over its healthy endpoints
        only (``Clusters.usable``); None then means "no healthy upstream".
        """
        cluster = backend.cluster
        if cluster is not None and (cluster.active is not None or cluster.passive is not None):
            healthy = self.clusters.usable(cluster, backend.endpoints, exclude)
            return self._balance(backend, healthy) if healthy else None
        if len(backend.endpoints) == 1:  # no choice (and an ejected one is tried anyway)
            return backend.endpoints[0]
        endpoints = [e for e in backend.endpoints if e not in exclude] or list(backend.endpoints)
        if not endpoints:
            return None
        return self._balance(backend, endpoints)

    def _balance(self, backend: ir.Backend, endpoints: list[ir.Endpoint]) -> ir.Endpoint:
        """The load balancer's pick among ``endpoints`` (not empty)."""
        if len(endpoints) == 1:
            return endpoints[0]
        policy = _POLICIES.get(backend.load_balancer or "", self._policy)
        start = self._rr.get(backend.name, 0)
        self._rr[backend.name] = start + 1
        if policy == "random":
            start = random.randrange(len(endpoints))
        now = self._clock()
        n = len(endpoints)
        best: ir.Endpoint | None = None
        best_load = 1 << 62
        soonest: tuple[float, ir.Endpoint] | None = None
        for i in range(n) if n <= 8 or policy != "least_request" else _two_random(n):
            endpoint = endpoints[(start + i) % n]
            state = self._state(_key(endpoint, backend))
            if state.ejected_until > now:
                if soonest is None or state.ejected_until < soonest[0]:
                    soonest = (state.ejected_until, endpoint)
                continue
            if policy != "least_request":
                return endpoint
            if state.in_flight < best_load:
                best, best_load = endpoint, state.in_flight
        if best is not None:
            return best
        return soonest[1] if soonest is not None else endpoints[start % n]

    def _take_idle(self, state: _EndpointState) -> UpstreamConnection | None:
        now, limits = _idle_clock(), self.limits
        while state.idle:
            conn = state.idle.pop()
            idle = now - conn.idle_since
            if idle < limits.idle_timeout and (
                idle < limits.close_check_after or not conn.seen_closed()
            ):
                return conn
            conn.close()
        return None

    def release(self, conn: UpstreamConnection, *, reusable: bool) -> None:
        """Hand a connection back after an exchange: pooled if clean, else closed."""
        state = self._state(conn.key)
        state.in_flight -= 1
        conn.served += 1
        if conn.max_requests and conn.served >= conn.max_requests:
            reusable = False  # circuitBreaker maxRequestsPerConnection
        if reusable and len(state.idle) < self.limits.max_idle_per_endpoint:
            conn.reused = True
            conn.idle_since = _idle_clock()
            state.idle.append(conn)
        else:
            conn.close()

    def in_flight(self, endpoint: ir.Endpoint, backend: ir.Backend) -> int:
        """Requests outstanding to an endpoint (for tests and metrics)."""
        return self._state(_key(endpoint, backend)).in_flight

    def is_ejected(self, endpoint: ir.Endpoint, backend: ir.Backend) -> bool:
        """True while a health check or passive health keeps the endpoint out of rotation."""
        cluster = backend.cluster
        if cluster is not None and not self.clusters.is_healthy(cluster, endpoint):
            return True
        return self._state(_key(endpoint, backend)).ejected_until > self._clock()

    def _eject(self, state: _EndpointState) -> None:
        delay = min(EJECT_BASE * (2 ** min(state.failures, 10)), EJECT_MAX)
        state.failures += 1
        state.ejected_until = self._clock() + delay
        for conn in state.idle:
            conn.close()
        state.idle.clear()

    # --- I/O ------------------------------------------------------------------------------

    async def exchange(
        self,
        endpoint: ir.Endpoint,
        backend: ir.Backend,
        head: tuple[bytes, bytes, HeaderList],
        body: RequestBody,
        deliver: Callable[[UpstreamReply], Awaitable[_R]],
        *,
        counted: bool = False,
        policed: bool = False,
        header_case: dict[bytes, bytes] | None = None,
    ) -> _R:
        """Send one request to ``endpoint`` in the backend's protocol; ``deliver`` takes the reply.

        The response is open while ``deliver`` runs and is finished (its
        connection pooled or closed) when it returns. A callback rather than a
        context manager: this is every proxied request's path, and each
        coroutine layer costs about 1 µs. ``counted``: the caller retries by
        its own budget, so a reused connection's failure is not resent for free.
        ``policed``: ``_policed`` already applied the backend's cluster policy.
        ``header_case``: the client's header names (``http1.preserveHeaderCase``): an
        HTTP/1.1 backend gets them so, and its response's are noted in ``header_case``.

        Raises:
            UpstreamError: see ``net/connection.py``.
        """
        if backend.cluster is not None and not policed:  # healthCheck or circuitBreaker
            return await self._policed(
                endpoint, backend, backend.cluster, head, body, deliver, counted, header_case
            )
        if backend.app_protocol in _H2:
            return await h2_exchange(self.h2, endpoint, backend, head, body, deliver)
        if header_case is not None:
            return await self._cased(endpoint, backend, head, body, deliver, counted, header_case)
        if body.length == 0:  # no body pump needed, nor its context manager
            rsp = await send_bodyless(self, endpoint, backend, head, counted=counted)
            try:
                return await deliver(rsp)
            finally:
                rsp.release()
        async with open_h1_exchange(self, endpoint, backend, head, body, counted=counted) as rsp:
            return await deliver(rsp)

    @staticmethod
    def can_begin(
        backend: ir.Backend, body: RequestBody, header_case: dict[bytes, bytes] | None
    ) -> bool:
        """Whether ``begin_exchange`` may take such a request: body-less, to an HTTP/1.1
        backend without cluster policy, no header case to keep."""
        return (
            body.length == 0
            and backend.cluster is None
            and backend.app_protocol not in _H2
            and header_case is None
        )

    # ``exchange``'s first step done now, when it needs no wait: a request that
    # ``can_begin`` written to an idle connection; None, and nothing done, otherwise.
    # A front end that starts several requests at once writes them all before any of
    # its tasks reads an answer (no schedule point per request in between).
    # ``finish_exchange`` (or ``abandon``) must follow. (The function itself: a
    # method wrapping it would cost every request a call.)
    begin_exchange = begin_bodyless

    async def finish_exchange(
        self,
        begun: Begun,
        endpoint: ir.Endpoint,
        backend: ir.Backend,
        head: tuple[bytes, bytes, HeaderList],
        deliver: Callable[[UpstreamReply], Awaitable[_R]],
    ) -> _R:
        """The rest of ``exchange`` after ``begin_exchange``.

        Raises:
            UpstreamError: see ``net/connection.py``.
        """
        rsp = await finish_bodyless(self, begun, endpoint, backend, head)
        try:
            return await deliver(rsp)
        finally:
            rsp.release()

    # A begun exchange's whole answer (head and body) if it is here already, nothing
    # taken; ``take_whole`` then ends the exchange (the connection pooled), else
    # ``finish_exchange`` goes on. The functions themselves, as ``begin_exchange``.
    whole_at_hand = staticmethod(whole_at_hand)
    take_whole = staticmethod(take_whole)

    @staticmethod
    def abandon(begun: Begun) -> None:
        """Give up a begun exchange whose answer will not be read (its connection closes)."""
        abandon_begun(begun)

    async def _cased(
        self,
        endpoint: ir.Endpoint,
        backend: ir.Backend,
        head: tuple[bytes, bytes, HeaderList],
        body: RequestBody,
        deliver: Callable[[UpstreamReply], Awaitable[_R]],
        counted: bool,
        case: dict[bytes, bytes],
    ) -> _R:
        """``exchange`` over HTTP/1.1 with the client's header names (``preserveHeaderCase``)."""
        method, target, fields = head
        cased = (method, target, recase(fields, case))
        async with open_h1_exchange(
            self, endpoint, backend, cased, body, counted=counted, keep_case=True
        ) as rsp:
            return await deliver(rsp)

    async def _policed(
        self,
        endpoint: ir.Endpoint,
        backend: ir.Backend,
        cluster: ir.ClusterPolicy,
        head: tuple[bytes, bytes, HeaderList],
        body: RequestBody,
        deliver: Callable[[UpstreamReply], Awaitable[_R]],
        counted: bool,
        case: dict[bytes, bytes] | None,
    ) -> _R:
        """``exchange`` under the cluster's circuit breaker, reporting to its outlier detector."""
        breaker = self.clusters.breaker(cluster)
        connection = backend.app_protocol not in _H2
        if breaker is not None:
            await breaker.enter(connection, self.limits.connect_timeout, endpoint)

        def observed(rsp: UpstreamReply) -> Awaitable[_R]:
            assert rsp.head is not None
            self.clusters.report_status(cluster, endpoint, rsp.head.status_code)
            return deliver(rsp)

        try:
            return await self.exchange(
                endpoint,
                backend,
                head,
                body,
                deliver if cluster.passive is None else observed,
                counted=counted,
                policed=True,
                header_case=case,
            )
        except UpstreamError as exc:
            self.report_failure(endpoint, backend, exc)  # nothing without passive health
            raise
        finally:
            if breaker is not None:
                breaker.leave(connection, endpoint)

    def report_status(self, endpoint: ir.Endpoint, backend: ir.Backend | None, status: int) -> None:
        """A status seen outside ``exchange`` (a WebSocket handshake's), for passive health."""
        cluster = backend.cluster if backend is not None else None
        if cluster is not None and cluster.passive is not None:
            self.clusters.report_status(cluster, endpoint, status)

    def report_failure(
        self, endpoint: ir.Endpoint, backend: ir.Backend, exc: UpstreamError
    ) -> None:
        """A failed try, for passive health (connect failure, timeout or reset)."""
        cluster = backend.cluster
        if cluster is None or cluster.passive is None or isinstance(exc, Overflow):
            return
        kind: Literal["connect", "timeout", "reset"] = "reset"
        if isinstance(exc, ConnectError):
            kind = "connect"
        elif isinstance(exc, UpstreamTimeout):
            kind = "timeout"
        self.clusters.report_failure(cluster, endpoint, kind)

    async def open_tunnel(
        self, endpoint: ir.Endpoint, backend: ir.Backend, authority: str
    ) -> trio.abc.Stream:
        """A connection of its own for a WebSocket tunnel; TLS for ``wss`` backends.

        The tunnel speaks HTTP/1.1 whatever the backend's usual protocol, so
        its TLS offers ALPN ``http/1.1`` only. Closing the stream ends the
        pool's accounting for it.

        Raises:
            ConnectError: no connection could be made.
        """
        breaker = self.clusters.breaker(backend.cluster) if backend.cluster else None
        if breaker is not None:
            await breaker.enter(True, self.limits.connect_timeout, endpoint)
        try:
            return await self._open_tunnel(endpoint, backend, authority, breaker)
        except BaseException as exc:
            if breaker is not None:
                breaker.leave(True, endpoint)
            if isinstance(exc, UpstreamError):
                self.report_failure(endpoint, backend, exc)
            raise

    async def _open_tunnel(
        self, endpoint: ir.Endpoint, backend: ir.Backend, authority: str, breaker: Breaker | None
    ) -> trio.abc.Stream:
        backend = _http1_over_tls(backend)
        wss = backend.app_protocol == "wss"
        plain = msgspec.structs.replace(backend, tls=None) if wss else backend
        conn = await self.acquire(endpoint, plain, fresh=True)
        if not wss:
            return _Owned(conn.stream, self, conn, breaker, endpoint)
        if backend.tls is not None:
            context, name = client_context(backend.tls), backend.tls.hostname
        else:
            context, name = ssl.create_default_context(), authority.rsplit(":", 1)[0]
        try:
            stream = await self.dialer.start_tls(conn.stream, context, name)
        except (ssl.SSLError, trio.BrokenResourceError, OSError) as exc:
            self.release(conn, reusable=False)
            raise ConnectError(f"TLS to {name}: {exc}") from exc
        return _Owned(stream, self, conn, breaker, endpoint)

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
        return await self._connect(endpoint, backend, key, state)

    def reuse(self, endpoint: ir.Endpoint, backend: ir.Backend) -> UpstreamConnection | None:
        """``acquire`` without the wait, for the hot path: an idle connection, or None.

        None takes nothing: the caller then awaits ``acquire`` for a new connection.
        """
        state = self._states.get(_key(endpoint, backend))
        if state is None or not state.idle:
            return None
        conn = self._take_idle(state)
        if conn is not None:
            state.in_flight += 1
        return conn

    async def _connect(
        self, endpoint: ir.Endpoint, backend: ir.Backend, key: EndpointKey, state: _EndpointState
    ) -> UpstreamConnection:
        """A new connection for ``acquire`` (already counted in ``in_flight``)."""
        try:
            stream = await self._dial(endpoint, backend)
        except BaseException:
            state.in_flight -= 1
            raise
        state.failures = 0
        state.ejected_until = 0.0
        conn = UpstreamConnection(stream, key, describe_endpoint(endpoint))
        cluster = backend.cluster
        if cluster is not None:
            if cluster.circuit_breaker is not None:
                conn.max_requests = cluster.circuit_breaker.max_requests_per_connection
            self.clusters.report_connected(cluster, endpoint)
        return conn

    async def _dial(self, endpoint: ir.Endpoint, backend: ir.Backend) -> trio.abc.Stream:
        state = self._state(_key(endpoint, backend))
        try:
            with trio.fail_after(self.limits.connect_timeout):
                stream = await self.dialer.open_stream(endpoint)
        except (OSError, ResolveError, trio.TooSlowError) as exc:
            cluster = backend.cluster
            if cluster is None or (cluster.passive is None and cluster.active is None):
                self._eject(state)  # a healthCheck policy decides instead, as in Envoy
            raise ConnectError(
                f"connect to {describe_endpoint(endpoint)}: {exc or 'timeout'}"
            ) from exc
        if backend.tls is not None:
            return await self._wrap_tls(stream, backend.tls)
        return stream

    async def _wrap_tls(self, stream: trio.abc.Stream, tls: ir.BackendTLS) -> trio.abc.Stream:
        """TLS to a backend (BackendTLSPolicy): SNI ``tls.hostname``, verified as it says.

        Raises:
            ConnectError: the handshake failed (wrong CA, name mismatch, not TLS).
        """
        try:
            wrapped = await self.dialer.start_tls(stream, client_context(tls), tls.hostname)
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            raise ConnectError(f"TLS to backend {tls.hostname}: {exc}") from exc
        if "h2" in tls.alpn and wrapped.selected_alpn_protocol() != "h2":
            await trio.aclose_forcefully(wrapped)  # it would not understand the h2 preface
            raise ConnectError(f"TLS to backend {tls.hostname}: ALPN h2 not selected")
        return wrapped


def _key(endpoint: ir.Endpoint, backend: ir.Backend) -> EndpointKey:
    return (endpoint.kind, endpoint.address, endpoint.port, backend.tls)


def _two_random(n: int) -> tuple[int, int]:
    """Two distinct offsets: power-of-two-choices for large endpoint sets."""
    a = random.randrange(n)
    return (a, (a + 1 + random.randrange(n - 1)) % n)


def _http1_over_tls(backend: ir.Backend) -> ir.Backend:
    """The backend as an Upgrade reaches it: HTTP/1.1, so its TLS offers ALPN http/1.1.

    A backend spoken to as h2 over TLS (a GRPCRoute's, an ``h2c`` Service port
    under a BackendTLSPolicy) offers only ``h2``, which the server would pick;
    an HTTP/1.1 Upgrade on that connection would then be nonsense to it.
    """
    tls = backend.tls
    if tls is None or not tls.alpn or tls.alpn == ("http/1.1",):
        return backend
    return msgspec.structs.replace(backend, tls=msgspec.structs.replace(tls, alpn=("http/1.1",)))


class _Owned(trio.abc.Stream):
    """An upstream stream whose pool accounting ends when it is closed."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        pool: UpstreamPool,
        conn: UpstreamConnection,
        breaker: Breaker | None = None,
        endpoint: ir.Endpoint | None = None,
    ) -> None:
        self.stream = stream
        self._pool = pool
        self._conn = conn
        self._breaker = breaker
        self._endpoint = endpoint
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
            if self._breaker is not None:
                self._breaker.leave(True, self._endpoint)
        await trio.aclose_forcefully(self.stream)
