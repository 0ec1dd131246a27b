"""Many exchanges on one HTTP/2 connection to a backend, on memory streams.

The backend is the ``h2`` library on the other end of a memory stream, and it
answers a request only when the test lets it, so the order of reads is the
test's. What a user would check: every exchange gets its own answer over one
connection, and one exchange given up on (its reader cancelled mid-read)
leaves the others still answered, and so does one whose answer never comes.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import h2.config
import h2.connection
import h2.events
import pytest
import trio
import trio.testing

from edgegw import ir
from edgegw.net import fastio
from edgegw.net.connection import UpstreamLimits
from edgegw.net.dial import Dialer
from edgegw.net.upstream import UpstreamPool, UpstreamTimeout
from edgegw.proto.events import DataReceived, Headers, MessageEnded

CEILING = 10
ENDPOINT = ir.Endpoint(address="192.0.2.20", port=80)  # never dialled for real
BACKEND = ir.Backend(name="default/grpc:80", endpoints=(ENDPOINT,), app_protocol="h2c")


class _Backend(Dialer):
    """Hands out memory streams served by ``h2``; answers a path once it is released."""

    def __init__(self, nursery: trio.Nursery, *, sockets: bool = False) -> None:
        super().__init__()
        self.nursery = nursery
        self.sockets = sockets  # a socket pair (edgegw's fast socket I/O) instead of memory
        self.dialled = 0
        self.released: set[bytes] = set()
        self.reads: list[int] = []  # requests (HEADERS) in each read of the backend
        self.release_event = trio.Event()

    def release(self, *paths: bytes) -> None:
        self.released.update(paths)
        self._poke()

    def _poke(self) -> None:
        self.release_event.set()
        self.release_event = trio.Event()

    async def open_stream(self, endpoint: ir.Endpoint) -> trio.abc.Stream:
        self.dialled += 1
        ours: trio.abc.Stream
        theirs: trio.abc.Stream
        if self.sockets:
            a, b = trio.socket.socketpair()
            ours, theirs = trio.SocketStream(a), trio.SocketStream(b)
        else:
            ours, theirs = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self._serve, theirs)
        return ours

    async def _serve(self, stream: trio.abc.Stream) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        waiting: dict[int, bytes] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._answer, conn, stream, waiting)
            while data := await stream.receive_some(65536):
                requests = 0
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        waiting[event.stream_id] = dict(event.headers)[b":path"]
                        requests += 1
                self.reads.append(requests)
                self._poke()  # the answering task sends what h2 queued (the only sender)
            nursery.cancel_scope.cancel()

    async def _answer(
        self, conn: h2.connection.H2Connection, stream: trio.abc.Stream, waiting: dict[int, bytes]
    ) -> None:
        while True:
            event = self.release_event
            for stream_id, path in list(waiting.items()):
                if path in self.released:
                    del waiting[stream_id]
                    conn.send_headers(stream_id, [(b":status", b"200")])
                    conn.send_data(stream_id, path)
                    conn.send_headers(stream_id, [(b"grpc-status", b"0")], end_stream=True)
            out = conn.data_to_send()
            if out:
                await stream.send_all(out)
            await event.wait()


class _NoBody:
    length: int | None = 0
    started = False
    finished = True
    trailers: Headers = ()

    async def receive(self) -> bytes:
        return b""


async def _exchange(pool: UpstreamPool, path: bytes, results: dict[bytes, bytes]) -> None:
    async def deliver(rsp: object) -> None:
        body = b""
        while True:
            event = await rsp.next_event()  # type: ignore[attr-defined]
            if isinstance(event, DataReceived):
                body += event.data
            elif isinstance(event, MessageEnded):
                results[path] = body + b"|" + dict(event.trailers)[b"grpc-status"]
                return

    head = (b"GET", path, [(b"host", b"backend")])
    await pool.exchange(ENDPOINT, BACKEND, head, _NoBody(), deliver)


async def test_exchanges_share_one_connection_and_each_gets_its_answer(
    nursery: trio.Nursery,
) -> None:
    backend = _Backend(nursery)
    pool = UpstreamPool(dialer=backend)
    results: dict[bytes, bytes] = {}
    paths = [b"/%d" % i for i in range(20)]
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as calls:
            for path in paths:
                calls.start_soon(_exchange, pool, path, results)
            await trio.testing.wait_all_tasks_blocked()
            backend.release(*paths[::2])  # half of them first, then the rest
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(results) == sorted(paths[::2])
            backend.release(*paths[1::2])
    assert results == {path: path + b"|0" for path in paths}
    assert backend.dialled == 1


async def test_a_cancelled_reader_hands_reading_to_the_exchanges_still_waiting(
    nursery: trio.Nursery,
) -> None:
    backend = _Backend(nursery)
    pool = UpstreamPool(dialer=backend)
    results: dict[bytes, bytes] = {}
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as calls:
            first = trio.CancelScope()
            calls.start_soon(_scoped, first, pool, b"/first", results)
            await trio.testing.wait_all_tasks_blocked()  # "/first" reads, nothing to read
            for path in (b"/a", b"/b"):
                calls.start_soon(_exchange, pool, path, results)
            await trio.testing.wait_all_tasks_blocked()  # they wait for the reader
            first.cancel()
            await trio.testing.wait_all_tasks_blocked()
            backend.release(b"/a", b"/b")
    assert results == {b"/a": b"/a|0", b"/b": b"/b|0"}
    assert backend.dialled == 1


async def _scoped(
    scope: trio.CancelScope, pool: UpstreamPool, path: bytes, results: dict[bytes, bytes]
) -> None:
    with scope:
        await _exchange(pool, path, results)


async def _silent(pool: UpstreamPool, timed_out: list[float]) -> None:
    start = trio.current_time()
    with pytest.raises(UpstreamTimeout):
        await _exchange(pool, b"/never", {})
    timed_out.append(trio.current_time() - start)


async def _later(after: float, action: Callable[[], Awaitable[None] | None]) -> None:
    await trio.sleep(after)
    await_me = action()
    if await_me is not None:
        await await_me


async def test_a_silent_reader_times_out_and_hands_reading_over(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The connection's reader whose answer never comes gets UpstreamTimeout after
    ``read_timeout``; an exchange that began waiting meanwhile is still answered."""
    backend = _Backend(nursery)
    pool = UpstreamPool(dialer=backend, limits=UpstreamLimits(read_timeout=5.0))
    results: dict[bytes, bytes] = {}
    timed_out: list[float] = []
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as calls:
            calls.start_soon(_silent, pool, timed_out)
            await trio.testing.wait_all_tasks_blocked()  # it reads
            calls.start_soon(_exchange, pool, b"/a", results)
            calls.start_soon(_later, 3.0, lambda: backend.release(b"/a"))
            calls.start_soon(_later, 4.0, lambda: _exchange(pool, b"/b", results))
            calls.start_soon(_later, 8.0, lambda: backend.release(b"/b"))
    assert results == {b"/a": b"/a|0", b"/b": b"/b|0"}
    assert len(timed_out) == 1
    assert 5.0 <= timed_out[0] < 5.5
    assert backend.dialled == 1


