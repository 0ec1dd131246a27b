"""The HTTP/2 front end: one client connection (h2c prior knowledge or TLS ALPN "h2").

Theory of operation
-------------------
Three kinds of task share one ``H2Connection`` (``h2`` is the state machine;
only synchronous code between checkpoints touches it, so no lock is needed):

- the *reader* (the connection's own task) feeds received bytes to ``h2``
  and turns events into per-stream state: a new request starts a stream
  task, DATA is queued for that stream's body, a client RST_STREAM cancels
  the stream's task, WINDOW_UPDATE wakes streams waiting for window;
- a *stream worker* per request in flight runs ``proxy.handle_request`` with
  an ``H2Body`` (DATA frames, acknowledged for flow control only as the
  upstream takes them, which is the request-side backpressure) and an
  ``H2Writer`` (response → HEADERS/DATA/trailers). Workers are pooled
  (``net/workers.py``): a stream costs a wake-up of a parked task instead of
  a new task and a cancel scope of its own, and a client's RST_STREAM
  cancels the worker serving that stream. Parked workers end once the
  connection has been idle for ``_WORKER_LINGER`` seconds;
- the *writer* is the only task that writes to the socket. Stream tasks put
  frames into ``h2`` and wake it, so frames of many streams leave in one
  write. A stream that has queued more than ``_HIGH_WATER`` bytes waits for
  the writer (response-side backpressure, next to flow control), and a
  cancelled stream task can never leave half a frame on the wire.

Abuse ends the connection, never the gateway: ``h2`` closes with GOAWAY on
protocol errors, oversized header lists (HPACK bombs) and CONTINUATION
floods (it buffers at most 64 frames of one header block); we add a
rapid-reset budget (``ResetBudget``), a flow-control stall limit (a stream
waiting for window, or a write waiting for the socket, longer than
``stall_timeout``) and the keep-alive timeout while no stream is open.

Drain: the ``DrainSignal`` wakes the reader, which sends GOAWAY(NO_ERROR),
refuses new streams, and closes once the streams in flight are done (the
port's nursery deadline bounds that wait). A ``grpc-timeout`` bounds a gRPC
request; when it passes the client gets ``grpc-status: 4``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from typing import Any

import trio
from hyperframe.frame import GoAwayFrame

from edgegw.net import websocket
from edgegw.net.context import ClientAbort, HTTPConnectionContext, ProxyRequest
from edgegw.net.fastio import (
    READ_SIZE,
    FastSocket,
    NonBlockingIO,
    TimedOut,
    close_now,
    open_io,
)
from edgegw.net.heldhead import HeldHeadWriter
from edgegw.net.proxy import (
    Planned,
    answer_at_hand,
    carry_out,
    handle_request,
    plan_request,
)
from edgegw.net.tls_stream import TLSIO
from edgegw.net.workers import Worker, WorkerPool
from edgegw.proto import http2
from edgegw.proto.events import HeaderList, Headers
from edgegw.proto.h2codec import ErrorCode, H2Error, ProtocolError
from edgegw.proto.h2codec import events as ev

log = logging.getLogger("edgegw.net.h2")

_READ = READ_SIZE
_HIGH_WATER = 256 * 1024
_IDLE_WORKERS = 16  # parked stream workers kept per connection
_WORKER_LINGER = 1.0  # idle seconds after which a connection's parked workers end
_PARSED = 16  # request heads remembered parsed per connection (see ``_parse``)
_PARSED_SIZE = 2048  # ... when their fields hold at most this many bytes
_H2Error = (H2Error,)
_RequestReceived, _StreamEnded = ev.RequestReceived, ev.StreamEnded
_Parsed = tuple[http2.H2Request, float | None]


async def serve_h2_connection(
    stream: trio.abc.Stream,
    ctx: HTTPConnectionContext,
    *,
    limits: http2.H2Limits | None = None,
    received: bytes = b"",
) -> None:
    """Serve HTTP/2 on ``stream`` until either side ends it; closes ``stream``.

    Args:
        stream: the client connection.
        ctx: routing tables, upstream pool, limits and observer for this connection.
        limits: HTTP/2 settings and abuse thresholds.
        received: bytes already read from ``stream`` (the h2c preface that chose HTTP/2).
    """
    conn = H2ServerConnection(stream, ctx, limits or ctx.h2_limits or http2.H2Limits())
    try:
        await conn.run(received)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await close_now(stream)


class _GoawayOnDrain:
    """What a busy connection registers with the ``DrainSignal``: GOAWAY, streams go on."""

    __slots__ = ("_conn",)

    def __init__(self, conn: H2ServerConnection) -> None:
        self._conn = conn

    def cancel(self) -> None:
        if not self._conn.draining:
            self._conn._goaway()


class H2Stream:
    """Per-stream state the reader fills and the stream worker drains.

    The events exist only while the worker waits on them (each wait makes its own).
    """

    __slots__ = (
        "body_ended",
        "body_event",
        "chunks",
        "headers",
        "planned",
        "stream_id",
        "trailers",
        "window_event",
        "worker",
    )

    def __init__(self, stream_id: int, headers: HeaderList, body_ended: bool) -> None:
        self.stream_id = stream_id
        self.headers = headers  # the request head, as the codec validated it
        self.body_ended = body_ended
        self.chunks: deque[tuple[bytes, int]] = deque()
        self.trailers: Headers = ()  # request trailers, once the body ended with them
        self.body_event: trio.Event | None = None
        self.window_event: trio.Event | None = None
        self.worker: Worker[H2Stream] | None = None
        self.planned: Planned | None = None  # decided (and its upstream request begun)


class H2ServerConnection:
    """One client connection; see the module docstring."""

    def __init__(
        self, stream: trio.abc.Stream, ctx: HTTPConnectionContext, limits: http2.H2Limits
    ) -> None:
        self.stream = stream
        self.ctx = ctx
        ctx.protocol = "h2"
        self.limits = limits
        self.h2 = http2.server_connection(limits)
        self.streams: dict[int, H2Stream] = {}
        self.resets = http2.ResetBudget(limits.max_resets, limits.reset_window)
        self.draining = False
        self._nursery: trio.Nursery | None = None
        self._workers: WorkerPool[H2Stream] | None = None
        self._parsed: dict[tuple[tuple[bytes, bytes], ...], _Parsed] | None = None
        self._begun: list[H2Stream] | None = None  # upstream requests written in this read
        self._wake = trio.Event()
        self._queued = 0  # bytes handed to h2 since the writer last took them
        self._written = trio.Event()
        self._writing = False
        self._closing = False
        self._drain_hook = _GoawayOnDrain(self)
        self._raw_out = b""  # frames built here, not by h2 (the graceful GOAWAY)
        # ClientTrafficPolicy bufferLimit: smaller reads, and less queued for the writer
        self._read_size = ctx.read_size or _READ
        self._high_water = min(_HIGH_WATER, ctx.read_size) if ctx.read_size else _HIGH_WATER
        self._io = open_io(stream, ctx.read_size)
        io = self._io  # reads and writes that need no Stream round trip (plain socket, TLS)
        self._fast: NonBlockingIO | None = io if isinstance(io, FastSocket | TLSIO) else None
        # TLS inline encrypts and writes at once: no clock, no await when every record left
        self._write_nowait = io.write_nowait if isinstance(io, TLSIO) else None

    # --- the connection ---------------------------------------------------------------------

    async def run(self, received: bytes = b"") -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._writer)
            try:
                if not received or self._receive(received):
                    await self._read_loop()
            except ProtocolError as exc:
                log.debug("HTTP/2 client %s: %s", self.ctx.client, exc)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                nursery.cancel_scope.cancel()
                return
            await self._close_soon()

    async def _close_soon(self) -> None:
        """Let the writer send what is queued (a GOAWAY), then end every task."""
        self._closing = True
        self.wake()
        with trio.move_on_after(1.0):
            while self._wake.is_set() or self._writing:
                await self._written.wait()
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def _read_loop(self) -> None:
        turned = False  # a checkpoint passed since the last read
        while True:
            data = await self._next_read(turned)
            if not data:  # EOF, or the connection is to end (None)
                return
            turned = False
            try:
                if not self._receive(data):
                    return
                if self._begun:
                    # the others' turn, and the upstream's: then the answers are most often here
                    await trio.lowlevel.checkpoint()
                    turned = True
            finally:
                if self._begun:
                    self._answer_begun()

    async def _next_read(self, turned: bool) -> bytes | bytearray | None:
        """The next bytes from the client; None when the connection is to end.

        What is at hand already is read without a wait (and after a checkpoint, unless
        ``turned`` says one just passed: the other tasks must get their turn even when
        a client keeps the socket full, or a PING flood would pile up).
        """
        drain = self.ctx.drain
        while True:
            if drain.draining and not self.draining:
                self._goaway()
            if self.draining and not self.streams:
                return None
            io = self._fast
            if io is not None:
                data = io.recv_nowait()
                if data is not None:
                    if not turned:
                        await trio.lowlevel.checkpoint()
                    return data
            if self.streams:  # busy: a drain sends GOAWAY at once, streams go on
                drain.idle.add(self._drain_hook)
                try:
                    return await self._receive_busy()
                finally:
                    drain.idle.discard(self._drain_hook)
            received = await self._receive_idle()  # the keep-alive timeout or a drain ends it
            if received is not None:
                return received
            if not drain.draining:
                self._goaway()
                return None

    async def _receive_idle(self) -> bytes | bytearray | None:
        """One read while no stream is open; None when the keep-alive time or a drain ended
        the wait. Parked stream workers end once ``_WORKER_LINGER`` of it has passed."""
        drain, workers, io = self.ctx.drain, self._workers, self._fast
        now = trio.current_time()
        keepalive = now + self.ctx.limits.keepalive_timeout
        while True:
            deadline = keepalive
            if workers is not None and workers.idle:
                deadline = min(keepalive, now + _WORKER_LINGER)
            with trio.CancelScope(deadline=deadline) as scope:
                drain.idle.add(scope)
                try:
                    if io is None:
                        return await self.stream.receive_some(self._read_size)
                    return await io.recv(wait_first=True)  # ``_next_read`` found nothing
                finally:
                    drain.idle.discard(scope)
            now = trio.current_time()
            if drain.draining or now >= keepalive or workers is None:
                return None
            workers.release_idle()
            self._parsed = self.ctx.head_memo = None  # an idle connection keeps no heads

    async def _receive_busy(self) -> bytes | bytearray:
        """One read that waits (nothing was at hand)."""
        io = self._fast
        if io is None:
            return await self.stream.receive_some(self._read_size)
        return await io.recv(wait_first=True)  # a checkpoint

    def _receive(self, data: bytes | bytearray) -> bool:
        """Feed ``data`` to h2; False when the connection must end."""
        h2conn, streams = self.h2, self.streams
        events: list[Any] = h2conn.receive_data(data)
        for event in events:
            kind = type(event)
            if kind is _RequestReceived:  # a request and its end: no call to dispatch them
                self._start_stream(event)
            elif kind is _StreamEnded:
                st = streams.get(event.stream_id)
                if st is not None and not st.body_ended:
                    _body_ended(st)
            elif not self._on_event(event):
                return False
        if h2conn.has_data_to_send() or self._raw_out:  # acks, answers: else the streams
            self.wake()  # wake the writer when they have something to send
        return True

    def _on_event(self, event: Any) -> bool:
        """Every event but a request and a stream's end (``_receive`` takes those)."""
        kind = type(event)
        if kind is ev.DataReceived:
            st = self.streams.get(event.stream_id)
            if st is None:
                self._ack(event.stream_id, event.flow_controlled_length)
            else:
                st.chunks.append((event.data, event.flow_controlled_length))
                if st.body_event is not None:
                    st.body_event.set()
        elif kind is ev.TrailersReceived:
            st = self.streams.get(event.stream_id)
            if st is not None:
                st.trailers = tuple(http2.trailer_headers(event.headers))
                _body_ended(st)
        elif kind is ev.StreamReset:
            return self._on_reset(event)
        elif isinstance(event, ev.WindowUpdated | ev.RemoteSettingsChanged):
            stream_id = getattr(event, "stream_id", 0)
            for st in self.streams.values() if not stream_id else [self.streams.get(stream_id)]:
                if st is not None and st.window_event is not None:
                    st.window_event.set()
        elif isinstance(event, ev.ConnectionTerminated):
            self.draining = True
            return bool(self.streams)
        return True

    def _on_reset(self, event: ev.StreamReset) -> bool:
        st = self.streams.get(event.stream_id)
        if st is not None and st.worker is None and st.planned is not None:
            self._hand_over(st)  # begun in this read: its worker ends it
        if st is not None and st.worker is not None:
            st.worker.cancel()
        if event.remote_reset and self.resets.spend(trio.current_time()):
            log.warning("HTTP/2 client %s: too many stream resets; closing", self.ctx.client)
            self.h2.close_connection(ErrorCode.ENHANCE_YOUR_CALM)
            return False
        return True

    def _goaway(self) -> None:
        """A graceful GOAWAY (RFC 9113 section 6.8): no new streams, the open ones finish.

        h2 has no such mode: its ``close_connection`` moves the connection to
        CLOSED, after which it refuses every frame of the streams still open.
        So the frame is built here and h2 stays open; new streams are refused
        (``_start_stream``) and the connection ends once the last one did.
        """
        self.draining = True
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.h2.highest_inbound_stream_id
        frame.error_code = ErrorCode.NO_ERROR
        self._raw_out += frame.serialize()
        self.wake()

    def _start_stream(self, event: ev.RequestReceived) -> None:
        stream_id = event.stream_id
        if self.draining:
            self.h2.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
            return
        st = H2Stream(stream_id, event.headers, event.ended)
        self.streams[stream_id] = st
        if event.ended:
            planned = st.planned = self._plan(st)
            if planned is not None and planned.begun is not None:
                if self._begun is None:  # answered after the read, see ``_answer_begun``
                    self._begun = [st]
                else:
                    self._begun.append(st)
                return
        self._hand_over(st)

    def _hand_over(self, st: H2Stream) -> None:
        """Start the stream's worker."""
        workers = self._workers
        if workers is None:  # made with the first stream: an idle connection has none
            assert self._nursery is not None
            workers = self._workers = WorkerPool(self._nursery, self._run_stream, _IDLE_WORKERS)
        st.worker = workers.submit(st)

    def _answer_begun(self) -> None:
        """Answer the streams begun in the last read whose answers are all here; the others
        go to workers. A stream answered here costs no task switch at all."""
        begun, self._begun = self._begun or [], None
        for st in begun:
            if st.worker is not None:  # reset meanwhile: its worker has it
                continue
            planned = st.planned
            assert planned is not None
            writer = H2Writer(self, st)
            writer.head_request = planned.plan.req.method == "HEAD"
            try:
                done = answer_at_hand(planned, writer, self.ctx)
            except _H2Error:
                done = False
            if done:
                st.planned = None
                self._finish_stream(st, writer)  # wakes the writer
            else:
                self._hand_over(st)

    # --- writing ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Tell the writer that h2 has bytes to send."""
        self._wake.set()

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            data = self.h2.data_to_send()
            if self._raw_out:
                data, self._raw_out = data + self._raw_out, b""
            self._queued = 0
            if data and self._fast is not None:  # no timeout scope: fastio's watchdog
                if not await self._write_fast(self._fast, data):  # keeps the deadline
                    return
                data = b""
            if data:
                self._writing = True
                with trio.move_on_after(self.limits.stall_timeout) as scope:
                    try:
                        await self.stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        scope.cancel()
                self._writing = False
                if scope.cancelled_caught:
                    log.debug("HTTP/2 client %s: write failed or stalled", self.ctx.client)
                    assert self._nursery is not None
                    self._nursery.cancel_scope.cancel()
                    return
            written, self._written = self._written, trio.Event()
            written.set()

    async def _write_fast(self, io: NonBlockingIO, data: bytes) -> bool:
        """Write through the fast I/O; False (and every task ended) when it failed or stalled."""
        self._writing = True
        try:
            if self._write_nowait is not None:
                if self._write_nowait(data):
                    return True
                data = b""  # encrypted already: the records left wait inside ``io``
            await io.send_all(data, trio.current_time() + self.limits.stall_timeout)
        except (TimedOut, trio.BrokenResourceError, trio.ClosedResourceError):
            log.debug("HTTP/2 client %s: write failed or stalled", self.ctx.client)
            assert self._nursery is not None
            self._nursery.cancel_scope.cancel()
            return False
        finally:
            self._writing = False
        return True

    async def flush(self) -> None:
        """Wake the writer; wait for it while too much is queued."""
        self._wake.set()
        while self._queued > self._high_water:
            await self._written.wait()

    def _ack(self, stream_id: int, length: int) -> None:
        if length:
            try:  # noqa: SIM105  (per DATA frame: no context manager)
                self.h2.acknowledge_received_data(length, stream_id)
            except _H2Error:
                pass

    async def wait_window(self, st: H2Stream) -> None:
        """Wait until the stream may send; a stall past ``stall_timeout`` ends the connection."""
        st.window_event = event = trio.Event()
        with trio.move_on_after(self.limits.stall_timeout) as scope:
            await event.wait()
        if scope.cancelled_caught:
            log.info("HTTP/2 client %s: flow-control stall; closing", self.ctx.client)
            self.h2.close_connection(ErrorCode.FLOW_CONTROL_ERROR)
            self.wake()
            assert self._nursery is not None
            self._nursery.start_soon(self._close_soon)
            raise ClientAbort("flow-control stall")

    async def send_body(self, st: H2Stream, data: bytes, *, end: bool = False) -> None:
        """DATA frames within the flow-control windows; ``end`` sets END_STREAM on the last."""
        h2conn, stream_id = self.h2, st.stream_id
        size = len(data)
        if (
            data
            and size <= h2conn.max_outbound_frame_size
            and size <= h2conn.local_flow_control_window(stream_id)
        ):  # the common case: one frame, window to spare
            h2conn.send_data(stream_id, data, end_stream=end)
            self._queued += size
            data = b""
        while data:
            window = h2conn.local_flow_control_window(stream_id)
            if window <= 0:
                await self.flush()
                await self.wait_window(st)
                continue
            size = min(window, h2conn.max_outbound_frame_size, len(data))
            h2conn.send_data(stream_id, data[:size], end_stream=end and size == len(data))
            data = data[size:]
            self._queued += size
        await self.flush()

    # --- streams ----------------------------------------------------------------------------

    async def _run_stream(self, st: H2Stream) -> None:
        """Serve one stream (on a pooled worker: a client's reset cancels it from outside)."""
        writer = H2Writer(self, st)
        try:
            await self._serve_stream(st, writer)
        except (ClientAbort, *_H2Error) as exc:
            log.debug("HTTP/2 stream %d: %s", st.stream_id, exc)
        finally:
            self._finish_stream(st, writer)

    def _parse(self, headers: HeaderList) -> _Parsed:
        """``parse_request`` and ``grpc_deadline`` of a request head, remembered.

        A client repeats its request heads (h2load, a page's assets, gRPC calls);
        both are pure functions of the fields, and nothing changes a parsed head
        (``H2Request`` is frozen and its fields list is only read). Only small heads
        are kept, and at most ``_PARSED`` of them, so the memory stays bounded.

        Raises:
            ValueError, UnicodeDecodeError: as ``parse_request``.
        """
        key = tuple(headers)
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = {}
        else:
            found = parsed.get(key)
            if found is not None:
                return found
        head = http2.parse_request(headers)
        found = (head, http2.grpc_deadline(head.headers))
        if sum(len(name) + len(value) for name, value in key) <= _PARSED_SIZE:
            if len(parsed) >= _PARSED:
                parsed.clear()
            parsed[key] = found
        return found

    async def _serve_stream(self, st: H2Stream, writer: H2Writer) -> None:
        planned = st.planned
        if planned is not None:
            st.planned = None
            writer.head_request = planned.plan.req.method == "HEAD"
            return await carry_out(planned, writer, self.ctx)
        try:
            head, timeout = self._parse(st.headers)
        except (ValueError, UnicodeDecodeError):
            return await writer.simple(400)
        if head.method == "CONNECT":
            if head.protocol != "websocket":
                return await writer.simple(501)
            body = H2Body(self, st, None, timeout=websocket.IDLE_TIMEOUT)
            request = ProxyRequest(
                "CONNECT", head.path, head.query, head.authority, head.host, head.headers, body
            )
            tunnel = websocket.H2Tunnel(self._read_size)
            return await handle_request(request, writer, self.ctx, tunnel)
        writer.head_request = head.method == "HEAD"
        request = ProxyRequest(
            head.method,
            head.path,
            head.query,
            head.authority,
            head.host,
            head.headers,
            _NO_BODY if st.body_ended and not st.chunks else H2Body(self, st, head.content_length),
        )
        if timeout is None:
            return await handle_request(request, writer, self.ctx)
        with trio.move_on_after(timeout):
            return await handle_request(request, writer, self.ctx)
        await writer.grpc_deadline_exceeded()
        return None

    def _plan(self, st: H2Stream) -> Planned | None:
        """Decide a body-less request now, and begin its upstream exchange when it can.

        The stream's worker then finds its answer waiting, most often, instead of
        writing the request and yielding so that the answer can arrive: the
        requests of one read all leave before any of them is waited for. None for
        what the worker handles from the start (a bad head, CONNECT, gRPC deadlines).
        """
        try:
            head, timeout = self._parse(st.headers)
        except (ValueError, UnicodeDecodeError):
            return None
        if timeout is not None or head.method == "CONNECT":
            return None
        request = ProxyRequest(
            head.method, head.path, head.query, head.authority, head.host, head.headers, _NO_BODY
        )
        return plan_request(request, self.ctx)

    def _finish_stream(self, st: H2Stream, writer: H2Writer) -> None:
        self.streams.pop(st.stream_id, None)
        for _data, length in st.chunks:
            self._ack(st.stream_id, length)
        st.chunks.clear()
        if not writer.ended or not st.body_ended:
            code = ErrorCode.NO_ERROR if writer.ended else ErrorCode.INTERNAL_ERROR
            with contextlib.suppress(*_H2Error):
                self.h2.reset_stream(st.stream_id, code)
        self.wake()
        if self.draining and not self.streams and self._nursery is not None:
            self._nursery.start_soon(self._close_soon)


