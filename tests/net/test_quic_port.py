"""HTTP/3's UDP side before a connection exists: who gets one, with which certificate.

``QuicPortServer`` is fed datagrams directly and its ``send`` is captured, so aioquic's
client talks to it in memory under a virtual clock (its own socket is bound but never
used). Checked: each SNI gets its listener's certificate (the client verifies it), a name
whose listener has no HTTP/3 gets no connection, address validation by Retry, Version
Negotiation for an unknown version, and the connection limit.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trustme
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from edgegw import ir
from edgegw.net.context import HTTPConnectionContext
from edgegw.net.dispatch import compile_runtime
from edgegw.net.h3server import H3Limits
from edgegw.net.quic import QuicPortServer
from edgegw.net.upstream import UpstreamPool
from tests.h3client import H3Client

CEILING = 20
SERVER = ("192.0.2.1", 443)


def _listener(name: str, host: str, ca: trustme.CA, *, http3: bool) -> ir.Listener:
    cert = ca.issue_cert(host)
    tls = ir.ListenerTLS(
        certificates=(
            ir.Certificate(
                chain_pem=b"".join(blob.bytes() for blob in cert.cert_chain_pems),
                key_pem=cert.private_key_pem.bytes(),
                names=(host,),
            ),
        )
    )
    policy = ir.ClientPolicy(name="default/p", http3=http3)
    return ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name=name,
        protocol="HTTPS",
        port=443,
        hostname=host,
        tls=tls,
        client_policy=policy,
    )


class Clients:
    """Memory UDP sockets for any number of clients of one ``QuicPortServer``."""

    def __init__(self, server: QuicPortServer) -> None:
        self.server = server
        self.inboxes: dict[Any, trio.MemorySendChannel[tuple[bytes, Any]]] = {}
        self.sent: list[tuple[bytes, Any]] = []
        server.send = self._send  # type: ignore[method-assign]

    def _send(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))
        inbox = self.inboxes.get(addr)
        if inbox is not None:
            inbox.send_nowait((data, SERVER))

    def socket(self, addr: Any) -> Any:
        send, receive = trio.open_memory_channel[tuple[bytes, Any]](math.inf)
        self.inboxes[addr] = send
        server = self.server

        class Sock:
            async def sendto(self, data: bytes, to: Any) -> None:
                await trio.lowlevel.checkpoint()
                server.datagram_received(data, addr)

            async def recvfrom(self, size: int) -> tuple[bytes, Any]:
                return await receive.receive()

        return Sock()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@asynccontextmanager
async def serving(ca: trustme.CA, limits: H3Limits) -> AsyncIterator[Clients]:
    port = ir.Port(
        address="127.0.0.1",
        port=443,
        listeners=(
            _listener("a", "a.example.com", ca, http3=True),
            _listener("b", "b.example.org", ca, http3=True),
            _listener("tcp-only", "c.example.net", ca, http3=False),
        ),
    )
    runtime = compile_runtime(port)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))  # never written to: datagrams come in memory
    server = QuicPortServer(("udp", "127.0.0.1", 443), sock, runtime, limits)

    def context(peer: tuple[str, int], listener: str) -> HTTPConnectionContext:
        table = runtime.http
        assert table is not None
        return HTTPConnectionContext(
            port_table=lambda: table,
            pool=UpstreamPool(),
            client=peer,
            scheme="https",
            sni_listener=listener,
        )

    server.contexts = context
    clients = Clients(server)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            yield clients
            server.stop(0)
    finally:
        sock.close()


@asynccontextmanager
async def client(clients: Clients, name: str, cafile: str, addr: Any) -> AsyncIterator[H3Client]:
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=name)
    config.load_verify_locations(cafile)
    quic = QuicConnection(configuration=config)
    quic.connect(SERVER, now=trio.current_time())
    h3 = H3Client(clients.socket(addr), quic)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h3.run)
        with trio.move_on_after(5):  # a refused client hears nothing: its wait ends here
            await h3.connected.wait()
        yield h3
        nursery.cancel_scope.cancel()


async def test_each_name_gets_its_listener_and_certificate(
    ca: trustme.CA, cafile: str, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(CEILING):
        async with serving(ca, H3Limits()) as clients:
            for name, addr in (
                ("a.example.com", ("192.0.2.7", 1)),
                ("b.example.org", ("192.0.2.7", 2)),
            ):
                async with client(clients, name, cafile, addr) as h3:
                    assert h3.terminated is None, h3.terminated
                    assert (await h3.request("GET", "/", name)).status == 404
                    # the listener the SNI chose: another name on it is misdirected
                    other = "b.example.org" if name == "a.example.com" else "a.example.com"
                    assert (await h3.request("GET", "/", other)).status == 421


async def test_a_name_whose_listener_has_no_http3_gets_no_connection(
    ca: trustme.CA, cafile: str, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(CEILING):
        async with serving(ca, H3Limits()) as clients:
            async with client(clients, "c.example.net", cafile, ("192.0.2.7", 3)) as h3:
                assert not h3.connected.is_set()
            assert clients.sent == []
            assert not clients.server.active


async def test_retry_validates_the_address_before_a_connection(
    ca: trustme.CA, cafile: str, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(CEILING):
        async with serving(ca, H3Limits(retry_above=0)) as clients:
            async with client(clients, "a.example.com", cafile, ("192.0.2.7", 4)) as h3:
                assert h3.terminated is None
                assert (await h3.request("GET", "/", "a.example.com")).status == 404
            first = pull_quic_header(Buffer(data=clients.sent[0][0]), host_cid_length=8)
            assert first.packet_type == QuicPacketType.RETRY


async def test_an_unknown_version_gets_version_negotiation(
    ca: trustme.CA, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(CEILING):
        async with serving(ca, H3Limits()) as clients:
            clients.server.datagram_received(
                b"\xc0\x1a\x2a\x3a\x4a\x08" + os.urandom(8) + b"\x08" + os.urandom(1300),
                ("192.0.2.7", 5),
            )
            ((reply, addr),) = clients.sent
            header = pull_quic_header(Buffer(data=reply), host_cid_length=8)
            assert header.packet_type == QuicPacketType.VERSION_NEGOTIATION
            assert 0x00000001 in header.supported_versions
            assert addr == ("192.0.2.7", 5)
            assert not clients.server.active


async def test_connections_past_the_limit_are_not_opened(
    ca: trustme.CA, cafile: str, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(CEILING):
        async with (
            serving(ca, H3Limits(max_connections=1)) as clients,
            client(clients, "a.example.com", cafile, ("192.0.2.7", 6)) as first,
        ):
            assert first.terminated is None
            async with client(clients, "a.example.com", cafile, ("192.0.2.7", 7)) as second:
                assert not second.connected.is_set()
            assert len(clients.server.active) == 1
