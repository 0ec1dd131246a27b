"""From an accepted connection to the protocol that serves it.

Theory of operation
-------------------
What a port serves is decided per connection, from the port's runtime at the
moment of accept (a reload may turn an HTTP port into an HTTPS one):

- HTTP listeners: HTTP/1.1, or h2c when the first bytes are the HTTP/2
  prior-knowledge preface (peeked, not consumed).
- HTTPS and TLS listeners (they may share a port): the ClientHello is read
  without terminating TLS. If its SNI selects a TLS Passthrough listener, the
  raw bytes are relayed to the TLSRoute's backend; otherwise TLS is
  terminated here with the bytes already read, and the listener the SNI
  selected decides: HTTPS → HTTP/2 (ALPN "h2") or HTTP/1.1, TLS Terminate →
  a TCP relay. Anything that is not a ClientHello is closed without a word
  (no alert).
- TCP listeners: a TCP relay. UDP ports are not connection-based; the
  supervisor runs ``net.udp.serve_udp`` for them.

``compile_runtime`` builds a port's runtime off the hot path, at reload.
``PortServices`` holds what a port's connections share across reloads: the
drain signals, and the contexts that read the port's current runtime.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from edgegw import ir, routing
from edgegw.certificates.challenges import Challenges
from edgegw.net import bufferlimit, h2server, http, tcp, tls
from edgegw.net.context import DrainSignal, HTTPConnectionContext, HTTPLimits
from edgegw.net.jwks import JWKSStore
from edgegw.net.oidc import OIDCProviders
from edgegw.net.oidckey import load_or_create
from edgegw.net.ports import Peer, PortRuntime, PortServer
from edgegw.net.upstream import UpstreamPool
from edgegw.observe import Observer
from edgegw.policy.xfcc import PeerCertificate
from edgegw.proto import proxyproto
from edgegw.proto.http2 import H2Limits
from edgegw.routing import l4

if TYPE_CHECKING:
    from edgegw.net.quic import QuicPortServer

log = logging.getLogger("edgegw.net")

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTPS"})
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
L4_PROTOCOLS = frozenset({"HTTPS", "TLS", "TCP", "UDP"})
H2_ALPN = ("h2", "http/1.1")
_DEFAULT_LIMITS = HTTPLimits()


def compile_runtime(port: ir.Port) -> PortRuntime:
    """Routing tables and TLS contexts for one port, built at reload."""
    protocols = frozenset(listener.protocol for listener in port.listeners)
    policies = [ln.client_policy for ln in port.listeners if ln.client_policy is not None]
    terminates = any(
        ln.protocol in TLS_PROTOCOLS and ln.tls is not None and ln.tls.mode == "Terminate"
        for ln in port.listeners
    )
    return PortRuntime(
        port=port,
        http=routing.compile_port(port) if protocols & HTTP_PROTOCOLS else None,
        l4=l4.compile_l4(port) if protocols & L4_PROTOCOLS else None,
        tls=tls.build_server_tls(port, alpn=H2_ALPN) if terminates else None,
        protocols=protocols,
        proxy_protocol=any(listener.proxy_protocol_accept for listener in port.listeners),
        keepalive=next((p.tcp_keepalive for p in policies if p.tcp_keepalive), None),
        http_limits=_http_limits(policies),
        **_connection_settings(policies),
    )


def _http_limits(policies: list[ir.ClientPolicy]) -> HTTPLimits | None:
    """ClientTrafficPolicy ``timeout.http`` (idle, requestReceived), ``http1.enableTrailers``,
    ``http1.preserveHeaderCase``.

    Envoy Gateway merges the listeners of one port into one Envoy listener,
    so connection settings are per port; the first listener's policy wins.
    """
    idle = next((p.idle_timeout for p in policies if p.idle_timeout), None)
    trailers = next((p.http1_trailers for p in policies if p.http1_trailers is not None), None)
    whole = next((p.request_received_timeout for p in policies if p.request_received_timeout), 0.0)
    case = any(p.preserve_header_case for p in policies)
    if not idle and trailers is None and not whole and not case:
        return None
    limits = HTTPLimits(keepalive_timeout=idle) if idle else _DEFAULT_LIMITS
    if trailers is not None:
        limits = dataclasses.replace(limits, trailers=trailers)
    if case:
        limits = dataclasses.replace(limits, preserve_case=True)
    if whole:  # the head too must come by then
        head = min(limits.header_timeout, whole)
        limits = dataclasses.replace(limits, request_timeout=whole, header_timeout=head)
    return limits


def _connection_settings(policies: list[ir.ClientPolicy]) -> dict[str, Any]:
    """The port's connection limit, buffer limit, TCP idle time, HTTP/2 settings and default
    Host.

    Per port, as ``_http_limits``: the first listener's policy that sets each wins.
    """
    out: dict[str, Any] = {}
    limited = next((p for p in policies if p.connection_limit), None)
    if limited is not None:
        out["connection_limit"] = limited.connection_limit
        out["close_delay"] = limited.close_delay or 0.0
    idle = next((p.tcp_idle_timeout for p in policies if p.tcp_idle_timeout), None)
    if idle:
        out["tcp_idle_timeout"] = idle
    h2 = next((p.http2 for p in policies if p.http2), None)
    buffered = next((p.buffer_limit for p in policies if p.buffer_limit), None)
    if buffered:
        out["buffer_limit"] = buffered
        out["read_size"] = bufferlimit.read_size(buffered)
    if h2 is not None or buffered:
        out["h2_limits"] = _h2_limits(h2 or ir.HTTP2Options(), buffered)
    out["default_host"] = next((p.default_host for p in policies if p.default_host), None)
    return out


def _h2_limits(options: ir.HTTP2Options, buffer_limit: int | None) -> H2Limits:
    """ClientTrafficPolicy ``http2``: our SETTINGS and connection window, else edgegw's own
    (windows bounded by ``connection.bufferLimit`` where one is set); ``onInvalidMessage``."""
    base = H2Limits()
    base = dataclasses.replace(
        base,
        max_concurrent_streams=options.max_concurrent_streams or base.max_concurrent_streams,
        malformed_ends_connection=options.terminate_connection,
    )
    stream = options.initial_stream_window_size
    connection = options.initial_connection_window_size
    if buffer_limit:
        return bufferlimit.h2_limits(
            base, buffer_limit, stream_window=stream, connection_window=connection
        )
    return dataclasses.replace(
        base,
        initial_window_size=stream or base.initial_window_size,
        connection_window_size=connection or base.connection_window_size,
    )


def set_keepalive(sock: trio.socket.SocketType, keepalive: ir.TCPKeepalive) -> None:
    """SO_KEEPALIVE with Envoy Gateway's knobs; unset ones keep the kernel's defaults."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if keepalive.idle_time:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, int(keepalive.idle_time))
        if keepalive.interval:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, int(keepalive.interval))
        if keepalive.probes:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, keepalive.probes)
    except OSError as exc:  # a connection reset before we got to it
        log.debug("tcpKeepalive: %s", exc)


