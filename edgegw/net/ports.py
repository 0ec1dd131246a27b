"""One task per bound port: accept connections and hand each to its protocol.

Theory of operation
-------------------
A ``PortServer`` owns the serving of one listening socket (the socket itself
belongs to ``listeners.SocketSet``). Its ``runtime`` attribute is the
compiled state of the current generation for that port (routing tables, TLS
contexts); a reload replaces the attribute in one assignment, so a new
connection sees either the old or the new runtime, and a connection already
running keeps the objects it took.

Connections run in the port's own nursery. Stopping a port (listener removed
on reload, or SIGTERM) is a drain: stop accepting at once, tell connections
to finish (the ``on_stop`` hooks: HTTP stops keep-alive and closes idle
connections), and give the nursery a deadline, after which whatever is left
is cancelled.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from edgegw import ir
from edgegw.net.context import HTTPLimits
from edgegw.net.fastio import close_now
from edgegw.net.tls import ServerTLS
from edgegw.proto.http2 import H2Limits
from edgegw.routing import PortTable
from edgegw.routing.http3 import serves_http3
from edgegw.routing.l4 import L4Table

log = logging.getLogger("edgegw.net")

ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# accept(2) reports these for a connection that failed before it was taken (as trio).
_ACCEPT_IGNORED_ERRNOS = {
    errno.ECONNABORTED,
    errno.EPROTO,
    errno.ENETDOWN,
    errno.ENOPROTOOPT,
    errno.EHOSTDOWN,
    errno.ENONET,
    errno.EHOSTUNREACH,
    errno.EOPNOTSUPP,
    errno.ENETUNREACH,
}
_ACCEPT_BATCH = 16


class PortRuntime(msgspec.Struct, frozen=True, kw_only=True):
    """The compiled state one port serves for one generation."""

    port: ir.Port
    http: PortTable | None = None  # for HTTP/HTTPS ports
    l4: L4Table | None = None  # for TLS/TCP/UDP ports
    tls: ServerTLS | None = None  # when the port terminates TLS
    protocols: frozenset[str] = frozenset()  # of its listeners
    proxy_protocol: bool = False  # a PROXY header comes first on every connection
    keepalive: ir.TCPKeepalive | None = None  # ClientTrafficPolicy tcpKeepalive
    http_limits: HTTPLimits | None = None  # when a ClientTrafficPolicy changes them
    h2_limits: H2Limits | None = None  # ClientTrafficPolicy http2
    connection_limit: int | None = None  # ClientTrafficPolicy connection.connectionLimit
    close_delay: float = 0.0  # before closing a connection over the limit
    buffer_limit: int | None = None  # ClientTrafficPolicy connection.bufferLimit
    read_size: int | None = None  # per read from a client, from buffer_limit
    tcp_idle_timeout: float | None = None  # ClientTrafficPolicy timeout.tcp.idleTimeout
    default_host: str | None = None  # http1.http10.useDefaultHost


Peer = tuple[str, int] | None  # the client's address from accept(2)
ConnectionHandler = Callable[[trio.SocketStream, Peer], Awaitable[None]]


class PortServer:
    """Serves one listening socket until stopped; see the module docstring."""

    def __init__(self, sock: trio.socket.SocketType, runtime: PortRuntime) -> None:
        self.sock = sock
        self.runtime = runtime
        self.handler: ConnectionHandler | None = None
        self.on_stop: list[Callable[[float], None]] = []  # drain hooks, given the grace
        self.active = 0
        self.refused = 0  # connections closed for connectionLimit
        self.on_refused: Callable[[], None] | None = None  # counts them in metrics
        self._closing = 0
        self._accepting = trio.CancelScope()
        self._connections: trio.Nursery | None = None
        self.done = trio.Event()

    @property
    def key(self) -> tuple[str, str, int]:
        return self.runtime.port.bind_key

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept until ``stop()``; then wait for connections to drain."""
        try:
            async with trio.open_nursery() as connections:
                self._connections = connections
                with self._accepting:
                    task_status.started()
                    await self._accept_loop(connections)
        finally:
            self.done.set()

    async def _accept_loop(self, connections: trio.Nursery) -> None:
        """Accept every connection waiting, then wait for more.

        What ``trio.SocketListener.accept`` does, minus two checkpoints and a
        wrapper per connection (a sixth of a one-request connection's CPU):
        accept(2) on a non-blocking duplicate of the listening socket until
        EAGAIN, yielding every ``_ACCEPT_BATCH`` connections.
        """
        listening = socket.socket(fileno=os.dup(self.sock.fileno()))
        listening.setblocking(False)
        accepted = 0
        try:
            while True:
                try:
                    conn, address = listening.accept()
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(listening)
                    continue
                except OSError as exc:
                    if exc.errno in _ACCEPT_IGNORED_ERRNOS:
                        continue  # that connection died before we took it
                    if exc.errno not in ACCEPT_RETRY_ERRNOS:
                        raise
                    log.warning("accept on %s: %s; retrying", self.key, exc.strerror)
                    await trio.sleep(0.1)
                    continue
                limit = self.runtime.connection_limit
                if limit is not None and self.active >= limit:
                    self._refuse(connections, conn)
                    continue
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                peer = (address[0], address[1]) if isinstance(address, tuple) else None
                self.active += 1  # counted at accept, so a burst sees the limit at once
                connections.start_soon(self._run_connection, stream, peer)
                accepted += 1
                if accepted % _ACCEPT_BATCH == 0:
                    await trio.lowlevel.checkpoint()
        finally:
            listening.close()

    def _refuse(self, connections: trio.Nursery, conn: socket.socket) -> None:
        """Over ``connectionLimit``: close the new connection, after ``closeDelay`` if set.

        As Envoy's connection limit filter: the connection is accepted, then
        closed. Connections waiting out the delay are bounded by the limit
        too; past it they are closed at once.
        """
        self.refused += 1
        if self.on_refused is not None:
            self.on_refused()
        delay = self.runtime.close_delay
        limit = self.runtime.connection_limit or 0
        if delay <= 0 or self._closing >= limit:
            conn.close()
            return
        self._closing += 1
        connections.start_soon(self._close_later, conn, delay)

    async def _close_later(self, conn: socket.socket, delay: float) -> None:
        try:
            await trio.sleep(delay)
        finally:
            self._closing -= 1
            conn.close()

    async def _run_connection(self, stream: trio.SocketStream, peer: Peer) -> None:
        try:
            assert self.handler is not None, "PortServer.handler is set before serve()"
            await self.handler(stream, peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            log.exception("connection on %s failed", self.key)
        finally:
            self.active -= 1
            await close_now(stream)

    def stop(self, grace: float) -> None:
        """Stop accepting now; cancel connections still open after ``grace`` seconds."""
        self._accepting.cancel()
        for hook in self.on_stop:
            hook(grace)
        if self._connections is not None:
            self._connections.cancel_scope.deadline = min(
                self._connections.cancel_scope.deadline, trio.current_time() + grace
            )


class DatagramPortServer:
    """Serves one UDP socket; stopping it ends every session at once (UDP has no drain)."""

    def __init__(
        self,
        sock: trio.socket.SocketType,
        runtime: PortRuntime,
        relay: Callable[[trio.socket.SocketType, Callable[[], L4Table]], Awaitable[object]],
    ) -> None:
        self.sock = sock
        self.runtime = runtime
        self._relay = relay
        self._scope = trio.CancelScope()
        self.done = trio.Event()

    @property
    def key(self) -> tuple[str, str, int]:
        return self.runtime.port.bind_key

    async def serve(self) -> None:
        try:
            with self._scope:
                await self._relay(self.sock, self._table)
        finally:
            self.done.set()

    def _table(self) -> L4Table:
        table = self.runtime.l4
        assert table is not None
        return table

    def stop(self, grace: float) -> None:
        del grace
        self._scope.cancel()


def quic_runtimes(runtimes: dict[tuple[str, str, int], PortRuntime]) -> dict[Any, PortRuntime]:
    """The UDP bind keys HTTP/3 needs, for the TCP ports with a listener that serves it.

    A UDP listener (UDPRoute) on the same address and port keeps the socket;
    HTTP/3 is then not served there.
    """
    extra: dict[Any, PortRuntime] = {}
    for (transport, address, number), runtime in runtimes.items():
        if transport != "tcp" or runtime.tls is None or runtime.http is None:
            continue
        if not any(serves_http3(ln) for ln in runtime.port.listeners):
            continue
        key = ("udp", address, number)
        if key in runtimes:
            log.warning("HTTP/3 on %s:%d: a UDP listener holds the port", address, number)
            continue
        extra[key] = runtime
    return extra
