"""The HTTP/3 front end: one QUIC connection, its request streams adapted to the proxy.

Theory of operation
-------------------
aioquic is sans-IO: ``QuicConnection`` takes datagrams and the time, and
gives datagrams, events and the next timer; ``H3Connection`` turns its
stream events into HTTP/3 events. The socket loop (``net/quic.py``) hands
each datagram of this connection to ``datagram_received`` synchronously; the
connection's own task (``run``) then drains events, sends what aioquic
queued and sleeps until the next datagram, the next QUIC timer or the
handshake deadline. Only synchronous code between checkpoints touches the
two state machines, so no lock is needed (as ``net/h2server.py``).

Each request stream runs ``proxy.handle_request`` in its own task, like an
HTTP/2 stream: ``H3Body`` is the request body (DATA as it arrives) and
``H3Writer`` the response (HEADERS, DATA, trailers), both in
``net/h3stream.py``, so every HTTP/3 request goes through the one decision
and the one forward step with its filters and policies.

Bounds (an attacker chooses every byte):

- streams: at most ``max_streams`` requests at once; more are refused with
  H3_REQUEST_REJECTED (aioquic's own stream credit is 128);
- a request head: ``max_head_bytes`` of stream data before its HEADERS
  frame is whole, else the stream is reset (too large to parse); then at
  most ``max_headers`` fields and ``max_head_bytes`` after QPACK, else 431.
  QPACK's dynamic table is off (capacity 0 in our SETTINGS, ``_H3``), so a
  small encoded head cannot expand into a huge one by referencing a large
  table entry again and again (a "QPACK bomb"): the static table's longest
  entry bounds the expansion;
- a malformed head (RFC 9114 section 4.1.2, the same checks as HTTP/2's,
  ``h2codec.validate.check_request``): the stream is reset with
  H3_MESSAGE_ERROR, never forwarded;
- request bodies: aioquic raises its flow-control windows as data arrives,
  not as it is consumed, so backpressure is ours: while more than
  ``body_buffer`` bytes of this connection's request bodies wait for their
  upstreams, its datagrams are dropped unread (the client retransmits them
  later, as it would through a full router queue) and the windows stop
  growing, since aioquic raises them only for data it has received;
- responses: a writer waits while its stream holds more than
  ``_HIGH_WATER`` unacknowledged bytes, at most ``stall_timeout``;
- time: the handshake within ``handshake_timeout``; QUIC's idle timeout
  (the HTTP keep-alive timeout) ends a silent connection.

Drain: the port's ``DrainSignal`` closes an idle connection at once (QUIC
CONNECTION_CLOSE with H3_NO_ERROR); a busy one refuses new streams and
closes when its last stream is done, within the port's grace.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pylsqpack
import trio
from aioquic.h3.connection import ErrorCode, H3Connection, ProtocolError
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.h3.exceptions import H3Error
from aioquic.quic import events as qe
from aioquic.quic.connection import QuicConnection

from edgegw.net.context import ClientAbort, HTTPConnectionContext, ProxyRequest
from edgegw.net.h3stream import H3Body, H3Stream, H3Writer
from edgegw.net.proxy import handle_request
from edgegw.proto import http2
from edgegw.proto.events import HeaderList
from edgegw.proto.h2codec.errors import StreamError
from edgegw.proto.h2codec.validate import check_request

log = logging.getLogger("edgegw.net.h3")

_HIGH_WATER = 256 * 1024
# What aioquic raises when a stream cannot take a frame any more (reset, stopped, finished).
_SEND_ERRORS = (RuntimeError, ValueError, H3Error, ProtocolError)
Address = Any  # what the socket gives as a datagram's source (a tuple)


@dataclass(frozen=True, slots=True)
class H3Limits:
    """What one HTTP/3 connection (and one port's QUIC socket) may take."""

    max_connections: int = 1024  # per port; Initials beyond it are dropped
    max_streams: int = 100  # concurrent requests per connection
    max_head_bytes: int = 32 * 1024  # a request head, QPACK-encoded and decoded
    max_headers: int = 100
    handshake_timeout: float = 10.0
    stall_timeout: float = 30.0  # a response write the client does not acknowledge
    body_buffer: int = 1024 * 1024  # request body bytes queued per connection
    retry_above: int = 64  # handshakes in flight beyond which Initials get a Retry


class H3ServerConnection:
    """One QUIC connection serving HTTP/3; see the module docstring."""

    def __init__(
        self,
        quic: QuicConnection,
        send: Callable[[bytes, Address], None],
        ctx: HTTPConnectionContext,
        limits: H3Limits,
    ) -> None:
        self.quic = quic
        self.h3 = _H3(quic)
        self.ctx = ctx
        ctx.protocol = "h3"
        self.limits = limits
        self._send = send
        self.on_cid: Callable[[bytes, bool], None] = _no_cid  # connection IDs issued, retired
        self.streams: dict[int, H3Stream] = {}
        self._head_bytes: dict[int, int] = {}  # stream data before a request's HEADERS
        self.buffered = 0  # request body bytes received, not yet taken upstream
        self.dropped = 0  # datagrams dropped while ``buffered`` was over the limit
        self.handshake_done = False
        self.terminated = False
        self.draining = False
        self._wake = trio.Event()
        self._progress = trio.Event()  # set whenever the peer's datagrams were taken
        self._received = False  # a datagram since the last ``_process_events``
        self._nursery: trio.Nursery | None = None

    # --- the socket loop's side -------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """One datagram of this connection (synchronous; the task does the rest)."""
        if self.buffered > self.limits.body_buffer:
            self.dropped += 1  # backpressure: see the module docstring
            return
        self.quic.receive_datagram(data, addr, trio.current_time())
        self._received = True
        self._wake.set()

    def close(self, code: int = ErrorCode.H3_NO_ERROR) -> None:
        """Close the connection (CONNECTION_CLOSE goes out at the next transmit)."""
        self.quic.close(error_code=code)
        self._wake.set()

    # --- the connection task ----------------------------------------------------------------

    async def run(self) -> None:
        """Serve until the connection ends; every stream task ends with it."""
        handshake_deadline = trio.current_time() + self.limits.handshake_timeout
        drain = self.ctx.drain
        drain.idle.add(self)  # a drain wakes the task, which then closes or refuses streams
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                while True:
                    self._process_events()
                    if drain.draining and not self.draining:
                        self._start_drain()
                    self._transmit()
                    if self.terminated:
                        break
                    now = trio.current_time()
                    if not self.handshake_done and now >= handshake_deadline:
                        log.debug("QUIC client %s: handshake too slow", self.ctx.client)
                        break
                    await self._sleep(handshake_deadline)
                nursery.cancel_scope.cancel()
        finally:
            drain.idle.discard(self)
            self.terminated = True

    def cancel(self) -> None:
        """The ``DrainSignal`` calls this: wake the task, which sees the drain."""
        self._wake.set()

    async def _sleep(self, handshake_deadline: float) -> None:
        """Until a datagram, a drain, or the next timer; then run the timer if due."""
        timer = self.quic.get_timer()
        wake_at = timer if timer is not None else math.inf
        if not self.handshake_done:
            wake_at = min(wake_at, handshake_deadline)
        with trio.move_on_at(wake_at):
            await self._wake.wait()
        self._wake = trio.Event()
        if timer is not None and trio.current_time() >= timer:
            self.quic.handle_timer(trio.current_time())

    def _transmit(self) -> None:
        for data, addr in self.quic.datagrams_to_send(trio.current_time()):
            self._send(data, addr)

    def _start_drain(self) -> None:
        self.draining = True
        if not self.streams:
            self.close()

    def wake(self) -> None:
        """Tell the connection task that aioquic has something to send."""
        self._wake.set()

    # --- events -----------------------------------------------------------------------------

    def _process_events(self) -> None:
        progressed, self._received = self._received, False  # ACKs come without an event
        while (event := self.quic.next_event()) is not None:
            progressed = True
            if isinstance(event, qe.StreamDataReceived) and not self._head_ok(event):
                continue
            self._on_quic_event(event)
            for h3_event in self.h3.handle_event(event):
                self._on_h3_event(h3_event)
        if progressed:
            progress, self._progress = self._progress, trio.Event()
            progress.set()

    def _on_quic_event(self, event: qe.QuicEvent) -> None:
        if isinstance(event, qe.ConnectionIdIssued):
            self.on_cid(event.connection_id, True)
        elif isinstance(event, qe.ConnectionIdRetired):
            self.on_cid(event.connection_id, False)
        elif isinstance(event, qe.HandshakeCompleted):
            self.handshake_done = True
        elif isinstance(event, qe.ConnectionTerminated):
            self.terminated = True
        elif isinstance(event, qe.StreamReset | qe.StopSendingReceived):
            self._head_bytes.pop(event.stream_id, None)
            st = self.streams.get(event.stream_id)
            if st is not None:
                st.scope.cancel()

    def _head_ok(self, event: qe.StreamDataReceived) -> bool:
        """Bound the bytes a request stream may send before its HEADERS frame is whole."""
        sid = event.stream_id
        if sid % 4 != 0 or sid in self.streams:
            return True  # not a request stream, or its head already arrived
        seen = self._head_bytes.get(sid, 0) + len(event.data)
        if seen <= self.limits.max_head_bytes:
            if event.end_stream:
                self._head_bytes.pop(sid, None)
            elif len(self._head_bytes) < 2 * self.limits.max_streams or sid in self._head_bytes:
                self._head_bytes[sid] = seen
            else:  # streams opened and left half-sent, by the hundred
                self.close(ErrorCode.H3_EXCESSIVE_LOAD)
            return True
        self._head_bytes.pop(sid, None)
        self._abort_stream(sid, ErrorCode.H3_EXCESSIVE_LOAD)
        return False

    def _on_h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            st = self.streams.get(event.stream_id)
            if st is None:
                self._head_bytes.pop(event.stream_id, None)
                if any(name == b":method" for name, _ in event.headers):
                    self._start_stream(event)  # else: trailers of a stream already done
                return
            st.trailers = tuple(http2.trailer_headers(event.headers))
            st.body_ended = st.body_ended or event.stream_ended
            st.body_event.set()
        elif isinstance(event, DataReceived):
            st = self.streams.get(event.stream_id)
            if st is None:
                return  # the stream's task is done; its body is not wanted
            if event.data:
                st.chunks.append(event.data)
                self.buffered += len(event.data)
            st.body_ended = st.body_ended or event.stream_ended
            st.body_event.set()

    def _abort_stream(self, sid: int, code: int) -> None:
        """Refuse a request stream both ways (a stream we never answer)."""
        with contextlib.suppress(ValueError):  # aioquic no longer knows it: nothing to stop
            self.quic.stop_stream(sid, code)
        with contextlib.suppress(ValueError):
            self.quic.reset_stream(sid, code)

    def _start_stream(self, event: HeadersReceived) -> None:
        sid = event.stream_id
        if sid % 4 != 0:
            return
        if self.draining or len(self.streams) >= self.limits.max_streams:
            self._abort_stream(sid, ErrorCode.H3_REQUEST_REJECTED)
            return
        st = H3Stream(sid, body_ended=event.stream_ended)
        self.streams[sid] = st
        headers: HeaderList | None = event.headers
        limits = self.limits
        size = sum(len(name) + len(value) for name, value in event.headers)
        if len(event.headers) > limits.max_headers + 4 or size > limits.max_head_bytes:
            headers = None  # 431, and the decoded fields are not kept until the task runs
        assert self._nursery is not None
        self._nursery.start_soon(self._run_stream, st, headers)

    # --- streams ----------------------------------------------------------------------------

    async def _run_stream(self, st: H3Stream, headers: HeaderList | None) -> None:
        writer = H3Writer(self, st)
        try:
            with st.scope:
                await self._serve_stream(st, headers, writer)
        except (ClientAbort, *_SEND_ERRORS) as exc:
            log.debug("HTTP/3 stream %d: %s", st.stream_id, exc)
        finally:
            self._finish_stream(st, writer)

    async def _serve_stream(
        self, st: H3Stream, headers: HeaderList | None, writer: H3Writer
    ) -> None:
        if headers is None:  # too many fields or bytes (the four pseudo-headers come on top)
            return await writer.simple(431)
        try:
            check_request(st.stream_id, headers, connect_protocol=False)
            head = http2.parse_request(headers)
        except (StreamError, ValueError, UnicodeDecodeError) as exc:
            log.debug("HTTP/3 stream %d: malformed head: %s", st.stream_id, exc)
            self._abort_stream(st.stream_id, ErrorCode.H3_MESSAGE_ERROR)
            writer.ended = True  # nothing more to send on it
            return None
        if head.method == "CONNECT":
            return await writer.simple(501)  # no RFC 9220 WebSockets over HTTP/3
        writer.head_request = head.method == "HEAD"
        body = H3Body(self, st, head.content_length)
        request = ProxyRequest(
            head.method, head.path, head.query, head.authority, head.host, head.headers, body
        )
        timeout = http2.grpc_deadline(head.headers)
        if timeout is None:
            return await handle_request(request, writer, self.ctx)
        with trio.move_on_after(timeout):  # as over HTTP/2: past it, grpc-status 4
            return await handle_request(request, writer, self.ctx)
        await writer.grpc_deadline_exceeded()
        return None

    def _finish_stream(self, st: H3Stream, writer: H3Writer) -> None:
        self.streams.pop(st.stream_id, None)
        self.buffered -= sum(len(chunk) for chunk in st.chunks)
        st.chunks.clear()
        if not writer.ended:
            self._abort_stream(st.stream_id, ErrorCode.H3_INTERNAL_ERROR)
        elif not st.body_ended:  # answered before the whole body came: stop it (RFC 9114 4.1)
            with contextlib.suppress(ValueError):
                self.quic.stop_stream(st.stream_id, ErrorCode.H3_NO_ERROR)
        if self.draining and not self.streams:
            self.close()
        self.wake()

    # --- response backpressure --------------------------------------------------------------

    async def wait_sent(self, st: H3Stream) -> None:
        """Wait while the stream holds more than ``_HIGH_WATER`` unacknowledged bytes."""
        self.wake()
        deadline = trio.current_time() + self.limits.stall_timeout
        while _unacknowledged(self.quic, st.stream_id) > _HIGH_WATER:
            if self.terminated:
                raise ClientAbort("connection closed")
            progress = self._progress
            with trio.move_on_at(deadline):
                await progress.wait()
            if trio.current_time() >= deadline:
                raise ClientAbort("response not acknowledged in time")


class _H3(H3Connection):
    """aioquic's HTTP/3 connection with QPACK's dynamic table off (see the module docstring).

    aioquic fixes the table at 4,096 bytes in ``__init__`` and sends it in
    SETTINGS from there; this reads both from private names (``aioquic>=1,<2``),
    and ``tests/net/test_h3_server.py`` checks the SETTINGS that go out.
    """

    def __init__(self, quic: QuicConnection) -> None:
        super().__init__(quic)
        self._decoder = pylsqpack.Decoder(0, 0)

    def _get_local_settings(self) -> dict[int, int]:
        self._max_table_capacity = 0
        self._blocked_streams = 0
        return super()._get_local_settings()


def _no_cid(cid: bytes, issued: bool) -> None:
    del cid, issued


def _unacknowledged(quic: QuicConnection, stream_id: int) -> int:
    """Bytes of a stream aioquic still holds for (re)transmission.

    aioquic offers no public accessor; this reads its stream sender's buffer
    (``aioquic>=1,<2``) and says 0 if that changes, which only loses the
    response-side backpressure, never correctness.
    """
    stream = getattr(quic, "_streams", {}).get(stream_id)
    buffer = getattr(getattr(stream, "sender", None), "_buffer", b"")
    return len(buffer)
