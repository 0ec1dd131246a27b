"""Many exchanges on one HTTP/2 connection to a backend, on memory streams.

The backend is the ``h2`` library on the other end of a memory stream, and it
answers a request only when the test lets it, so the order of reads is the
test's. What a user would check: every exchange gets its own answer over one
connection, and one exchange given up on (its reader cancelled mid-read)
leaves the others still answered.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import trio
import trio.testing

from edgegw import ir
from edgegw.net.dial import Dialer
from edgegw.net.upstream import UpstreamPool
from edgegw.proto.events import DataReceived, Headers, MessageEnded

CEILING = 10
ENDPOINT = ir.Endpoint(address="192.0.2.20", port=80)  # never dialled for real
BACKEND = ir.Backend(name="default/grpc:80", endpoints=(ENDPOINT,), app_protocol="h2c")


class _Backend(Dialer):
    """Hands out memory streams served by ``h2``; answers a path once it is released."""

    def __init__(self, nursery: trio.Nursery) -> None:
        super().__init__()
        self.nursery = nursery
        self.dialled = 0
        self.released: set[bytes] = set()
        self.release_event = trio.Event()

    def release(self, *paths: bytes) -> None:
        self.released.update(paths)
        self._poke()

    def _poke(self) -> None:
        self.release_event.set()
        self.release_event = trio.Event()

    async def open_stream(self, endpoint: ir.Endpoint) -> trio.abc.Stream:
        self.dialled += 1
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
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        waiting[event.stream_id] = dict(event.headers)[b":path"]
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