class ServedPort(Protocol):
    """A port's server as ``PortServices`` sees it: a TCP ``PortServer`` or a QUIC one."""

    @property
    def key(self) -> tuple[str, str, int]: ...

    runtime: PortRuntime
    on_stop: list[Callable[[float], None]]


class PortServices:
    """What one port's connections share, across reloads, until the port is removed."""

    def __init__(self, dispatcher: Dispatcher, server: ServedPort) -> None:
        self.dispatcher = dispatcher
        self.server = server
        _, address, port = server.key
        self.label = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        self.http_drain = DrainSignal()
        self.tcp = tcp.TCPContext(
            table=self._l4_table,
            limits=dispatcher.tcp_limits,
            stats=dispatcher.tcp_stats,
            dialer=dispatcher.upstreams.dialer,
        )

    def _port_table(self) -> routing.PortTable:
        """The current generation's HTTP routing table (called once per request)."""
        table = self.server.runtime.http
        assert table is not None
        return table

    def _l4_table(self) -> l4.L4Table:
        table = self.server.runtime.l4
        assert table is not None
        return table

    def drain(self, grace: float) -> None:
        self.http_drain.start()
        self.tcp.drain.start(grace)

    def http_context(
        self, peer: Peer, scheme: str, sni_listener: str | None
    ) -> HTTPConnectionContext:
        runtime = self.server.runtime
        return HTTPConnectionContext(
            port_table=self._port_table,
            pool=self.dispatcher.upstreams,
            client=peer,
            scheme="https" if scheme == "https" else "http",
            sni_listener=sni_listener,
            drain=self.http_drain,
            observer=self.dispatcher.observer,
            background=self.dispatcher.background,
            challenges=self.dispatcher.challenges if scheme == "http" else None,
            limits=runtime.http_limits or _DEFAULT_LIMITS,
            jwks=self.dispatcher.jwks,
            oidc=self.dispatcher.oidc,
            h2_limits=runtime.h2_limits,
            default_host=runtime.default_host,
            read_size=runtime.read_size,
            buffer_limit=runtime.buffer_limit,
        )

    def tcp_context(self) -> tcp.TCPContext:
        """The TCP relay context, with the port's ClientTrafficPolicy ``timeout.tcp.idleTimeout``.

        A copy only when the policy sets it; the limits, drain and stats stay shared.
        """
        idle = self.server.runtime.tcp_idle_timeout
        return self.tcp if idle is None else dataclasses.replace(self.tcp, idle_timeout=idle)


