"""The HTTP/1.1 front end: one client connection, from first byte to close.

Theory of operation
-------------------
``serve_http_connection`` loops: wait for a request head, hand it to
``proxy.handle_request`` with a body reader and a response writer, then
decide whether the connection may carry another request. There is no task
per request and no task per connection beyond the caller's: the hot path is
parse → route → one upstream write → one upstream read → one client write.

Timeouts: between requests the connection may idle for ``keepalive_timeout``
(then it is closed silently, or at once when draining starts, since idle waits
register their cancel scope with the ``DrainSignal``); once the first byte of a
head arrived the whole head must follow within ``header_timeout``, else 408 and
close (slowloris); a request body must keep up ``body_min_rate`` while we wait
for it and no read may stall for more than ``body_timeout``; one response write
the client does not take within ``send_timeout`` ends the connection.

Keep-alive ends after a response when the client asked for it, when draining
(the response then says ``Connection: close``), when the request body was not
read to its end (an early answer), and after an Upgrade request: a WebSocket
upgrade is decided like any request and, when the plan forwards it, the
connection becomes a ``websocket.H1Tunnel``; other upgrades are answered as
plain requests.

Pipelining is safe because requests are answered strictly in order and the
parser queues any requests that arrived early.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Protocol

import trio

from edgegw.net import websocket
from edgegw.net.context import (
    ClientAbort,
    DrainSignal,
    HTTPConnectionContext,
    HTTPLimits,
    NullObserver,
    Observer,
    ProxyRequest,
    RequestRecord,
)
from edgegw.net.fastio import ByteIO, TimedOut, close_now, open_io
from edgegw.net.proxy import answer_at_hand, carry_out, handle_request, plan_request
from edgegw.proto.events import (
    ConnectionClosed,
    DataReceived,
    HeaderList,
    Headers,
    MessageEnded,
    RequestReceived,
)
from edgegw.proto.http1 import (
    CaseKeepingRequestParser,
    ProtocolError,
    RequestParser,
    reason_phrase,
    serialize_chunk,
    serialize_last_chunk,
    serialize_response_head,
    strip_hop_by_hop,
)
from edgegw.proto.rate import RateFloor
from edgegw.proto.sniff import H2_PREFACE
from edgegw.proto.target import split_host

__all__ = [
    "DrainSignal",
    "HTTPConnectionContext",
    "HTTPLimits",
    "NullObserver",
    "Observer",
    "RequestRecord",
    "serve_http_connection",
]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HEAD_KEPT = 2048  # the longest serialised response head a connection keeps for the next


class H2CHandler(Protocol):
    """Takes over a connection whose first bytes are the HTTP/2 preface (h2c)."""

    async def __call__(
        self, stream: trio.abc.Stream, ctx: HTTPConnectionContext, *, received: bytes
    ) -> None: ...


async def serve_http_connection(
    stream: trio.abc.Stream,
    ctx: HTTPConnectionContext,
    *,
    h2c: H2CHandler | None = None,
    received: bytes = b"",
) -> None:
    """Serve HTTP/1.1 requests on ``stream`` until either side ends it; closes ``stream``.

    Args:
        stream: the client connection (plain or TLS).
        ctx: routing tables, upstream pool, limits and observer for this connection.
        h2c: where a connection opening with the HTTP/2 preface goes (prior
            knowledge h2c), with the bytes read so far; None to serve HTTP/1.1 only.
        received: bytes already read from ``stream`` (after a PROXY header).
    """
    conn = _Connection(stream, ctx)
    try:
        if h2c is not None:
            first = await conn.read_first(received)
            if first.startswith(H2_PREFACE):
                return await h2c(stream, ctx, received=first)
            conn.parser.receive_data(first)
        elif received:
            conn.parser.receive_data(received)
        await conn.run()
    except (trio.BrokenResourceError, trio.ClosedResourceError, ClientAbort, TimedOut):
        pass
    finally:
        conn.parser.release()
        await close_now(stream)


class _Connection:
    def __init__(self, stream: trio.abc.Stream, ctx: HTTPConnectionContext) -> None:
        self.stream = stream  # for protocols that take the connection over (WebSocket)
        self.io = open_io(stream, ctx.read_size)
        self._recv_nowait: Callable[[], bytes | None] | None = getattr(self.io, "recv_nowait", None)
        self.ctx = ctx
        limits = ctx.limits
        kind = CaseKeepingRequestParser if limits.preserve_case else RequestParser
        self.parser = kind(max_head_bytes=limits.max_head_bytes, max_headers=limits.max_headers)
        # Body and writer hold what they use, not the connection: no reference cycle, so
        # a closed connection goes with reference counting, not the cyclic collector.
        self.body = _Body(self.io, self.parser, ctx.limits)
        self.writer = _Writer(self.io, self.body, ctx.drain, limits)
        # the last request head the parser remembered, and what ``_proxy_request`` made of it
        self._framed: tuple[RequestReceived, _Framed] | None = None

    async def run(self) -> None:
        parser = self.parser
        served = False
        while True:
            try:
                event = parser.next_event()
                if served:
                    # Let the others run first: a pipelined request would never yield, and
                    # by then the next one has often arrived (finding it with a read costs
                    # less than registering a wait; measured under wrk, -8% CPU/request).
                    await trio.lowlevel.checkpoint()
                    if event is None:
                        event = self._head_at_hand()
                if event is None:
                    # After a read found nothing at hand, another would only say EAGAIN.
                    event = await self._wait_head(wait_first=served)
            except ProtocolError as exc:
                return await self.send_error(exc.status_hint)
            if type(event) is not RequestReceived:
                return
            if event.content_length == 0:
                parser.skip_message_end()
            if not await self._serve(event):
                return
            served = True

    def _head_at_hand(self) -> RequestReceived | ConnectionClosed | None:
        """The next request if the kernel holds all of its head already, else None.

        One non-blocking read, without the idle wait's timer, drain registration
        or clock: under load the next request is usually there once the others
        have had their turn. None (nothing yet, or part of a head) leaves the
        rest to ``_wait_head``; so does draining, which ends an idle connection.

        Raises:
            ProtocolError: the bytes are not HTTP/1.1.
            trio.BrokenResourceError: the connection failed.
        """
        recv_nowait = self._recv_nowait
        if recv_nowait is None or self.ctx.drain.draining:
            return None
        data = recv_nowait()
        if data is None:
            return None
        parser = self.parser
        parser.receive_data(data)
        event = parser.next_event()
        assert event is None or isinstance(event, RequestReceived | ConnectionClosed)
        return event

    async def read_first(self, received: bytes = b"") -> bytes:
        """The first bytes, enough to tell the h2c preface from HTTP/1.1.

        One read usually decides; a preface split across reads is read to its
        end (or to the first byte that differs) within the header timeout.
        ``received`` are bytes read already, if any.

        Raises:
            TimedOut: as ``_read_idle``, or the rest of a preface came too late.
        """
        data = received or await self._read_idle()
        deadline = trio.current_time() + self.ctx.limits.header_timeout  # a head has begun
        while data and len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
            more = await self.io.recv(deadline)
            if not more:
                break
            data += more
        return data

    async def _read_idle(self, *, wait_first: bool = False) -> bytes:
        """The next bytes of a connection between requests; ``wait_first`` as ``FastSocket.recv``.

        Raises:
            TimedOut: none came within ``keepalive_timeout``, or draining began
                (idle waits register with the ``DrainSignal``, which ends them).
        """
        drain, io = self.ctx.drain, self.io
        if drain.draining:
            raise TimedOut("draining")
        drain.idle.add(io)
        try:
            deadline = trio.current_time() + self.ctx.limits.keepalive_timeout
            return await io.recv(deadline, wait_first=wait_first)
        finally:
            drain.idle.discard(io)

    async def _wait_head(
        self, *, wait_first: bool = False
    ) -> RequestReceived | ConnectionClosed | None:
        """Read until a head is complete; ``None`` after a timeout or on drain.

        Idle until a message begins (keep-alive timeout, drain), then the whole
        head must come within the header timeout. ``wait_first``: a read just
        found nothing (``_head_at_hand``), so the first one waits before it reads.
        """
        parser = self.parser
        try:
            while not parser.in_message:
                parser.receive_data(await self._read_idle(wait_first=wait_first))
                wait_first = False
                event = parser.next_event()
                if event is not None:
                    assert isinstance(event, RequestReceived | ConnectionClosed)
                    return event
            deadline = trio.current_time() + self.ctx.limits.header_timeout
            while (event := parser.next_event()) is None:
                parser.receive_data(await self.io.recv(deadline, wait_first=wait_first))
                wait_first = False
            assert isinstance(event, RequestReceived | ConnectionClosed)
            return event
        except TimedOut:
            pass
        if parser.in_message:
            await self.send_error(408)
        return None

    async def _serve(self, event: RequestReceived) -> bool:
        """Answer one request; True when the connection may carry another."""
        tunnel = None
        if event.upgrade:
            if websocket.is_websocket_upgrade(event):
                tunnel = websocket.H1Tunnel(
                    self.stream, self.parser.trailing_data, self.ctx.read_size
                )
            elif event.method == b"CONNECT" or event.content_length != 0:
                await self.send_error(501)
                return False
        body, writer = self.body, self.writer
        body.reset(event)
        writer.reset(event)
        try:
            request = self._request(event)
        except UnicodeDecodeError:
            await self.send_error(400)
            return False
        if tunnel is not None:
            await handle_request(request, writer, self.ctx, tunnel)
        else:
            await self._forward(request)
        if self._framed is None:  # an idle connection keeps only remembered heads (<= 2 KiB)
            self.ctx.head_memo = None
        if tunnel is not None:
            return False  # the tunnel (or its answer) ended the connection
        if not writer.ended:
            raise ClientAbort("response incomplete")
        return writer.keep_alive and body.finished

    async def _forward(self, request: ProxyRequest) -> None:
        """``handle_request`` in steps: on the hot path the upstream request is written at
        once, and an answer already here when this task runs again leaves at once, with
        no coroutine under this one (``proxy.plan_request``, ``answer_at_hand``)."""
        ctx, writer = self.ctx, self.writer
        planned = plan_request(request, ctx)
        begun = planned.begun
        if begun is not None:
            # Let the others run first: by then the answer has often arrived, and a read
            # that finds it costs less than registering a wait (as ``send_bodyless``).
            try:
                await trio.lowlevel.cancel_shielded_checkpoint()
            except BaseException:  # KeyboardInterrupt only: the checkpoint is shielded
                ctx.pool.abandon(begun)
                raise
            if answer_at_hand(planned, writer, ctx):
                return await writer.send_unsent()
        return await carry_out(planned, writer, ctx)

    def _request(self, event: RequestReceived) -> ProxyRequest:
        """The ``ProxyRequest`` for ``event``; a head the parser remembered is framed once.

        Raises:
            UnicodeDecodeError: the target is not ASCII.
        """
        framed = self._framed
        if framed is None or framed[0] is not event:
            framed = (event, _frame(event))
            self._framed = framed if event is self.parser.remembered else None
        request = ProxyRequest(*framed[1], self.body)
        if event.header_case is not None:  # ClientTrafficPolicy http1.preserveHeaderCase
            request.header_case = event.header_case
        return request

    async def send_error(self, status: int) -> None:
        """A response made here, ending the connection (protocol errors, timeouts)."""
        text = reason_phrase(status) + b"\n"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(text)),
            (b"connection", b"close"),
        ]
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, TimedOut):
            deadline = trio.current_time() + self.ctx.limits.header_timeout
            await self.io.send_all(serialize_response_head(status, headers) + text, deadline)


#: a ``ProxyRequest``'s method, path, query, authority, host and headers
_Framed = tuple[str, str, str, str, str, HeaderList]


def _frame(event: RequestReceived) -> _Framed:
    """What a ``ProxyRequest`` is made of, from a parsed request head.

    A pure function of the head: a connection keeps the last one (``_Connection._framed``)
    for the parser's remembered heads, which come back as the same object. The
    fields list is shared by those requests, and nothing changes it in place (as
    with HTTP/2's remembered heads): a filter or policy makes a new list.

    Raises:
        UnicodeDecodeError: the target is not ASCII.
    """
    text = event.target.decode("ascii")
    authority = ""
    if not text.startswith("/") and "://" in text:  # absolute-form: its authority wins
        _scheme, _, rest = text.partition("://")
        authority, _, rest = rest.partition("/")
        text = "/" + rest
    path, _, query = text.partition("?")
    headers = []
    for item in strip_hop_by_hop(event.headers):
        if item[0] == b"host":
            authority = authority or item[1].decode("latin-1")
        else:
            headers.append(item)
    method = event.method.decode("ascii")
    return method, path, query, authority, split_host(authority), headers


class _Body:
    """The request body, read from the client only as the upstream takes it.

    One per connection, ``reset`` for each request.
    """

    __slots__ = (
        "_deadline",
        "_expect",
        "_floor",
        "_io",
        "_parser",
        "_request_timeout",
        "_stash",
        "_trailers",
        "finished",
        "head_sent",
        "length",
        "received",
        "started",
        "trailers",
    )

    def __init__(self, io: ByteIO, parser: RequestParser, limits: HTTPLimits) -> None:
        self._io = io
        self._parser = parser
        self._trailers = limits.trailers
        self._request_timeout = limits.request_timeout
        self._deadline = math.inf
        self._floor = RateFloor(limits.body_min_rate, limits.body_grace, limits.body_timeout)
        self.length: int | None = 0
        self.finished = True
        self.started = False
        self.received = 0
        self._expect = False
        self.head_sent = False  # set by the writer; a 100 after the final head is wrong
        self.trailers: Headers = ()  # a chunked body's trailers, once it ended
        self._stash: list[bytes] = []  # body taken from the parser, not given out yet

    def reset(self, event: RequestReceived) -> None:
        self.length = length = event.content_length
        self.finished = length == 0
        self.started = False
        self.received = 0
        self._expect = event.expect_continue and length != 0
        self.head_sent = False
        self.trailers = ()
        self._stash.clear()
        self._floor.reset()
        if self._request_timeout:  # ClientTrafficPolicy requestReceivedTimeout
            self._deadline = trio.current_time() + self._request_timeout

    def take_whole(self, limit: int) -> bytes | None:
        """The whole body at once if all of it arrived already and it is at most ``limit``
        bytes (as ``H2Body.take_whole``): the upstream gets it in the head's write.

        ``None`` otherwise, with nothing taken: what had arrived is kept for
        ``receive`` (a Content-Length body of at most ``limit`` bytes, so bounded).
        Never while a ``100 Continue`` is due (``receive`` sends it first), nor for
        a chunked body.

        Raises:
            ClientAbort: the body broke HTTP/1.1.
        """
        length = self.length
        if length == 0:
            return b""
        if self.started or self._expect or length is None or length > limit:
            return None
        parser, stash = self._parser, self._stash
        try:
            while type(event := parser.next_event()) is DataReceived:
                stash.append(event.data)
        except ProtocolError as exc:
            raise ClientAbort(f"bad request body: {exc}") from exc
        if event is None:
            return None
        if type(event) is not MessageEnded:
            raise ClientAbort("unexpected event in a request body")
        data = stash[0] if len(stash) == 1 else b"".join(stash)
        stash.clear()
        self.started = self.finished = True
        self.received += len(data)
        return data

    async def receive(self) -> bytes:
        if self.finished:
            return b""
        self.started = True
        if self._stash:  # what ``take_whole`` found before the rest had come
            data = self._stash.pop(0)
            self.received += len(data)
            return data
        io, parser = self._io, self._parser
        if self._expect:
            self._expect = False
            if not self.head_sent:
                await io.send_all(_CONTINUE)
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                raise ClientAbort(f"bad request body: {exc}") from exc
            if isinstance(event, DataReceived):
                self.received += len(event.data)
                return event.data
            if isinstance(event, MessageEnded):
                self.finished = True
                if self._trailers:  # ClientTrafficPolicy http1.enableTrailers: false drops them
                    self.trailers = tuple(strip_hop_by_hop(event.trailers))  # as head fields
                return b""
            if event is not None:
                raise ClientAbort("unexpected event in a request body")
            floor = self._floor
            start = trio.current_time()
            try:
                data = await io.recv(min(start + floor.wait_limit(), self._deadline))
            except TimedOut:
                raise ClientAbort("request body timed out or too slow") from None
            floor.record(trio.current_time() - start, len(data))
            parser.receive_data(data)


class _Writer:
    """HTTP/1.1 framing of a response: length, chunked or close-delimited.

    One per connection, ``reset`` for each request.
    """

    __slots__ = (
        "_body",
        "_buffer",
        "_chunked",
        "_drain",
        "_head_fields",
        "_head_status",
        "_head_wire",
        "_http10",
        "_io",
        "_no_body",
        "_send_nowait",
        "_send_timeout",
        "_trailers",
        "_unsent",
        "_write_nowait",
        "bytes_sent",
        "ended",
        "head_sent",
        "keep_alive",
        "status",
    )

    def __init__(self, io: ByteIO, body: _Body, drain: DrainSignal, limits: HTTPLimits) -> None:
        self._io = io
        # What the kernel takes without waiting (a plain socket); None: always ``send_all``.
        self._send_nowait: Callable[[bytes], int] | None = getattr(io, "send_nowait", None)
        # TLS inline's: encrypts all, True when every record left (``TLSIO.write_nowait``).
        self._write_nowait: Callable[[bytes], bool] | None = getattr(io, "write_nowait", None)
        self._send_timeout = limits.send_timeout
        self._trailers = limits.trailers
        self._drain = drain
        self._body = body
        self._buffer: list[bytes] = []
        self._chunked = False
        self._no_body = False
        self._http10 = False
        self.keep_alive = True
        self.head_sent = False
        self.ended = False
        self.status = 0
        self.bytes_sent = 0
        self._unsent = b""  # what ``send_whole`` left for ``send_unsent``
        self._head_status = 0  # the last response head serialised (``_serialized``)
        self._head_fields: HeaderList = []
        self._head_wire = b""

    def reset(self, event: RequestReceived) -> None:
        self._buffer.clear()
        self._chunked = False
        self._no_body = event.method == b"HEAD"
        self._http10 = event.http_version == b"1.0"
        self.keep_alive = event.keep_alive and not event.upgrade
        self.head_sent = False
        self.ended = False
        self.status = 0
        self.bytes_sent = 0

    async def send_head(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        *,
        content_length: int | None,
        body: bool,
    ) -> None:
        self._start(status, headers, content_length, body)

    def _start(
        self, status: int, headers: HeaderList, content_length: int | None, body: bool
    ) -> None:
        """``send_head``, which never waits: the head framed and queued."""
        body_state = self._body
        if not body:
            self._no_body = True
        if not self._no_body and content_length is None:
            if self._http10:
                self.keep_alive = False  # the close ends the body
            else:
                self._chunked = True
                headers.append((b"transfer-encoding", b"chunked"))
        unread_body = not body_state.started and not body_state.finished
        if self.keep_alive and (self._drain.draining or unread_body):
            self.keep_alive = False
        if not self.keep_alive:
            headers.append((b"connection", b"close"))
        elif self._http10:
            headers.append((b"connection", b"keep-alive"))
        self._buffer.append(self._serialized(status, headers))
        self.head_sent = body_state.head_sent = True
        self.status = status

    def send_whole(
        self, status: int, headers: HeaderList, body: bytes, content_length: int | None
    ) -> bool:
        """A whole answer queued now (``proxy.answer_at_hand``): what ``send_head``,
        ``send_data`` and ``end`` would queue; ``send_unsent`` writes it. False, and
        nothing done, unless the connection writes without waiting (a plain socket, or
        TLS inline) and the body has a Content-Length.
        """
        if self.head_sent or self._no_body:
            return False
        if self._send_nowait is None and self._write_nowait is None:
            return False
        if content_length != len(body):
            return False
        self._start(status, headers, content_length, True)
        buffer = self._buffer
        data = buffer[0] + body
        buffer.clear()
        self.bytes_sent += len(data)
        self.ended = True
        self._unsent = data
        return True

    async def send_unsent(self) -> None:
        """Write what ``send_whole`` queued: at once when the kernel takes it all, else
        the rest within ``send_timeout`` (as ``flush``).

        Raises:
            ClientAbort: the client did not read it in time.
            trio.BrokenResourceError: the connection failed.
        """
        data, self._unsent = self._unsent, b""
        if data and (rest := self._write_now(data)) is not None:
            await self._send_rest(rest)

    def _write_now(self, data: bytes) -> bytes | None:
        """Write ``data`` without waiting: None when the kernel took it all, else what
        ``_send_rest`` must still send (``b""`` over TLS, whose records wait in ``io``)."""
        send_nowait = self._send_nowait
        if send_nowait is not None:  # all of it taken at once: no wait, no clock
            sent = send_nowait(data)
            return None if sent == len(data) else data[sent:]
        write_nowait = self._write_nowait
        if write_nowait is not None:
            return None if write_nowait(data) else b""
        return data

    async def _send_rest(self, rest: bytes) -> None:
        """What ``_write_now`` left, within ``send_timeout``.

        Raises:
            ClientAbort: the client did not read it in time.
        """
        try:
            await self._io.send_all(rest, trio.current_time() + self._send_timeout)
        except TimedOut:
            raise ClientAbort("client did not read the response") from None

    def _serialized(self, status: int, headers: HeaderList) -> bytes:
        """The response head as sent; the last one is kept for the next response.

        A backend answers a repeated request alike (and its remembered head brings
        the same field objects), so comparing costs a fraction of serialising.
        Kept: a copy, at most ``_HEAD_KEPT`` bytes, one per connection.
        """
        if status == self._head_status and headers == self._head_fields:
            return self._head_wire
        wire = serialize_response_head(status, headers)
        if len(wire) <= _HEAD_KEPT:
            self._head_status, self._head_fields, self._head_wire = status, list(headers), wire
        return wire

    async def send_data(self, data: bytes) -> None:
        if data and not self._no_body:
            self._buffer.append(serialize_chunk(data) if self._chunked else data)

    async def flush(self) -> None:
        buffer = self._buffer
        if buffer:
            data = b"".join(buffer) if len(buffer) > 1 else buffer[0]
            buffer.clear()
            self.bytes_sent += len(data)
            if (rest := self._write_now(data)) is not None:
                await self._send_rest(rest)

    async def end(self, trailers: Headers = ()) -> None:
        if self._chunked:
            self._buffer.append(serialize_last_chunk(trailers if self._trailers else ()))
        await self.flush()
        self.ended = True