class H2Body:
    """A request body from DATA frames; window is given back as the upstream reads."""

    def __init__(
        self,
        conn: H2ServerConnection,
        st: H2Stream,
        length: int | None,
        *,
        timeout: float | None = None,
    ) -> None:
        self._conn = conn
        self._st = st
        self.length = 0 if st.body_ended and not st.chunks else length
        self.finished = self.length == 0
        self._timeout = conn.ctx.limits.body_timeout if timeout is None else timeout
        whole = conn.ctx.limits.request_timeout if timeout is None else 0.0
        if whole and not self.finished:  # a body to wait for: the clock runs from now
            self._deadline = trio.current_time() + whole
        else:
            self._deadline = math.inf
        self.started = False
        self.received = 0

    async def receive(self) -> bytes:
        if self.finished:
            return b""
        self.started = True
        st, conn = self._st, self._conn
        while not st.chunks and not st.body_ended:
            st.body_event = event = trio.Event()
            with trio.move_on_at(min(trio.current_time() + self._timeout, self._deadline)) as scope:
                await event.wait()
            if scope.cancelled_caught:
                raise ClientAbort("request body timed out")
        if not st.chunks:
            self.finished = True
            return b""
        data, length = st.chunks.popleft()
        conn._ack(st.stream_id, length)
        conn.wake()
        self.received += len(data)
        return data

    @property
    def trailers(self) -> Headers:
        """The request's trailers, once ``receive`` returned the end."""
        return self._st.trailers

    def take_whole(self, limit: int) -> bytes | None:
        """The whole body at once if all of it arrived and it is at most ``limit`` bytes.

        ``None`` (and nothing taken) otherwise. A gRPC unary call arrives as
        HEADERS + DATA + END_STREAM: forwarding it whole needs no body task.
        """
        st = self._st
        if self.started or not st.body_ended or st.trailers:
            return None
        chunks = st.chunks
        if len(chunks) == 1:  # the usual unary call: one DATA frame
            data, length = chunks[0]
            if len(data) > limit:
                return None
        else:
            if sum(len(data) for data, _ in chunks) > limit:
                return None
            data = b"".join([data for data, _ in chunks])
            length = sum([length for _, length in chunks])
        self.started = self.finished = True
        size = len(data)
        self._conn._ack(st.stream_id, length)
        chunks.clear()
        self._conn.wake()
        self.received += size
        return data


