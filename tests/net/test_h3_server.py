"""The HTTP/3 front end with no socket: aioquic's client and ``H3ServerConnection`` exchange
datagrams in memory, and the upstream dialler hands out memory streams.

What a user (or an attacker) would check, under a virtual clock: a request gets the one
decision's answer; QPACK's dynamic table is off; a malformed or oversized head never reaches a
backend; streams past the limit are refused; a request body the backend does not take stops
the connection's intake (datagrams dropped, memory bounded) and resumes when it does; a drain
closes an idle connection.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio.testing
import trustme
from aioquic.buffer import Buffer, encode_uint_var
from aioquic.h3.connection import ErrorCode, Setting
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_header

from edgegw import ir
from edgegw.net.context import HTTPConnectionContext
from edgegw.net.dial import Dialer
from edgegw.net.h3server import H3Limits, H3ServerConnection
from edgegw.net.upstream import UpstreamPool
from edgegw.routing import compile_port
from tests.h3client import H3Client

CEILING = 30
SERVER = ("192.0.2.1", 443)
CLIENT = ("192.0.2.7", 50000)
HOST = "a.example.com"


class Backend(Dialer):
    """Memory streams to an HTTP/1.1 backend; ``reading`` says whether it takes bodies now."""

    def __init__(self, nursery: trio.Nursery) -> None:
        super().__init__()
        self.nursery = nursery
        self.reading = trio.Event()
        self.received = 0
        self.heads = 0

    async def open_stream(self, endpoint: ir.Endpoint) -> trio.abc.Stream:
        ours, theirs = trio.testing.lockstep_stream_pair()  # no buffer: real backpressure
        self.nursery.start_soon(self._serve, theirs)
        return ours

    async def _serve(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        target = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if conn.their_state is h11.SEND_BODY:
                    await self.reading.wait()
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.Request):
                self.heads += 1
                target = event.target
                if event.target == b"/hold":
                    await trio.sleep_forever()
            elif isinstance(event, h11.Data):
                self.received += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                body = b"b" * 1_000_000 if target == b"/big" else b"%d" % self.received
                head = h11.Response(status_code=200, headers=[("content-length", str(len(body)))])
                out = (conn.send(head) or b"") + (conn.send(h11.Data(data=body)) or b"")
                await stream.send_all(out + (conn.send(h11.EndOfMessage()) or b""))
                conn.start_next_cycle()
            else:
                return


def _table() -> Any:
    endpoint = ir.Endpoint(address="192.0.2.10", port=80)  # never dialled for real
    rule = ir.HTTPRouteRule(
        index=0,
        matches=(ir.HTTPMatch(path="/up"), ir.HTTPMatch(path="/hold"), ir.HTTPMatch(path="/big")),
        backends=(ir.Backend(name="default/mem:80", endpoints=(endpoint,)),),
    )
    listener = ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name="https",
        protocol="HTTPS",
        port=443,
        http_routes=(ir.HTTPRoute(namespace="default", name="r", rules=(rule,)),),
    )
    return compile_port(ir.Port(address=SERVER[0], port=443, listeners=(listener,)))


class Wire:
    """The client's UDP socket, in memory: its first datagram creates the server connection."""

    def __init__(
        self, nursery: trio.Nursery, ctx: HTTPConnectionContext, limits: H3Limits, files: Any
    ) -> None:
        self.nursery = nursery
        self.ctx = ctx
        self.limits = limits
        self.files = files
        self.server: H3ServerConnection | None = None
        self.to_client, self._inbox = trio.open_memory_channel[tuple[bytes, Any]](math.inf)

    async def sendto(self, data: bytes, addr: Any) -> None:
        await trio.lowlevel.checkpoint()
        if self.server is None:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            config = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
            config.load_cert_chain(*self.files)
            quic = QuicConnection(
                configuration=config, original_destination_connection_id=header.destination_cid
            )
            self.server = H3ServerConnection(quic, self._deliver, self.ctx, self.limits)
            self.nursery.start_soon(self.server.run)
        self.server.datagram_received(data, CLIENT)

    def _deliver(self, data: bytes, addr: Any) -> None:
        self.to_client.send_nowait((data, SERVER))

    async def recvfrom(self, size: int) -> tuple[bytes, Any]:
        return await self._inbox.receive()


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert(HOST)
    cert_file, key_file, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    return str(cert_file), str(key_file), str(ca_file)


