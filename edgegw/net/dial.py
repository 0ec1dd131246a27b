"""The one dialler: TCP, unix sockets, UDP and TLS to backends, names through one DNS cache.

HTTP (``UpstreamPool``), WebSocket tunnels, TCP/TLS passthrough (``net/tcp.py``)
and UDP (``net/udp.py``) all reach endpoints through a ``Dialer``; so an
``fqdn`` endpoint resolves the same way (cached, both families, in resolver
order) for every protocol, and tests swap the dialler for memory streams
(``tests/net``) to run the proxy without sockets.

The dialler raises what the libraries raise (``OSError``, ``ResolveError``,
``ssl.SSLError``, ``trio.BrokenResourceError``); callers translate at their
own boundary (the pool into ``ConnectError``, the L4 relays into a log
line), and bound it with their own connect timeout.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

import trio

from edgegw import ir
from edgegw.net.dns import DNSCache


class Dialer:
    """Opens connections to endpoints; one per process, shared by every protocol."""

    def __init__(
        self, dns: DNSCache | None = None, *, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self.dns = dns or DNSCache(clock=clock)

    async def open_stream(self, endpoint: ir.Endpoint) -> trio.abc.Stream:
        """A byte stream to ``endpoint`` (TCP or a unix socket); names resolved first.

        Raises:
            OSError: the connection failed.
            ResolveError: the name does not resolve.
        """
        if endpoint.kind == "unix":
            return await trio.open_unix_socket(endpoint.address)
        if endpoint.kind == "fqdn":
            return await _open_first(await self.dns.resolve(endpoint.address), endpoint.port)
        return await trio.open_tcp_stream(endpoint.address, endpoint.port)

    async def start_tls(
        self, stream: trio.abc.Stream, context: ssl.SSLContext, server_name: str | None
    ) -> trio.SSLStream[trio.abc.Stream]:
        """TLS over ``stream``, handshake done; ``stream`` is closed when it fails.

        Raises:
            ssl.SSLError, trio.BrokenResourceError, OSError: the handshake failed.
        """
        wrapped = trio.SSLStream(stream, context, server_hostname=server_name)
        try:
            await wrapped.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return wrapped

    async def open_datagram(self, endpoint: ir.Endpoint) -> socket.socket:
        """A non-blocking UDP socket connected to ``endpoint``.

        Raises:
            OSError: no address, or the socket could not be made.
            ResolveError: the name does not resolve.
        """
        host = endpoint.address
        if endpoint.kind == "fqdn":
            host = (await self.dns.resolve(endpoint.address))[0]
        infos = await trio.socket.getaddrinfo(host, endpoint.port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock


async def _open_first(addresses: tuple[str, ...], port: int) -> trio.abc.Stream:
    error: OSError | None = None
    for address in addresses:
        try:
            return await trio.open_tcp_stream(address, port)
        except OSError as exc:
            error = exc
    raise error or OSError("no addresses")