class _NoBody:
    """The body of a request whose HEADERS ended the stream: nothing to wait for or ack.

    One shared instance: it has no state to change (``take_whole`` of nothing is nothing).
    """

    __slots__ = ()
    length: int | None = 0
    started: bool = False
    finished: bool = True
    received: int = 0
    trailers: Headers = ()

    async def receive(self) -> bytes:
        return b""

    def take_whole(self, limit: int) -> bytes:
        return b""


_NO_BODY = _NoBody()


class H2Writer(HeldHeadWriter):
    """``ResponseWriter`` on one stream: the head waits for the first DATA or the end,
    and each piece of body waits for the next one, a flush or the end.

    Holding the head back lets a body-less answer (a gRPC "trailers-only"
    status, a redirect) leave as a single HEADERS frame with END_STREAM;
    holding the last piece back lets it carry END_STREAM, instead of an empty
    DATA frame after it (a frame fewer per response, h2's costliest work).
    """

    def __init__(self, conn: H2ServerConnection, st: H2Stream) -> None:
        super().__init__()
        self._conn = conn
        self._st = st
        self._held = b""  # body not handed to h2 yet

    def _send_pending_head(self, *, end: bool = False) -> None:
        if self._head is not None:
            self._conn.h2.send_headers(self._st.stream_id, self._head, end_stream=end)
            self._head = None

    def send_whole(
        self, status: int, headers: HeaderList, body: bytes, content_length: int | None = None
    ) -> bool:
        """Head and body queued as one answer, with no wait (``proxy.answer_at_hand``);
        False, and nothing queued, when they do not fit in one go or too much is queued."""
        conn = self._conn
        if self.head_request or self.head_sent or conn._queued > conn._high_water:
            return False
        head = http2.response_headers(status, headers)
        if not conn.h2.send_response(self._st.stream_id, head, body):
            return False
        self.head_sent = self.ended = True
        self.status = status
        self.bytes_sent = len(body)
        conn._queued += len(body)
        return True

    async def send_data(self, data: bytes) -> None:
        if self._no_body or not data:
            return
        self.bytes_sent += len(data)
        if self._held:
            await self._send_held(end=False)
        self._held = data

    async def _send_held(self, *, end: bool) -> None:
        self._send_pending_head()
        data, self._held = self._held, b""
        await self._conn.send_body(self._st, data, end=end)

    async def flush(self) -> None:
        if self._held:
            await self._send_held(end=False)
            return
        self._send_pending_head()
        await self._conn.flush()

    async def end(self, trailers: Headers = ()) -> None:
        conn, stream_id = self._conn, self._st.stream_id
        h2conn, held, head = conn.h2, self._held, self._head
        extra = http2.trailer_headers(trailers) if trailers else None
        # the common case, a head and one piece of body (and gRPC's trailers), in one go
        if head is not None and held and h2conn.send_response(stream_id, head, held, extra or None):
            self._head, self._held, self.ended = None, b"", True
            conn._queued += len(held)
            return await conn.flush()
        ended_by_data = bool(self._held) and not extra
        if self._held:
            await self._send_held(end=ended_by_data)
        if extra:
            self._send_pending_head()
            h2conn.send_headers(stream_id, extra, end_stream=True)
        elif self._head is not None:
            self._send_pending_head(end=True)
        elif not ended_by_data:
            h2conn.end_stream(stream_id)
        self.ended = True
        await self._conn.flush()


def _body_ended(st: H2Stream) -> None:
    st.body_ended = True
    if st.body_event is not None:
        st.body_event.set()
