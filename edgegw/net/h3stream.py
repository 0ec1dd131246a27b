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
from edgegw.net.heldhead import HeldHeadWriter
from edgegw.proto import http2
from edgegw.proto.events import Headers


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


class H3Writer(HeldHeadWriter):
    """``ResponseWriter`` on one request stream; the head waits for the body or the end,
    so a body-less answer leaves as one HEADERS frame with the stream's FIN."""

    def __init__(self, conn: StreamOwner, st: H3Stream) -> None:
        super().__init__()
        self._conn = conn
        self._st = st

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