class Dispatcher:
    """Serves each accepted connection with the protocol its port runs."""

    def __init__(
        self,
        observer: Observer,
        background: trio.Nursery | None = None,
        challenges: Challenges | None = None,
        oidc_key: bytes = b"",
    ) -> None:
        self.observer = observer
        self.background = background
        self.challenges = challenges
        self.upstreams = UpstreamPool()
        self.jwks = (
            JWKSStore(self.upstreams, background, observer.jwks_fetched) if background else None
        )
        self.oidc = (
            OIDCProviders(self.upstreams, background, oidc_key or load_or_create(None))
            if background
            else None
        )
        self.tcp_limits = tcp.ConnectionLimits()
        self.tcp_stats = tcp.RelayStats()

    def attach(self, server: PortServer) -> PortServices:
        """Per-port shared state; ``server.stop`` drains it."""
        services = PortServices(self, server)
        server.on_stop.append(services.drain)
        server.on_refused = functools.partial(self.observer.connection_refused, services.label)
        return services

    def attach_quic(self, server: QuicPortServer) -> PortServices:
        """The same for HTTP/3's UDP socket: its connections get HTTPS contexts.

        They are counted in ``edgegw_connections_active`` under the port's
        label with ``/udp`` after it.
        """
        services = PortServices(self, server)
        server.on_stop.append(services.drain)
        label = f"{services.label}/udp"

        def counted(delta: int) -> None:
            if delta > 0:
                self.observer.connection_opened(label)
            else:
                self.observer.connection_closed(label)

        server.contexts = lambda peer, listener: services.http_context(peer, "https", listener)
        server.on_connection = counted
        return services

    async def handle(self, stream: trio.SocketStream, peer: Peer, services: PortServices) -> None:
        """Serve one accepted connection, counted in ``edgegw_connections_active``.

        ``peer`` is the client's address as accept(2) gave it.
        """
        label = services.label
        self.observer.connection_opened(label)
        try:
            await self._serve(stream, peer, services)
        finally:
            self.observer.connection_closed(label)

    async def _serve(self, stream: trio.SocketStream, peer: Peer, services: PortServices) -> None:
        runtime = services.server.runtime
        protocols = runtime.protocols
        if runtime.keepalive is not None:
            set_keepalive(stream.socket, runtime.keepalive)
        if protocols & TLS_PROTOCOLS:
            await self._serve_tls_port(stream, peer, services, runtime)
        elif "HTTP" in protocols:
            await self._serve_http_port(stream, peer, services, runtime)
        elif "TCP" in protocols:
            await tcp.serve_tcp_connection(stream, services.tcp_context())

    async def _serve_http_port(
        self, stream: trio.SocketStream, peer: Peer, services: PortServices, runtime: PortRuntime
    ) -> None:
        """HTTP/1.1 or h2c, after the PROXY header where the port requires one."""
        origin, received = None, b""
        if runtime.proxy_protocol:
            with trio.move_on_after(services.tcp.handshake_timeout) as scope:
                try:
                    origin, received = await tcp.accept_proxy(stream, required=True)
                except proxyproto.ProxyProtocolError as exc:
                    log.debug("closing an HTTP connection: %s", exc)
                    return
            if scope.cancelled_caught:
                return
        ctx = services.http_context(origin[0] if origin else peer, "http", None)
        await http.serve_http_connection(
            stream, ctx, h2c=h2server.serve_h2_connection, received=received
        )

    async def _serve_tls_port(
        self, stream: trio.SocketStream, peer: Peer, services: PortServices, runtime: PortRuntime
    ) -> None:
        sniffed, origin = await tcp.read_tls_start(
            stream, runtime.l4, services.tcp.handshake_timeout
        )
        if sniffed is None or sniffed.hello is None:
            return  # not TLS, malformed or too slow: close without an alert
        hello = sniffed.hello
        if self.challenges and (
            alpn := self.challenges.alpn_context(hello.server_name, hello.alpn)
        ):
            return await tls.answer_tls_alpn01(stream, alpn, received=sniffed.data)
        listener = runtime.l4.listener_for_sni(sniffed.hello.server_name) if runtime.l4 else None
        if listener is not None and listener.tls is not None and listener.tls.mode == "Passthrough":
            await tcp.serve_tls_passthrough(
                stream, services.tcp_context(), sniffed=sniffed, origin=origin
            )
            return
        if runtime.tls is None:
            return
        session = await tls.accept_tls(stream, runtime.tls, received=sniffed.data)
        if session is None:
            return
        if session.listener.protocol == "HTTPS":
            client = origin[0] if origin else peer  # the PROXY header's, where accepted
            ctx = services.http_context(client, "https", session.listener.key)
            if session.peer_certificate is not None:
                ctx.client_cert = PeerCertificate(
                    session.peer_certificate, session.peer_chain, session.local_certificate
                )
            if session.alpn == "h2":
                await h2server.serve_h2_connection(session.stream, ctx)
            else:
                await http.serve_http_connection(session.stream, ctx)
            return
        match = runtime.l4.route_for_sni(session.server_name) if runtime.l4 else None
        if match is not None:  # TLS Terminate: plain TCP to the TLSRoute's backend
            await tcp.relay_to_route(session.stream, services.tcp_context(), match, origin=origin)
        await trio.aclose_forcefully(session.stream)
