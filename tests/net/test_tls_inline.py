"""TLS inline (``TLSIO``): the HTTP loops' fast reader/writer over a TLSStream's connection.

Real TLS on both ends over a real socket pair (TLSIO needs a plain socket
underneath); the client end is a ``TLSStream``.
"""

from __future__ import annotations

import socket
import threading

import pytest
import trio
import trio.testing
import trustme

from edgegw.net import tls
from edgegw.net.fastio import TimedOut, open_io
from edgegw.net.tls_stream import TLSIO
from tests.net.test_tls_stream import ca, client_end, server_tls, tls_pair

__all__ = ["ca", "server_tls"]  # the fixtures, shared with test_tls_stream


async def socket_tls_pair(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> tuple[tls.TLSStream, tls.TLSStream, TLSIO]:
    def sockets() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        a, b = trio.socket.socketpair()
        return trio.SocketStream(a), trio.SocketStream(b)

    client, server = await tls_pair(server_tls, ca, sockets)
    io = open_io(server)
    assert isinstance(io, TLSIO)
    return client, server, io


async def test_requests_and_a_large_response_over_one_connection(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    client, _server, io = await socket_tls_pair(server_tls, ca)
    body = bytes(range(256)) * 8192  # 2 MiB: far more than the socket buffers hold
    with trio.fail_after(20):
        for i in range(20):
            await client.send_all(b"request %d" % i)
            assert await io.recv() == b"request %d" % i
        received = bytearray()

        async def read_all() -> None:
            while len(received) < len(body):
                received.extend(await client.receive_some())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await io.send_all(body)
    assert received == body


async def test_records_left_by_the_stream_are_read_without_waiting(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    client, server, io = await socket_tls_pair(server_tls, ca)
    with trio.fail_after(5):
        assert io.recv_nowait() is None  # OpenSSL is starved now
        for part in (b"one", b"two", b"three"):  # three records in the socket
            await client.send_all(part)
        first = await server.receive_some(3)  # the Stream reads one record of them
        assert first == b"one"
        rest = b""
        while rest != b"twothree":  # the rest is at hand: no wait for more bytes
            more = io.recv_nowait()
            assert more
            rest += more


async def test_a_recv_with_a_deadline_times_out(server_tls: tls.ServerTLS, ca: trustme.CA) -> None:
    _client, _server, io = await socket_tls_pair(server_tls, ca)
    with trio.fail_after(5), pytest.raises(TimedOut):
        await io.recv(trio.current_time() + 0.2)


async def test_the_peers_close_reads_as_the_end(server_tls: tls.ServerTLS, ca: trustme.CA) -> None:
    client, _server, io = await socket_tls_pair(server_tls, ca)
    with trio.fail_after(5):
        await client.send_all(b"last")
        await client.aclose()
        assert await io.recv() == b"last"
        assert await io.recv() == b""


def test_only_a_plain_socket_underneath_gets_tls_inline(ca: trustme.CA) -> None:
    left, _right = trio.testing.memory_stream_pair()
    assert client_end(left, ca).byte_io() is None


async def test_a_read_size_below_a_record_takes_it_in_pieces_without_waiting(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    def sockets() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        a, b = trio.socket.socketpair()
        return trio.SocketStream(a), trio.SocketStream(b)

    client, server = await tls_pair(server_tls, ca, sockets)
    io = open_io(server, 4096)
    assert isinstance(io, TLSIO)
    record = bytes(range(256)) * 40  # 10,240 bytes: one record, more than a read may take
    with trio.fail_after(5):
        await client.send_all(record)
        pieces = [await io.recv()]
        while (piece := io.recv_nowait()) is not None:  # the rest is in OpenSSL already
            pieces.append(piece)
    assert b"".join(pieces) == record
    assert max(len(p) for p in pieces) <= 4096


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
async def test_every_buffer_type_is_sent_whole(
    server_tls: tls.ServerTLS, ca: trustme.CA, kind: type
) -> None:
    client, _server, io = await socket_tls_pair(server_tls, ca)
    body = bytes(range(256)) * 160  # 40 KiB: three records
    received = bytearray()
    with trio.fail_after(10):
        await io.send_all(kind(body))
        await io.send_all(kind(b""))  # nothing to send is no error
        while len(received) < len(body):
            received += await client.receive_some()
    assert received == body


async def test_garbage_after_the_handshake_breaks_the_connection(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    client, _server, io = await socket_tls_pair(server_tls, ca)
    with trio.fail_after(5):
        # an application-data record whose authentication cannot succeed
        await client.transport_stream.send_all(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        with pytest.raises(trio.BrokenResourceError):
            await io.recv()
        with pytest.raises(trio.BrokenResourceError):
            await io.send_all(b"too late")


async def test_a_close_without_close_notify_reads_as_the_end(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    client, _server, io = await socket_tls_pair(server_tls, ca)
    with trio.fail_after(5):
        await client.send_all(b"last")
        await client.transport_stream.aclose()  # TCP close, no TLS alert
        assert await io.recv() == b"last"
        assert await io.recv() == b""
        assert io.recv_nowait() == b""


def test_each_thread_decrypts_into_its_own_buffer(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    """Connections share a scratch buffer only within a thread: cffi runs OpenSSL without
    the GIL, so two trio runs in two threads must never write the same memory."""
    buffers: list[object] = []

    async def connect() -> None:
        with trio.fail_after(10):
            client, server, io = await socket_tls_pair(server_tls, ca)
            await client.send_all(b"ping")
            assert await io.recv() == b"ping"
            buffers.append(server._buf)
            _client, again, _io = await socket_tls_pair(server_tls, ca)
            assert again._buf is server._buf  # one per thread, not one per connection

    threads = [threading.Thread(target=trio.run, args=(connect,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(buffers) == 2
    assert buffers[0] is not buffers[1]


def _small_send_buffer(stream: tls.TLSStream) -> None:
    transport = stream.transport_stream
    assert isinstance(transport, trio.SocketStream)
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


async def test_a_small_answer_leaves_at_once_without_waiting(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    client, _server, io = await socket_tls_pair(server_tls, ca)
    with trio.fail_after(5):
        assert io.write_nowait(b"HTTP/1.1 200 OK\r\n\r\n")
        assert io.write_nowait(b"")  # nothing to send is no error
        assert await client.receive_some() == b"HTTP/1.1 200 OK\r\n\r\n"


async def test_what_the_kernel_did_not_take_is_sent_by_send_all(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    """``write_nowait`` takes everything; records the kernel had no room for wait, in order,
    for ``send_all(b"")``: nothing lost, nothing encrypted twice."""
    client, server, io = await socket_tls_pair(server_tls, ca)
    _small_send_buffer(server)
    body = bytes(range(251)) * 4200  # ~1 MiB: many records, more than one pull of them
    received = bytearray()
    with trio.fail_after(20):
        assert not io.write_nowait(body)

        async def read_all() -> None:
            while len(received) < len(body) + 4:
                received.extend(await client.receive_some())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await io.send_all(b"", trio.current_time() + 15)
            if not io.write_nowait(b"next"):  # after the rest, whatever the kernel takes
                await io.send_all(b"", trio.current_time() + 15)
    assert received == body + b"next"


async def test_an_answer_queued_behind_another_send_keeps_its_place(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    client, server, io = await socket_tls_pair(server_tls, ca)
    _small_send_buffer(server)
    body = bytes(range(251)) * 2000
    received = bytearray()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(io.send_all, body)
            await trio.testing.wait_all_tasks_blocked()  # it waits for room, holding the lock
            assert not io.write_nowait(b"tail")
            nursery.start_soon(io.send_all, b"")
            while len(received) < len(body) + 4:
                received.extend(await client.receive_some())
    assert received == body + b"tail"


async def test_write_nowait_on_a_broken_connection_raises(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    client, _server, io = await socket_tls_pair(server_tls, ca)
    with trio.fail_after(5):
        await client.transport_stream.send_all(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        with pytest.raises(trio.BrokenResourceError):
            await io.recv()
        with pytest.raises(trio.BrokenResourceError):
            io.write_nowait(b"too late")


async def test_two_records_in_one_read_give_both_without_waiting(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    """After a read that emptied its record, more records already in OpenSSL's input
    are read before anyone waits on the socket (the socket is empty by then)."""
    client, _server, io = await socket_tls_pair(server_tls, ca)
    conn = client.connection
    conn.send(b"first request")
    conn.send(b"second request")  # two records, one write on the socket
    with trio.fail_after(5):
        await client.transport_stream.send_all(conn.bio_read(65536))
        assert await io.recv() == b"first request"
        assert io.recv_nowait() == b"second request"
        assert io.recv_nowait() is None


async def test_a_record_split_across_reads_is_read_when_its_end_comes(
    server_tls: tls.ServerTLS, ca: trustme.CA
) -> None:
    client, _server, io = await socket_tls_pair(server_tls, ca)
    conn = client.connection
    conn.send(b"a request in one record")
    record = conn.bio_read(65536)
    with trio.fail_after(5):
        for cut in (3, 5, len(record) - 1):  # inside the header, at its end, in the body
            await client.transport_stream.send_all(record[:cut])
            await trio.testing.wait_all_tasks_blocked()
            assert io.recv_nowait() is None  # OpenSSL holds part of a record: starved
            await client.transport_stream.send_all(record[cut:])
            assert await io.recv() == b"a request in one record"
            assert io.recv_nowait() is None
            conn.send(b"a request in one record")
            record = conn.bio_read(65536)