async def test_a_silent_waiter_times_out_by_the_readers_clock(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A stream waiting behind a reader that keeps reading (here one waiting for 9 s) still
    times out after ``read_timeout``: the reader's read ends at the nearest deadline."""
    backend = _Backend(nursery)
    pool = UpstreamPool(dialer=backend, limits=UpstreamLimits(read_timeout=5.0))
    client = await pool.h2.client(ENDPOINT, BACKEND)
    results: dict[bytes, bytes] = {}
    timed_out: list[float] = []
    reader_result: list[bool] = []

    async def reader() -> None:
        reader_result.append(await client.wait_until(lambda: False, trio.current_time() + 9.0))

    with trio.fail_after(CEILING):
        async with trio.open_nursery() as calls:
            calls.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            calls.start_soon(_silent, pool, timed_out)
            calls.start_soon(_later, 1.0, lambda: _exchange(pool, b"/a", results))
            calls.start_soon(_later, 3.0, lambda: backend.release(b"/a"))
    assert results == {b"/a": b"/a|0"}
    assert len(timed_out) == 1
    assert 5.0 <= timed_out[0] < 5.5
    assert reader_result == [False]
    assert backend.dialled == 1


async def test_requests_started_together_leave_in_one_write(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a stream in flight, requests started in the same scheduler pass are gathered
    into one write to the backend's socket (and the backend can answer them together)."""
    writes: list[int] = []

    def write(fd: int, data: bytes | memoryview) -> int:
        writes.append(len(data))
        return os.write(fd, data)

    monkeypatch.setattr(fastio, "_write", write)
    backend = _Backend(nursery, sockets=True)
    pool = UpstreamPool(dialer=backend)
    results: dict[bytes, bytes] = {}
    paths = [b"/%d" % i for i in range(10)]
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as calls:
            calls.start_soon(_exchange, pool, b"/first", results)
            await trio.testing.wait_all_tasks_blocked()
            writes.clear()
            for path in paths:
                calls.start_soon(_exchange, pool, path, results)
            await trio.testing.wait_all_tasks_blocked()
            assert len(writes) == 1
            backend.release(b"/first", *paths)
    assert results == {path: path + b"|0" for path in [b"/first", *paths]}
