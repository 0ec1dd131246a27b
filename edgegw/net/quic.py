"""HTTP/3's UDP side: one QUIC socket per HTTPS port whose listeners have ``http3: {}``.

Theory of operation
-------------------
``QuicPortServer`` owns the serving of one UDP socket bound to the same
address and port as an HTTPS listener's TCP socket (``ports.quic_runtimes`` adds
its bind key at reload, so the socket set binds and releases it like any
other, and a live reload that removes the policy stops it). One task reads
datagrams without blocking and routes each by its Destination Connection ID:

- a known connection: ``H3ServerConnection.datagram_received`` (synchronous);
- an unknown ID: only a client Initial of at least 1200 bytes may open a
  connection (RFC 9000 section 14.1: the server's answer then cannot
  amplify an attacker's spoofed source more than threefold), and only
  while the port holds fewer than ``max_connections``. An unsupported
  version gets a Version Negotiation packet; while more than
  ``retry_above`` handshakes are under way, a Retry asks the client to
  prove its address first (aioquic's stateless token, an AES-GCM seal);
- everything else (short headers for unknown IDs, garbage, a client's
  stray Handshake packet) is dropped without an answer.

Before the connection exists its SNI is read from the Initial packets
(``proto/quichello.py``), so that it gets the certificate the TCP listener
of that name serves (the runtime's ``ServerTLS`` picks the listener, as for
TCP); a name whose listener has no HTTP/3 gets no connection. At most
``_MAX_PENDING`` would-be connections wait for the rest of a ClientHello,
each for at most ``_PENDING_TIMEOUT``.

Each connection runs in the port's nursery (``H3ServerConnection.run``).
Datagrams leave through a non-blocking ``sendto``; when the socket buffer is
full a datagram is dropped, as a congested router would, and QUIC's loss
recovery resends it. The port's socket is a duplicate of the one the socket
set holds, so a stop drains: new connections are refused at once, idle ones
are closed, busy ones finish their streams within the grace, and the
duplicate is closed last.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import trio
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import (
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edgegw import ir
from edgegw.net.context import HTTPConnectionContext
from edgegw.net.h3server import H3Limits, H3ServerConnection
from edgegw.net.ports import PortRuntime
from edgegw.net.tls_client import cert_name_matches
from edgegw.proto.quichello import InitialReader
from edgegw.routing.http3 import serves_http3

log = logging.getLogger("edgegw.net.quic")

H3_ALPN = ["h3"]
_CID_LENGTH = 8
_MIN_INITIAL = 1200  # RFC 9000 section 14.1
_MAX_PENDING = 256
_PENDING_TIMEOUT = 2.0
_RECV_BATCH = 64
_STREAM_WINDOW = 256 * 1024
_VERSIONS = QuicConfiguration().supported_versions
_VERSION_BYTES = frozenset(v.to_bytes(4, "big") for v in _VERSIONS)

ContextFactory = Callable[[tuple[str, int], str], HTTPConnectionContext]


class _Pending:
    """A would-be connection waiting for the rest of its ClientHello."""

    __slots__ = ("datagrams", "odcid", "reader", "rscid", "since")

    def __init__(self, reader: InitialReader, odcid: bytes, rscid: bytes | None) -> None:
        self.reader = reader
        self.odcid = odcid  # original destination connection ID
        self.rscid = rscid  # retry source connection ID, after a Retry
        self.datagrams: list[tuple[bytes, Any]] = []
        self.since = trio.current_time()


class QuicPortServer:
    """Serves HTTP/3 on one UDP socket until stopped; see the module docstring."""

    def __init__(
        self,
        key: tuple[str, str, int],
        sock: trio.socket.SocketType,
        runtime: PortRuntime,
        limits: H3Limits | None = None,
    ) -> None:
        self.key = key
        self.sock = sock
        self.runtime = runtime
        self.limits = limits or H3Limits()
        self.contexts: ContextFactory | None = None  # set before serve()
        self.on_stop: list[Callable[[float], None]] = []
        self.on_connection: Callable[[int], None] = _ignore  # +1 opened, -1 closed
        self.connections: dict[bytes, H3ServerConnection] = {}  # by every connection ID
        self.active: set[H3ServerConnection] = set()
        self.dropped = 0
        self._pending: dict[bytes, _Pending] = {}
        self._retry = QuicRetryTokenHandler()
        self._io: socket.socket | None = None
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        self.done = trio.Event()

    # --- serving ----------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read datagrams until ``stop()``, then until the connections drained."""
        io = self._io = socket.socket(fileno=os.dup(self.sock.fileno()))
        io.setblocking(False)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                if self._stopping:  # stopped before it started (a reload right after one)
                    nursery.cancel_scope.cancel()
                await self._receive_loop(io)
        finally:
            io.close()
            self.done.set()

    async def _receive_loop(self, io: socket.socket) -> None:
        received = 0
        while True:
            try:
                data, addr = io.recvfrom(65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(io)
                continue
            except OSError as exc:  # an ICMP error from an earlier send: not fatal
                log.debug("QUIC on %s: %s", self.key, exc)
                continue
            self.datagram_received(data, addr)
            received += 1
            if received % _RECV_BATCH == 0:
                await trio.lowlevel.checkpoint()

    def stop(self, grace: float) -> None:
        """Refuse new connections now; drain the others for at most ``grace`` seconds."""
        self._stopping = True
        self._pending.clear()
        for hook in self.on_stop:
            hook(grace)
        nursery = self._nursery
        if nursery is not None:
            nursery.cancel_scope.deadline = min(
                nursery.cancel_scope.deadline, trio.current_time() + grace
            )
            if not self.active:
                nursery.cancel_scope.cancel()

    def send(self, data: bytes, addr: Any) -> None:
        """One datagram out, never waiting: a full socket buffer drops it (QUIC resends)."""
        if self._io is None:
            return
        try:
            self._io.sendto(data, addr)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                log.debug("QUIC send to %s: %s", addr, exc)
            self.dropped += 1

    # --- datagrams --------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Route one datagram (see the module docstring); never raises for its content."""
        if len(data) >= _MIN_INITIAL and data[0] & 0x80 and data[1:5] not in _VERSION_BYTES:
            self._negotiate_version(data, addr)
            return
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=_CID_LENGTH)
        except Exception:  # garbage: aioquic's parser raises ValueError and buffer errors
            self.dropped += 1
            return
        conn = self.connections.get(header.destination_cid)
        if conn is not None:
            conn.datagram_received(data, addr)
            return
        if (
            self._stopping
            or header.packet_type != QuicPacketType.INITIAL
            or len(data) < _MIN_INITIAL
            or header.version is None
        ):
            self.dropped += 1
            return
        self._initial(header, data, addr)

    def _initial(self, header: Any, data: bytes, addr: Any) -> None:
        pending = self._pending.get(header.destination_cid)
        if pending is None:
            pending = self._admit(header, addr)
            if pending is None:
                return
        pending.datagrams.append((data, addr))
        if pending.reader.feed(data):
            del self._pending[header.destination_cid]
            if pending.reader.failed:
                self.dropped += len(pending.datagrams)
                return
            self._open(header.destination_cid, pending, addr)

    def _negotiate_version(self, data: bytes, addr: Any) -> None:
        """A long header of a version we do not speak: Version Negotiation (RFC 9000 6.1).

        Read by the version-independent invariants (RFC 8999 section 5.1), since
        the rest of an unknown version's header means nothing; a Version
        Negotiation packet (version 0) is never answered.
        """
        dcid_end = 6 + data[5]
        if data[1:5] == b"\0\0\0\0" or data[5] > 20 or len(data) <= dcid_end:
            self.dropped += 1
            return
        scid_length = data[dcid_end]
        if scid_length > 20:
            self.dropped += 1
            return
        dcid, scid = data[6:dcid_end], data[dcid_end + 1 : dcid_end + 1 + scid_length]
        packet = encode_quic_version_negotiation(
            source_cid=dcid, destination_cid=scid, supported_versions=_VERSIONS
        )
        self.send(packet, addr)

    def _admit(self, header: Any, addr: Any) -> _Pending | None:
        """A first Initial: capacity, address validation; a reader for its hello."""
        if len(self.active) >= self.limits.max_connections or not self._room_to_wait():
            self.dropped += 1
            return None
        odcid, rscid = header.destination_cid, None
        if self._handshakes() >= self.limits.retry_above:
            if not header.token:
                self._send_retry(header, addr)
                return None
            try:
                odcid = self._retry.validate_token(
                    address=addr,
                    destination_cid=header.destination_cid,
                    token=header.token,
                    now=trio.current_time(),
                )
            except ValueError:
                self.dropped += 1
                return None
            rscid = header.destination_cid
        reader = InitialReader(header.destination_cid, header.version)
        pending = self._pending[header.destination_cid] = _Pending(reader, odcid, rscid)
        return pending

    def _room_to_wait(self) -> bool:
        if len(self._pending) < _MAX_PENDING:
            return True
        old = trio.current_time() - _PENDING_TIMEOUT
        for cid in [c for c, p in self._pending.items() if p.since < old]:
            del self._pending[cid]
        return len(self._pending) < _MAX_PENDING

    def _handshakes(self) -> int:
        return len(self._pending) + sum(1 for c in self.active if not c.handshake_done)

    def _send_retry(self, header: Any, addr: Any) -> None:
        source_cid = os.urandom(_CID_LENGTH)
        token = self._retry.create_token(
            address=addr,
            original_destination_connection_id=header.destination_cid,
            retry_source_connection_id=source_cid,
            now=trio.current_time(),
        )
        retry = encode_quic_retry(
            version=header.version,
            source_cid=source_cid,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=token,
        )
        self.send(retry, addr)

    # --- connections ------------------------------------------------------------------------

    def _open(self, dcid: bytes, pending: _Pending, addr: Any) -> None:
        """The ClientHello is read: a connection with the certificate its SNI selects."""
        chosen = self._listener_for(pending.reader.server_name)
        if chosen is None or self.contexts is None or self._nursery is None:
            self.dropped += len(pending.datagrams)
            return
        listener, certificate = chosen
        ctx = self.contexts((addr[0], addr[1]), listener.key)
        try:
            configuration = _configuration(certificate, ctx.limits.keepalive_timeout, self.limits)
        except ValueError as exc:
            log.error("HTTP/3 on %s: certificate of %s: %s", self.key, listener.key, exc)
            return
        quic = QuicConnection(
            configuration=configuration,
            original_destination_connection_id=pending.odcid,
            retry_source_connection_id=pending.rscid,
        )
        conn = H3ServerConnection(quic, self.send, ctx, self.limits)
        conn.on_cid = functools.partial(self._on_cid, conn)
        self.connections[dcid] = conn
        self.connections[quic.host_cid] = conn
        self.active.add(conn)
        self._nursery.start_soon(self._run_connection, conn)
        for data, source in pending.datagrams:
            conn.datagram_received(data, source)

    def _listener_for(self, server_name: str | None) -> tuple[ir.Listener, ir.Certificate] | None:
        server_tls = self.runtime.tls
        listener = server_tls.select_listener(server_name) if server_tls is not None else None
        if listener is None or not serves_http3(listener) or listener.tls is None:
            return None
        return listener, _certificate_for(listener.tls.certificates, server_name)

    def _on_cid(self, conn: H3ServerConnection, cid: bytes, issued: bool) -> None:
        if not issued:
            self.connections.pop(cid, None)
        elif conn in self.active:
            self.connections[cid] = conn

    async def _run_connection(self, conn: H3ServerConnection) -> None:
        self.on_connection(1)
        try:
            await conn.run()
        except Exception:
            log.exception("HTTP/3 connection on %s failed", self.key)
        finally:
            self.on_connection(-1)
            self.active.discard(conn)
            for cid in [cid for cid, c in self.connections.items() if c is conn]:
                del self.connections[cid]
            if self._stopping and not self.active and self._nursery is not None:
                self._nursery.cancel_scope.cancel()


