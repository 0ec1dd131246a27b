"""UDPRoute: a datagram relay with one session per client address.

Theory of operation
-------------------
UDP has no connections, so we make sessions: the first datagram from a
client ``(address, port)`` picks the port's route (``table()``: the current
generation; sessions keep the endpoint they were given across reloads), a
backend by weight and one endpoint, and opens a *connected* UDP socket to
it. Every later datagram from that client goes out on that socket, and every
datagram coming back on it is sent to the client from the listening socket,
so the client sees replies from the address it wrote to.

One task reads the listening socket; one task per session reads its
upstream socket. Both use the non-blocking socket calls directly in a loop
and only wait (``trio.lowlevel.wait_readable``) when the kernel queue is
empty: per-datagram work is a dict lookup and one system call each way.
Sends never wait: a full socket buffer drops the datagram, as the network
would. A connected socket reports an ICMP port-unreachable from its endpoint
as ``ECONNREFUSED`` on the next call; that is counted and the session
carries on, and since nothing blocks, other sessions never notice.

A session ends after ``idle_timeout`` seconds without a datagram either way.
At most ``max_sessions`` exist. The table is kept in order of last use (a
datagram either way moves a session to the end), so when it is full a new
client evicts the least recently used session instead of being refused: one
source spraying ports would otherwise fill the table and lock every other
client out for ``idle_timeout``. An evicted client that comes back gets a
new session.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import trio

from edgegw import ir
from edgegw.net.dial import Dialer
from edgegw.net.dns import ResolveError
from edgegw.routing import l4

log = logging.getLogger("edgegw.net.udp")

MAX_DATAGRAM = 65535
PENDING_LIMIT = 64  # datagrams held while a session's endpoint is being resolved
BATCH = 64  # datagrams handled before giving other tasks a turn
SOCKET_BUFFER = 4 << 20

Address = tuple[str, int]


@dataclass
class UDPStats:
    """Counters for metrics and tests.

    A port's instance also keeps one child per ``(listener, route)``
    (``route()``) with the same counters for that route's sessions.
    """

    sessions: int = 0  # live
    sessions_opened: int = 0
    sessions_expired: int = 0
    sessions_evicted: int = 0  # closed early to make room for a new client
    datagrams_up: int = 0
    datagrams_down: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    dropped: int = 0  # no route, no backend, session limit, full buffers
    upstream_errors: int = 0  # ECONNREFUSED and friends
    routes: dict[tuple[str, str], UDPStats] = field(default_factory=dict)

    def route(self, listener: str, route: str) -> UDPStats:
        key = (listener, route)
        found = self.routes.get(key)
        if found is None:
            found = self.routes[key] = UDPStats()
        return found


@dataclass
class UDPOptions:
    idle_timeout: float = 60.0
    max_sessions: int = 16384
    stats: UDPStats = field(default_factory=UDPStats)
    rand: Callable[[], float] = random.random
    dialer: Dialer = field(default_factory=Dialer)  # the process's, shared with HTTP


class _Session:
    """One client's tie to one endpoint."""

    __slots__ = ("client", "last", "pending", "scope", "stats", "upstream")

    def __init__(self, client: Address, stats: UDPStats) -> None:
        self.client = client
        self.stats = stats  # the route's counters
        self.last = trio.current_time()
        self.upstream: socket.socket | None = None
        self.pending: list[bytes] = []
        self.scope = trio.CancelScope()  # cancelled when the session is evicted


