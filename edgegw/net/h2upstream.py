"""HTTP/2 towards backends: one multiplexed connection per endpoint, many streams.

Theory of operation
-------------------
``h2_exchange`` does what ``h1upstream.open_h1_exchange`` does, and
``UpstreamPool.exchange`` picks one or the other by ``backend.app_protocol``
("h2c", or "h2" when the pool wraps backend TLS with ALPN h2). Its ``deliver``
callback gets an ``H2UpstreamResponse`` with ``head``, ``next_event()``, ``pending()`` and
``reusable``, producing the same ``proto.events`` as the HTTP/1.1 parser
(``ResponseReceived``, ``DataReceived``, ``MessageEnded`` with trailers).

Connections: ``H2Pool`` (one per ``UpstreamPool``, its ``h2`` attribute) keeps, per endpoint, the
connections it opened through ``UpstreamPool.acquire(fresh=True)`` (so
connect timeouts, DNS and passive-health ejection are the pool's), and
picks one with a free stream slot under the peer's MAX_CONCURRENT_STREAMS,
dialling a new one only when none has room (one dial at a time per
endpoint). An ``_H2Client`` is dropped once it is closed, got GOAWAY, or sat
idle past the pool's ``idle_timeout``.

There is no task per connection. Whoever needs an event for its stream (a
response reader, a body pump waiting for window) becomes the connection's
reader unless another task is reading: it reads, dispatches every event to
the streams they belong to, wakes every waiter whose condition now holds (in
one scheduler pass, not one after another as a lock's queue would), and
reads on until its own condition holds; then it hands reading over to one
waiter still waiting. Writes go
through a write lock and are shielded from cancellation (half a frame would
corrupt every other stream), bounded by the read timeout. An idle connection
is therefore not read at all; what its server said meanwhile (GOAWAY, a
close) is seen by the next exchange, which is retried once on a fresh
connection when nothing of it was processed and its body can be resent.

Flow control: response DATA is acknowledged as the proxy takes it, so a
slow client slows the backend through the stream window (1 MiB) and no
more than that is buffered per stream. A cancelled or abandoned exchange
sends RST_STREAM(CANCEL), which is how a gRPC cancellation reaches the
backend.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

import trio
from trio.lowlevel import Task

from edgegw import ir
from edgegw.net.connection import (
    ConnectionSource,
    RequestBody,
    UpstreamBroken,
    UpstreamConnection,
    UpstreamError,
    UpstreamTimeout,
    collapse_groups,
)
from edgegw.net.fastio import FastSocket
from edgegw.proto import http2
from edgegw.proto.events import (
    DataReceived,
    Event,
    HeaderList,
    Headers,
    MessageEnded,
    ResponseReceived,
)
from edgegw.proto.h2codec import ErrorCode, H2Error, ProtocolError
from edgegw.proto.h2codec import events as ev

_H2Error = (H2Error,)
_R = TypeVar("_R")
_current_task = trio.lowlevel.current_task
_reschedule = trio.lowlevel.reschedule
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_LIMITS = http2.H2Limits(max_concurrent_streams=100)


class _Refused(UpstreamBroken):
    """The server will not process this stream (GOAWAY past it, REFUSED_STREAM): safe to retry."""


class H2UpstreamResponse:
    """The response on one upstream stream; see the module docstring."""

    __slots__ = (
        "_events",
        "_head_request",
        "client",
        "ended",
        "error",
        "head",
        "received",
        "reusable",
        "stream_id",
    )

    def __init__(self, client: _H2Client, stream_id: int, head_request: bool) -> None:
        self.client = client
        self.stream_id = stream_id
        self.head: ResponseReceived | None = None
        self.reusable = True
        self.ended = False
        self.error: UpstreamError | None = None
        self.received = 0
        self._head_request = head_request
        self._events: deque[tuple[Event, int]] = deque()

    # called by the dispatching reader ------------------------------------------------------

    def on_event(self, event: Any) -> None:
        kind = type(event)
        if kind is ev.DataReceived:
            self.received += 1
            self._events.append((DataReceived(event.data), event.flow_controlled_length))
        elif kind is ev.ResponseReceived:
            self.received += 1
            ended = event.ended
            head = http2.response_head(event.headers, ended=ended, head_request=self._head_request)
            self._events.append((head, 0))
        elif kind is ev.TrailersReceived:
            self._end(tuple(event.headers))
        elif kind is ev.StreamEnded:
            self._end(())
        elif kind is ev.StreamReset and not self.ended:
            error = _Refused if event.error_code == ErrorCode.REFUSED_STREAM else UpstreamBroken
            self.error = error(
                f"upstream {self.client.address} reset the stream ({event.error_code!r})"
            )

    def _end(self, trailers: Headers) -> None:
        if not self.ended:
            self.ended = True
            self._events.append((MessageEnded(trailers), 0))

    # the proxy's side ----------------------------------------------------------------------

    async def next_event(self) -> Event:
        """The next event of this stream, reading from the connection when none is queued.

        Raises:
            UpstreamBroken: the stream or the connection failed.
            UpstreamTimeout: the upstream was silent for ``read_timeout``.
        """
        client = self.client
        if not self._events:
            deadline = trio.current_time() + client.read_timeout
            if not await client.wait_until(self._ready, deadline):
                raise UpstreamTimeout(f"upstream {client.address} timed out")
        if not self._events:
            assert self.error is not None
            raise self.error
        event, length = self._events.popleft()
        if length:
            client.acknowledge(self.stream_id, length)
        return event

    def pending(self) -> bool:
        """True when an event is ready without reading (so a flush can wait)."""
        return bool(self._events)

    def _ready(self) -> bool:
        return bool(self._events) or self.error is not None


class _H2Client:
    """One HTTP/2 connection to a backend, shared by many exchanges."""

    def __init__(self, conn: UpstreamConnection, read_timeout: float, now: float) -> None:
        self.conn = conn
        self.address = conn.address
        self.read_timeout = read_timeout
        self.h2 = http2.client_connection(_LIMITS)
        self.streams: dict[int, H2UpstreamResponse] = {}
        self.closed = False
        self.goaway = False
        self.used = False
        self.idle_since = now
        self._reading = False  # a task is reading (see ``wait_until``)
        # the tasks waiting for a read, with their conditions and deadlines (until woken)
        self._waiters: dict[Task, tuple[Callable[[], bool], float]] = {}
        self._successor: Task | None = None  # the waiter woken to read next
        self._gathering = False  # a new stream's task waits to write a batch of them
        self._write_lock = trio.Lock()
        self.scheme = b"https" if conn.key[3] is not None else b"http"

    def has_room(self) -> bool:
        if self.closed or self.goaway:
            return False
        limit = self.h2.remote_settings.max_concurrent_streams
        return len(self.streams) < limit and self.h2.highest_outbound_stream_id < (1 << 30)

    def open_stream(self, headers: HeaderList, *, end: bool, head: bool) -> H2UpstreamResponse:
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers, end_stream=end)
        response = H2UpstreamResponse(self, stream_id, head)
        self.streams[stream_id] = response
        return response

    async def send(self) -> None:
        """Write what h2 queued, shielded: a cut frame would break every stream.

        Usually the kernel takes it all at once: then there is nothing to shield,
        lock or time out, and none of that is paid for (it was a tenth of a
        proxied gRPC call's CPU). Otherwise the rest goes out under the write
        lock, in order, before anything queued later.

        Raises:
            UpstreamBroken: the write failed or stalled past ``read_timeout``.
        """
        io = self.conn.io
        if type(io) is FastSocket and not self._write_lock.locked():
            data = self.h2.data_to_send()
            if not data or self.closed:
                return
            try:
                sent = io.send_nowait(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                broken = UpstreamBroken(f"upstream {self.address}: {exc}")
                self._fail(broken)
                raise broken from exc
            if sent == len(data):
                return
            self._write_lock.acquire_nowait()  # no await since the check: still free
            try:
                await self._send_shielded(data[sent:])
            finally:
                self._write_lock.release()
            return
        with trio.CancelScope(shield=True):
            async with self._write_lock:
                data = self.h2.data_to_send()
                if data and not self.closed:
                    await self._send_shielded(data)

    async def send_request(self) -> None:
        """Send what a new stream queued; with other streams in flight, a moment later.

        Requests tend to come in batches (a client's read holds several; each
        starts a stream worker, and they all run in one scheduler pass). The
        first of them waits one pass, so that the frames the others queue
        meanwhile leave in the same write: one syscall for the batch, and a
        backend that reads them together answers them together.

        Raises:
            UpstreamBroken: as ``send``.
        """
        if len(self.streams) > 1:
            if self._gathering:  # the task gathering this pass's requests writes ours too
                return
            self._gathering = True
            try:
                await trio.lowlevel.cancel_shielded_checkpoint()
            finally:
                self._gathering = False
        await self.send()

    async def _send_shielded(self, data: bytes) -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.read_timeout) as scope:
                try:
                    await self.conn.send_all(data)
                except UpstreamBroken as exc:
                    self._fail(exc)
                    raise
            if scope.cancelled_caught:
                self._fail(UpstreamBroken(f"upstream {self.address}: write stalled"))
                raise UpstreamBroken(f"upstream {self.address}: write stalled")

    async def wait_until(self, ready: Callable[[], bool], deadline: float = math.inf) -> bool:
        """Read and dispatch until ``ready()``; errors land on the streams they concern.

        False when ``deadline`` passed first. One task reads at a time (the
        reader); the others park (``_wait_turn``), and the reader
        wakes every waiter its read made ready at once. A reader that is done
        (or cancelled) hands reading over to one waiter that is not ready yet.
        So a read that answers many streams wakes them all in one scheduler
        pass, not one after another. The reader also keeps the waiters'
        deadlines: its read times out at the nearest, and it wakes whoever's
        passed, so a wait costs no cancel scope of its own.
        """
        try:
            while not ready():
                if self.closed:  # every stream carries its error
                    return True
                if self._reading:
                    await self._wait_turn(ready, deadline)
                    if deadline != math.inf and not ready() and trio.current_time() >= deadline:
                        return False
                    continue
                if not await self._read(ready, deadline):
                    return False
            return True
        finally:  # leaving without reading while others wait: one of them reads
            if not self._reading and self._successor is None and self._waiters:
                self._hand_over()

    async def _wait_turn(self, ready: Callable[[], bool], deadline: float) -> None:
        """Park until the reader (or a deadline, or a hand-over) wakes this task.

        The task itself is the waiter (``trio.lowlevel``'s park and reschedule, what
        ``trio.Event`` is built on, without an event and parking lot per wait).
        """
        task = _current_task()
        waiters = self._waiters
        waiters[task] = (ready, deadline)

        def abort(_: object) -> trio.lowlevel.Abort:
            del waiters[task]  # cancelled while still parked (a woken task was removed)
            return trio.lowlevel.Abort.SUCCEEDED

        await _wait_task_rescheduled(abort)
        if self._successor is task:  # ours to read next, or to pass on
            self._successor = None

    async def _read(self, ready: Callable[[], bool], deadline: float) -> bool:
        """Read as the reader until ``ready()`` or the connection is closed; False when
        ``deadline`` passed first."""
        self._reading = True
        self._successor = None
        try:
            while True:
                with trio.CancelScope(deadline=self._nearest(deadline)) as scope:
                    while True:
                        try:
                            data = await self.conn.receive_some()
                        except UpstreamBroken as exc:
                            self._fail(exc)
                            return True
                        self._receive(data)
                        self._wake_ready()
                        await self.send()  # acks, pings, settings
                        if ready() or self.closed:
                            return True
                        scope.deadline = self._nearest(deadline)
                now = trio.current_time()
                self._wake_expired(now)
                if deadline <= now:
                    return False
        finally:
            self._reading = False
            self._hand_over()

    def _nearest(self, deadline: float) -> float:
        """The reader's read ends by its own deadline or the nearest waiter's."""
        for _, theirs in self._waiters.values():
            if theirs < deadline:
                deadline = theirs
        return deadline

    def _wake_ready(self) -> None:
        """Wake every waiter whose condition holds now (all of them once closed)."""
        waiters = self._waiters
        if self.closed:
            woken = list(waiters)
        else:
            woken = [task for task, (ready, _) in waiters.items() if ready()]
        for task in woken:
            del waiters[task]  # only those still waiting stay listed
            _reschedule(task)

    def _hand_over(self) -> None:
        """Nobody reads: wake a waiter still waiting, to read in its place (unless one was
        woken for that already)."""
        if self.closed:
            self._wake_ready()
            return
        if self._reading or self._successor is not None:
            return
        if self._waiters:
            task = next(iter(self._waiters))
            del self._waiters[task]
            _reschedule(task)
            self._successor = task

    def _wake_expired(self, now: float) -> None:
        waiters = self._waiters
        for task in [task for task, (_, deadline) in waiters.items() if deadline <= now]:
            del waiters[task]
            _reschedule(task)

    def _receive(self, data: bytes | bytearray) -> None:
        if not data:
            self._fail(UpstreamBroken(f"upstream {self.address} closed the connection"))
            return
        try:
            events = self.h2.receive_data(bytes(data))
        except ProtocolError as exc:
            self._fail(UpstreamBroken(f"upstream {self.address} broke HTTP/2: {exc}"))
            return
        for event in events:
            stream_id = getattr(event, "stream_id", 0)
            if stream_id:
                response = self.streams.get(stream_id)
                if response is not None:
                    response.on_event(event)
            elif isinstance(event, ev.ConnectionTerminated):
                self._on_goaway(event)

    def _on_goaway(self, event: ev.ConnectionTerminated) -> None:
        self.goaway = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        for stream_id, response in self.streams.items():
            if stream_id > last and response.error is None:
                response.error = _Refused(f"upstream {self.address} sent GOAWAY")
        if event.error_code != ErrorCode.NO_ERROR:
            self._fail(UpstreamBroken(f"upstream {self.address} GOAWAY {event.error_code!r}"))

    def _fail(self, error: UpstreamBroken) -> None:
        """The connection is gone: every open stream fails with ``error``."""
        self.closed = True
        for response in self.streams.values():
            if response.error is None and not response.ended:
                response.error = error
        self._wake_ready()
        self.conn.close()

    def acknowledge(self, stream_id: int, length: int) -> None:
        try:  # noqa: SIM105  (per DATA frame: no context manager)
            self.h2.acknowledge_received_data(length, stream_id)
        except _H2Error:
            pass

    def finish(self, response: H2UpstreamResponse, *, clean: bool) -> None:
        """The exchange is over; reset the stream unless both sides ended cleanly."""
        self.streams.pop(response.stream_id, None)
        if not clean and not self.closed:
            with suppress(*_H2Error):
                self.h2.reset_stream(response.stream_id, ErrorCode.CANCEL)


class H2Pool:
    """The HTTP/2 connections of one ``UpstreamPool`` (which owns it), per endpoint."""

    def __init__(self, pool: ConnectionSource) -> None:
        self.pool = pool
        self._clients: dict[tuple[Any, ...], list[_H2Client]] = {}
        self._dialing: dict[tuple[Any, ...], trio.Lock] = {}

    def _usable(self, key: tuple[Any, ...]) -> _H2Client | None:
        clients = self._clients.get(key, [])
        if clients:
            newest = clients[-1]
            if newest.streams and newest.has_room():  # busy, so neither stale nor idle
                return newest
        now = trio.current_time()
        idle_limit = self.pool.limits.idle_timeout
        for client in list(clients):
            stale = not client.streams and now - client.idle_since > idle_limit
            if client.closed or (client.goaway and not client.streams) or stale:
                clients.remove(client)
                self._drop(client)
        return next((c for c in clients if c.has_room()), None)

    def _drop(self, client: _H2Client) -> None:
        client.closed = True
        self.pool.release(client.conn, reusable=False)

    async def client(
        self, endpoint: ir.Endpoint, backend: ir.Backend, *, fresh: bool = False
    ) -> _H2Client:
        """A connection with room for one more stream, dialled if none has room."""
        key = (endpoint.kind, endpoint.address, endpoint.port, backend.tls)
        found = None if fresh else self._usable(key)
        if found is not None:
            return found
        lock = self._dialing.setdefault(key, trio.Lock())
        async with lock:
            found = None if fresh else self._usable(key)
            if found is not None:
                return found
            conn = await self.pool.acquire(endpoint, backend, fresh=True)
            client = _H2Client(conn, self.pool.limits.read_timeout, trio.current_time())
            self._clients.setdefault(key, []).append(client)
            return client

    def release(self, client: _H2Client) -> None:
        if not client.streams:
            client.idle_since = trio.current_time()
            if client.closed or client.goaway:
                clients = self._clients.get(_client_key(client), [])
                if client in clients:
                    clients.remove(client)
                    self._drop(client)


def _client_key(client: _H2Client) -> tuple[Any, ...]:
    return client.conn.key


async def h2_exchange(
    h2pool: H2Pool,
    endpoint: ir.Endpoint,
    backend: ir.Backend,
    head: tuple[bytes, bytes, list[tuple[bytes, bytes]]],
    body: RequestBody,
    deliver: Callable[[H2UpstreamResponse], Awaitable[_R]],
) -> _R:
    """Send a request on an HTTP/2 stream to ``endpoint``; once the response head arrived,
    ``deliver`` takes the response (a callback, as ``UpstreamPool.exchange``: no context
    manager layer on every call).

    The body, if any, is sent by a task of its own while the response is read,
    as ``open_h1_exchange`` does. Once ``deliver`` returns, a stream that did not
    end cleanly both ways is reset (CANCEL).

    Raises:
        ConnectError, UpstreamBroken, UpstreamTimeout: as ``h1upstream.open_h1_exchange``.
    """
    method, target, headers = head
    fresh = False
    whole: bytes | None = None
    while True:
        client = await h2pool.client(endpoint, backend, fresh=fresh)
        reused = client.used
        client.used = True
        fields = http2.request_headers(method, target, headers, scheme=client.scheme)
        if whole is None and body.length != 0:
            whole = _take_whole(body, client)
        inline = body.length == 0 or whole is not None
        response = client.open_stream(fields, end=body.length == 0, head=method == b"HEAD")
        if whole is not None:
            client.h2.send_data(response.stream_id, whole, end_stream=True)
        sent = [inline]
        try:
            try:
                await client.send_request()
                if inline:
                    response.head = await _read_head(response)
            except UpstreamBroken as exc:
                if _may_retry(exc, reused, response, inline or not body.started):
                    fresh = True
                    continue
                raise
            if inline:
                return await deliver(response)
            with collapse_groups():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        _pump_body, client, response, body, sent, nursery.cancel_scope
                    )
                    try:
                        response.head = await _read_head(response)
                    except UpstreamBroken as exc:
                        nursery.cancel_scope.cancel()
                        if _may_retry(exc, reused, response, not body.started):
                            fresh = True
                            continue
                        raise
                    result = await deliver(response)
                    nursery.cancel_scope.cancel()
            return result
        finally:
            clean = response.ended and sent[0]
            client.finish(response, clean=clean)
            if not clean:
                with trio.move_on_after(1.0, shield=True):
                    with suppress(UpstreamError):
                        await client.send()
            h2pool.release(client)


def _may_retry(
    exc: UpstreamBroken, reused: bool, response: H2UpstreamResponse, resendable: bool
) -> bool:
    """A stream the server never processed, on a connection that turned out dead,
    of a request that can be sent again (``resendable``: no body taken, or kept whole)."""
    return resendable and response.received == 0 and (reused or isinstance(exc, _Refused))


def _take_whole(body: RequestBody, client: _H2Client) -> bytes | None:
    """The body in one piece when it has fully arrived and fits one DATA frame's credit.

    Kept by the caller, so a retry can send it again.
    """
    take = getattr(body, "take_whole", None)
    if take is None:
        return None
    h2conn = client.h2
    limit = min(
        h2conn.outbound_flow_control_window,
        h2conn.remote_settings.initial_window_size,
        h2conn.max_outbound_frame_size,
    )
    whole: bytes | None = take(limit)
    return whole


async def _read_head(response: H2UpstreamResponse) -> ResponseReceived:
    while True:
        event = await response.next_event()
        if isinstance(event, ResponseReceived):
            return event


async def _pump_body(
    client: _H2Client,
    response: H2UpstreamResponse,
    body: RequestBody,
    sent: list[bool],
    scope: trio.CancelScope,
) -> None:
    """Copy the request body to the stream within its flow-control window."""
    stream_id = response.stream_id
    h2conn = client.h2
    try:
        while True:
            data = await body.receive()
            if not data:
                trailers = http2.trailer_headers(body.trailers)
                if trailers:
                    h2conn.send_headers(stream_id, trailers, end_stream=True)
                else:
                    h2conn.end_stream(stream_id)
                await client.send()
                sent[0] = True
                return
            while data:
                window = h2conn.local_flow_control_window(stream_id)
                if window <= 0:
                    await client.wait_until(
                        lambda: (
                            h2conn.local_flow_control_window(stream_id) > 0
                            or response.error is not None
                            or client.closed
                        )
                    )
                    if response.error is not None or client.closed:
                        return  # the response side reports it
                    continue
                size = min(window, h2conn.max_outbound_frame_size, len(data))
                h2conn.send_data(stream_id, data[:size])
                data = data[size:]
            await client.send()
    except (UpstreamBroken, *_H2Error):
        return
    except Exception:
        scope.cancel()
        raise