def _ignore(_: int) -> None:
    pass


def _certificate_for(certificates: tuple[ir.Certificate, ...], name: str | None) -> ir.Certificate:
    """The listener's certificate for ``name``: an exact SAN, then a wildcard, else the first."""
    if name:
        name = name.rstrip(".").lower()
        for wildcard_ok in (False, True):
            for cert in certificates:
                names = [n.lower() for n in cert.names]
                if any(cert_name_matches(n, name) if wildcard_ok else n == name for n in names):
                    return cert
    return certificates[0]


@functools.lru_cache(maxsize=64)
def _material(chain_pem: bytes, key_pem: bytes) -> tuple[Any, list[Any], Any]:
    """Parsed certificate chain and key, cached while the PEM bytes stay the same.

    Raises:
        ValueError: the PEM does not parse.
    """
    chain = x509.load_pem_x509_certificates(chain_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    return chain[0], chain[1:], key


def _configuration(
    certificate: ir.Certificate, idle_timeout: float, limits: H3Limits
) -> QuicConfiguration:
    leaf, chain, key = _material(certificate.chain_pem, certificate.key_pem)
    return QuicConfiguration(
        is_client=False,
        alpn_protocols=H3_ALPN,
        certificate=leaf,
        certificate_chain=chain,
        private_key=key,
        idle_timeout=idle_timeout,
        max_data=limits.body_buffer,
        max_stream_data=_STREAM_WINDOW,
        connection_id_length=_CID_LENGTH,
    )