async def serve_udp(
    sock: trio.socket.SocketType,
    table: Callable[[], l4.L4Table],
    *,
    options: UDPOptions | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Relay datagrams arriving on ``sock`` (a bound UDP socket) until cancelled.

    Args:
        sock: the listening socket; it is not closed here (``SocketSet`` owns it).
        table: returns the port's current ``L4Table``.
        options: timeouts, limits and counters.
    """
    options = options or UDPOptions()
    listening = socket.socket(sock.family, socket.SOCK_DGRAM, fileno=os.dup(sock.fileno()))
    listening.setblocking(False)
    _grow_buffers(listening)
    relay = _Relay(listening, table, options)
    try:
        async with trio.open_nursery() as nursery:
            relay.nursery = nursery
            task_status.started()
            await relay.receive_loop()
    finally:
        listening.close()
    raise AssertionError("unreachable")


def _grow_buffers(sock: socket.socket) -> None:
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


class _Relay:
    """The sessions of one listening socket and the loops that move their datagrams."""

    def __init__(
        self, listening: socket.socket, table: Callable[[], l4.L4Table], options: UDPOptions
    ) -> None:
        self.listening = listening
        self.table = table
        self.options = options
        self.stats = options.stats
        self.sessions: OrderedDict[Address, _Session] = OrderedDict()  # least recent first
        self.nursery: trio.Nursery | None = None

    async def receive_loop(self) -> NoReturn:
        listening, sessions = self.listening, self.sessions
        handled = 0
        while True:
            try:
                data, client = listening.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                handled = 0
                await trio.lowlevel.wait_readable(listening)
                continue
            except OSError as exc:  # an ICMP error for an earlier reply; nothing to do
                log.debug("udp listener: %s", exc)
                continue
            session = sessions.get(client)
            if session is not None:
                sessions.move_to_end(client)
            else:
                session = self._open(client)
            if session is not None:
                self._forward(session, data)
            handled += 1
            if handled >= BATCH:
                handled = 0
                await trio.lowlevel.checkpoint()

    def _forward(self, session: _Session, data: bytes) -> None:
        session.last = trio.current_time()
        upstream = session.upstream
        if upstream is None:
            if len(session.pending) < PENDING_LIMIT:
                session.pending.append(data)
            else:
                self.stats.dropped += 1
            return
        try:
            upstream.send(data)
            self.stats.datagrams_up += 1
            route = session.stats
            route.datagrams_up += 1
            route.bytes_up += len(data)
        except BlockingIOError:
            self.stats.dropped += 1
        except OSError:
            self.stats.upstream_errors += 1  # ICMP unreachable from an earlier datagram

    def _open(self, client: Address) -> _Session | None:
        """Decide the new session's endpoint (synchronously) and start its task."""
        picked = self._pick(client)
        if picked is None:
            self.stats.dropped += 1
            return None
        endpoint, route = picked
        while self.sessions and len(self.sessions) >= self.options.max_sessions:
            self._evict()
        session = _Session(client, route)
        self.sessions[client] = session
        self.stats.sessions += 1
        self.stats.sessions_opened += 1
        route.sessions += 1
        route.sessions_opened += 1
        assert self.nursery is not None
        self.nursery.start_soon(self._run_session, session, endpoint)
        return session

    def _pick(self, client: Address) -> tuple[ir.Endpoint, UDPStats] | None:
        match = self.table().route_for_udp()
        if match is None:
            return None
        backend = l4.pick_backend(match.route.backends, self.options.rand())
        endpoint = None if backend is None else l4.pick_endpoint(backend, self.options.rand())
        if endpoint is None or endpoint.kind == "unix":
            log.debug("udp client %s: no usable backend", client)
            return None
        route = match.route
        return endpoint, self.stats.route(match.listener.key, f"{route.namespace}/{route.name}")

    def _evict(self) -> None:
        """Drop the least recently used session now; its task ends at its next checkpoint."""
        _, victim = self.sessions.popitem(last=False)
        victim.scope.cancel()
        self.stats.sessions_evicted += 1
        victim.stats.sessions_evicted += 1

    async def _run_session(self, session: _Session, endpoint: ir.Endpoint) -> None:
        with session.scope:
            await self._session(session, endpoint)

    async def _session(self, session: _Session, endpoint: ir.Endpoint) -> None:
        try:
            session.upstream = await _dial_backend(self.options.dialer, endpoint)
        except (OSError, ResolveError) as exc:
            log.info("udp endpoint %s:%s: %s", endpoint.address, endpoint.port, exc)
            self.stats.upstream_errors += 1
            session.stats.upstream_errors += 1
        try:
            if session.upstream is not None:
                for data in session.pending:
                    self._forward(session, data)
                session.pending.clear()
                await self._replies(session, session.upstream)
        finally:
            self._close(session)

    async def _replies(self, session: _Session, upstream: socket.socket) -> None:
        """Send the endpoint's datagrams to the client until the session is idle too long."""
        idle = self.options.idle_timeout
        listening, client, stats, route = self.listening, session.client, self.stats, session.stats
        handled = 0
        while True:
            try:
                data = upstream.recv(MAX_DATAGRAM)
            except BlockingIOError:
                handled = 0
                woke = await _wait_readable_until(upstream, session.last + idle)
                if not woke and trio.current_time() >= session.last + idle:
                    return
                continue
            except OSError as exc:
                if exc.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    raise
                stats.upstream_errors += 1
                route.upstream_errors += 1
                continue
            session.last = trio.current_time()
            if self.sessions.get(client) is session:
                self.sessions.move_to_end(client)
            try:
                listening.sendto(data, client)
                stats.datagrams_down += 1
                route.datagrams_down += 1
                route.bytes_down += len(data)
            except OSError:
                stats.dropped += 1
            handled += 1
            if handled >= BATCH:
                handled = 0
                await trio.lowlevel.checkpoint()

    def _close(self, session: _Session) -> None:
        expired = self.sessions.get(session.client) is session  # else it was evicted
        if expired:
            del self.sessions[session.client]
        self.stats.sessions -= 1
        self.stats.sessions_expired += expired
        session.stats.sessions -= 1
        session.stats.sessions_expired += expired
        if session.upstream is not None:
            session.upstream.close()


async def _wait_readable_until(sock: socket.socket, deadline: float) -> bool:
    """Wait for ``sock`` to be readable; False when ``deadline`` came first."""
    with trio.move_on_at(deadline):
        await trio.lowlevel.wait_readable(sock)
        return True
    return False


async def _dial_backend(dialer: Dialer, endpoint: ir.Endpoint) -> socket.socket:
    """A non-blocking UDP socket connected to ``endpoint``, with room for bursts.

    Raises:
        OSError, ResolveError: as ``Dialer.open_datagram``.
    """
    sock = await dialer.open_datagram(endpoint)
    _grow_buffers(sock)
    return sock