@asynccontextmanager
async def connected(
    files: tuple[str, str, str], limits: H3Limits | None = None
) -> AsyncIterator[tuple[H3Client, Wire, Backend, HTTPConnectionContext]]:
    async with trio.open_nursery() as nursery:
        backend = Backend(nursery)
        table = _table()
        ctx = HTTPConnectionContext(
            port_table=lambda: table,
            pool=UpstreamPool(dialer=backend),
            client=CLIENT,
            scheme="https",
        )
        wire = Wire(nursery, ctx, limits or H3Limits(), files[:2])
        config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=HOST)
        config.load_verify_locations(files[2])
        quic = QuicConnection(configuration=config)
        quic.connect(SERVER, now=trio.current_time())
        client = H3Client(wire, quic)
        nursery.start_soon(client.run)
        await client.connected.wait()
        assert client.terminated is None
        yield client, wire, backend, ctx
        nursery.cancel_scope.cancel()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await trio.sleep(0.01)  # virtual time: a condition polled, not a fixed wait


async def test_a_request_gets_the_decision_and_qpack_has_no_dynamic_table(
    files: tuple[str, str, str], autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(CEILING):
        async with connected(files) as (client, wire, backend, _):
            rsp = await client.request("GET", "/nowhere", HOST)
            assert (rsp.status, rsp.body) == (404, b"Not Found\n")
            backend.reading.set()
            rsp = await client.request("POST", "/up", HOST, body=b"x" * 5000)
            assert (rsp.status, rsp.body) == (200, b"5000")
            # a response far past the unacknowledged limit: it waits for ACKs, then goes on
            big = await client.request("GET", "/big", HOST)
            assert (big.status, len(big.body)) == (200, 1_000_000)
            settings = client.h3.received_settings
            assert settings is not None
            assert settings[Setting.QPACK_MAX_TABLE_CAPACITY] == 0
            assert wire.server is not None
            assert wire.server.ctx.protocol == "h3"


async def test_malformed_and_oversized_heads_never_reach_the_backend(
    files: tuple[str, str, str], autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(CEILING):
        async with connected(files) as (client, _, backend, _):
            bad = await client.request("GET", "/up with space", HOST)
            assert bad.reset
            assert bad.status == 0
            many = [(f"x-h{i}", "v") for i in range(150)]
            assert (await client.request("GET", "/up", HOST, many)).status == 431
            # a HEADERS frame that never ends: reset once 32 KiB of it arrived
            sid = client.quic.get_next_available_stream_id()
            client.responses[sid] = type(bad)()
            frame = b"\x01" + encode_uint_var(10_000_000)
            client.quic.send_stream_data(sid, frame + b"\x00" * 40_000)
            client.wake()
            rsp = await client.response(sid)
            assert rsp.reset
            assert backend.heads == 0
            # the connection still serves
            assert (await client.request("GET", "/nowhere", HOST)).status == 404


async def test_streams_past_the_limit_are_refused(
    files: tuple[str, str, str], autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(CEILING):
        async with connected(files, H3Limits(max_streams=2)) as (client, _, backend, _):
            held = [client.start("GET", "/hold", HOST) for _ in range(2)]
            await _until(lambda: backend.heads == 2)
            third = await client.request("GET", "/nowhere", HOST)
            assert third.reset
            assert all(not client.responses[sid].status for sid in held)


async def test_a_body_the_backend_does_not_take_stops_the_intake(
    files: tuple[str, str, str], autojump_clock: trio.testing.MockClock
) -> None:
    limits = H3Limits(body_buffer=64 * 1024)
    with trio.fail_after(CEILING):
        async with connected(files, limits) as (client, wire, backend, _):
            server = wire.server
            assert server is not None
            sid = client.start("POST", "/up", HOST, end=False)
            client.send(sid, b"y" * 600_000, end=True)
            await _until(lambda: server.dropped > 10)
            # bounded: the limit plus the datagram that crossed it, not the body
            assert limits.body_buffer < server.buffered <= limits.body_buffer + 1500
            backend.reading.set()
            rsp = await client.response(sid)
            assert (rsp.status, rsp.body) == (200, b"600000")
            assert server.buffered == 0


async def test_a_drain_closes_an_idle_connection_with_no_error(
    files: tuple[str, str, str], autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(CEILING):
        async with connected(files) as (client, _, _, ctx):
            assert (await client.request("GET", "/nowhere", HOST)).status == 404
            ctx.drain.start()
            await _until(lambda: client.terminated is not None)
            assert isinstance(client.terminated, qe.ConnectionTerminated)
            assert client.terminated.error_code == ErrorCode.H3_NO_ERROR


async def test_a_grpc_timeout_ends_the_call_with_deadline_exceeded(
    files: tuple[str, str, str], autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(CEILING):
        async with connected(files) as (client, _, _, _):
            grpc = [
                ("content-type", "application/grpc"),
                ("grpc-timeout", "2S"),
                ("te", "trailers"),
            ]
            started = trio.current_time()
            rsp = await client.request("POST", "/hold", HOST, grpc, body=b"\0\0\0\0\0")
            assert trio.current_time() - started >= 2
            assert (rsp.status, rsp.headers["grpc-status"]) == (200, "4")
