"""How one HTTP/3 request stream looks to the proxy: ``H3Body`` in, ``H3Writer`` out.

The same contracts as HTTP/2's (``net/h2server.py``): the body is the DATA the
connection task queued on the ``H3Stream``, taken as the upstream reads it
(which is what lets the connection stop its intake, see ``net/h3server.py``);
the writer turns the response into HEADERS, DATA and trailers on the stream,
holding the head back so that a body-less answer leaves as one HEADERS frame
with the stream's FIN, and waits while the stream holds too much the client
has not acknowledged.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import trio
from aioquic.h3.connection import H3Connection

from edgegw.net.context import ClientAbort, HTTPConnectionContext
from edgegw.proto import http2
from edgegw.proto.events import HeaderList, Headers


class StreamOwner(Protocol):
    """What the adapters use of their connection (``H3ServerConnection``)."""

    buffered: int  # request body bytes queued; the body takes them off

    @property
    def h3(self) -> H3Connection: ...

    @property
    def ctx(self) -> HTTPConnectionContext: ...

    def wake(self) -> None: ...

    async def wait_sent(self, st: H3Stream) -> None: ...


@dataclass(eq=False, slots=True)
class H3Stream:
    """Per-request state the connection task fills and the stream task drains."""

    stream_id: int
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    chunks: deque[bytes] = field(default_factory=deque)
    body_ended: bool = False
    trailers: Headers = ()
    body_event: trio.Event = field(default_factory=trio.Event)


class H3Body:
    """A request body from DATA frames, as the upstream reads it."""

    def __init__(self, conn: StreamOwner, st: H3Stream, length: int | None) -> None:
        self._conn = conn
        self._st = st
        self._timeout = conn.ctx.limits.body_timeout
        self.length = 0 if st.body_ended and not st.chunks else length
        self.finished = self.length == 0
        self.started = False
        self.received = 0

    async def receive(self) -> bytes:
        if self.finished:
            return b""
        self.started = True
        st, conn = self._st, self._conn
        while not st.chunks and not st.body_ended:
            st.body_event = trio.Event()
            with trio.move_on_after(self._timeout) as scope:
                await st.body_event.wait()
            if scope.cancelled_caught:
                raise ClientAbort("request body timed out")
        if not st.chunks:
            self.finished = True
            return b""
        data = st.chunks.popleft()
        conn.buffered -= len(data)
        self.received += len(data)
        return data

    @property
    def trailers(self) -> Headers:
        """The request's trailers, once ``receive`` returned the end."""
        return self._st.trailers


class H3Writer:
    """``ResponseWriter`` on one request stream; the head waits for the body or the end,
    so a body-less answer leaves as one HEADERS frame with the stream's FIN."""

    def __init__(self, conn: StreamOwner, st: H3Stream) -> None:
        self._conn = conn
        self._st = st
        self._head: HeaderList | None = None
        self._no_body = False
        self.head_request = False
        self.head_sent = False
        self.ended = False
        self.status = 0
        self.bytes_sent = 0

    async def send_head(
        self, status: int, headers: HeaderList, *, content_length: int | None, body: bool
    ) -> None:
        self._head = http2.response_headers(status, headers)
        self._no_body = not body or self.head_request
        self.head_sent = True
        self.status = status

    def _send_pending_head(self, *, end: bool = False) -> None:
        if self._head is not None:
            self._conn.h3.send_headers(self._st.stream_id, self._head, end_stream=end)
            self._head = None

    async def send_data(self, data: bytes) -> None:
        if self._no_body or not data:
            return
        self._send_pending_head()
        self.bytes_sent += len(data)
        self._conn.h3.send_data(self._st.stream_id, data, end_stream=False)
        await self._conn.wait_sent(self._st)

    async def flush(self) -> None:
        self._send_pending_head()
        self._conn.wake()

    async def end(self, trailers: Headers = ()) -> None:
        h3, sid = self._conn.h3, self._st.stream_id
        extra = http2.trailer_headers(trailers)
        if self._head is not None:
            self._send_pending_head(end=not extra)
        elif not extra:
            h3.send_data(sid, b"", end_stream=True)
        if extra:
            h3.send_headers(sid, extra, end_stream=True)
        self.ended = True
        self._conn.wake()

    async def simple(self, status: int) -> None:
        """An answer made here, without body."""
        await self.send_head(status, [(b"content-length", b"0")], content_length=0, body=False)
        await self.end()

    async def grpc_deadline_exceeded(self) -> None:
        """The ``grpc-timeout`` passed: status 4, as trailers-only or as trailers."""
        if self.ended:
            return
        status = [(b"grpc-status", b"4"), (b"grpc-message", b"Deadline Exceeded")]
        if not self.head_sent:
            grpc = [(b"content-type", b"application/grpc"), *status]
            await self.send_head(200, grpc, content_length=0, body=False)
        else:
            self._send_pending_head()
            await self.end(tuple(status))
            return
        await self.end()
