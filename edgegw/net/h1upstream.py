"""HTTP/1.1 towards backends: one request and its response on a pooled connection.

``send_bodyless`` (the hot path: no body, no context manager, no task) and
``open_h1_exchange`` (a body pumped by a task of its own while the response
is read) both yield an ``UpstreamResponse``, producing ``proto.events`` from
the one HTTP/1.1 response parser (``proto.http1.ResponseParser``). Callers
go through ``UpstreamPool.exchange``, which picks this module or
``h2upstream`` by the backend's protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import trio

from edgegw import ir
from edgegw.net.connection import (
    ConnectionSource,
    RequestBody,
    UpstreamBroken,
    UpstreamConnection,
    UpstreamReset,
    collapse_groups,
)
from edgegw.proto.events import (
    DataReceived,
    Event,
    Headers,
    InformationalResponseReceived,
    MessageEnded,
    ResponseReceived,
)
from edgegw.proto.http1 import (
    CaseKeepingResponseParser,
    ProtocolError,
    ResponseParser,
    serialize_chunk,
    serialize_last_chunk,
)

_now = trio.current_time


class UpstreamResponse:
    """The response being read from one upstream connection."""

    __slots__ = ("_parser", "_pool", "_read_timeout", "conn", "head", "received", "trailers")

    def __init__(
        self,
        conn: UpstreamConnection,
        parser: ResponseParser,
        read_timeout: float,
        pool: ConnectionSource | None = None,
    ) -> None:
        self.conn = conn
        self._pool = pool
        self.head: ResponseReceived | None = None
        self.trailers: Headers = ()
        self.received = 0
        self._parser = parser
        self._read_timeout = read_timeout

    async def next_event(self, *, wait_first: bool = False) -> Event:
        """The next parser event, reading from the upstream when none is queued.

        ``wait_first``: a read just found nothing, so the first one waits before it reads.

        Raises:
            UpstreamBroken: the upstream closed early or broke HTTP.
            UpstreamTimeout: it was silent for ``read_timeout``.
        """
        parser = self._parser
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                raise UpstreamBroken(f"upstream {self.conn.address}: {exc}") from exc
            if event is not None:
                return event
            data = await self.conn.receive_some(_now() + self._read_timeout, wait_first=wait_first)
            wait_first = False
            self.received += len(data)
            parser.receive_data(data)

    def event_at_hand(self) -> Event | None:
        """The next event if it needs no wait: queued, or in bytes the kernel holds already.

        One non-blocking read at most, and no clock: the hot path, where the
        upstream has usually answered by the time the request's task runs again.

        Raises:
            UpstreamBroken: the connection failed or the upstream broke HTTP.
        """
        parser = self._parser
        try:
            event = parser.next_event()
            recv_nowait = self.conn.recv_nowait
            if event is not None or recv_nowait is None:
                return event
            data = recv_nowait()
            if data is None:
                return None
            self.received += len(data)
            parser.receive_data(data)
            return parser.next_event()
        except ProtocolError as exc:
            raise UpstreamBroken(f"upstream {self.conn.address}: {exc}") from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise UpstreamBroken(f"upstream {self.conn.address}: {exc}") from exc

    def pending(self) -> bool:
        """True when an event is ready without reading (so a flush can wait)."""
        return bool(self._parser._events)

    @property
    def reusable(self) -> bool:
        return self._parser.reusable

    def release(self, *, reusable: bool | None = None) -> None:
        """Give the connection back to the pool (``send_bodyless`` only); idempotent."""
        pool = self._pool
        if pool is not None:
            self._pool = None
            parser = self._parser
            if reusable is None:
                reusable = parser.reusable
            if reusable and parser.reusable:
                self.conn.parser = parser
            else:
                self.conn.parser = None
                parser.release()
            pool.release(self.conn, reusable=reusable)


class Begun(msgspec.Struct):
    """A body-less request begun without waiting (``begin_bodyless``): its response to read.

    ``rest``: what of the request head the kernel did not take at once. ``response``
    None: writing to the pooled connection failed, so the request goes again on a fresh one.
    ``event``, ``error``: what ``whole_at_hand`` read before the head, or how it failed,
    for ``finish_bodyless`` to go on from. A Struct: made without a Python ``__init__``.
    """

    response: UpstreamResponse | None
    rest: bytes
    event: Event | None = None
    error: UpstreamBroken | None = None
    looked: bool = False  # a read found nothing: the next one waits first


def begin_bodyless(
    pool: ConnectionSource,
    endpoint: ir.Endpoint,
    backend: ir.Backend,
    head: tuple[bytes, bytes, list[tuple[bytes, bytes]]],
) -> Begun | None:
    """The first step of ``send_bodyless``, done now: an idle connection, the head written.

    None, and nothing taken, when no idle connection is at hand (making one waits).
    ``finish_bodyless`` reads the answer; the caller must call it (or ``abandon_begun``).
    """
    conn = pool.reuse(endpoint, backend)
    if conn is None:
        return None
    return _begin_on(pool, conn, head[0], conn.request_head(head))


def abandon_begun(begun: Begun) -> None:
    """Give up a begun request whose answer will not be read: its connection is closed."""
    if begun.response is not None:
        begun.response.release(reusable=False)


def _begin_on(
    pool: ConnectionSource,
    conn: UpstreamConnection,
    method: bytes,
    request_head: bytes,
    *,
    keep_case: bool = False,
) -> Begun:
    parser = conn.parser
    if keep_case:
        parser = _case_keeping(conn, method)
    elif parser is None or method == b"HEAD":
        parser = ResponseParser(method)
    else:
        conn.parser = None
        parser.reset()
    response = UpstreamResponse(conn, parser, pool.limits.read_timeout, pool)
    try:
        sent = conn.sent_at_once(request_head)  # a head fits the socket: no wait, no layers
    except UpstreamBroken:
        response.release(reusable=False)
        if conn.reused:
            return Begun(None, request_head)  # sent again on a fresh connection
        raise UpstreamReset(f"upstream {conn.address} closed before answering") from None
    return Begun(response, request_head[sent:])


def whole_at_hand(begun: Begun) -> tuple[ResponseReceived, bytes] | None:
    """A begun request's whole answer if it is here already: its head and body, nothing
    taken (``take_whole`` takes it). None when more is to come, or it has trailers.

    One non-blocking read at most. The head, once read, stays read: ``finish_bodyless``
    goes on from it, or from whatever else the read found.
    """
    response = begun.response
    if response is None or begun.rest or begun.error is not None or begun.event is not None:
        return None
    head = response.head
    if head is None:
        try:
            event = response.event_at_hand()
        except UpstreamBroken as exc:
            begun.error = exc
            return None
        if type(event) is not ResponseReceived:
            begun.event = event
            begun.looked = event is None
            return None
        response.head = head = event
    parser = response._parser
    if not parser.ended:
        return None
    data = b""
    for event in parser._events:
        if type(event) is DataReceived:
            data += event.data
        elif type(event) is not MessageEnded or event.trailers:
            return None
    return head, data


def take_whole(begun: Begun) -> None:
    """Take the answer ``whole_at_hand`` showed; its connection goes back to the pool."""
    response = begun.response
    assert response is not None
    response._parser._events.clear()
    response.release()


async def send_bodyless(
    pool: ConnectionSource,
    endpoint: ir.Endpoint,
    backend: ir.Backend,
    head: tuple[bytes, bytes, list[tuple[bytes, bytes]]],
    *,
    counted: bool = False,
    keep_case: bool = False,
    fresh: bool = False,
    body: bytes = b"",
) -> UpstreamResponse:
    """``open_h1_exchange`` for a body-less request, without a context manager (the hot path).

    The caller must call ``release()`` on the result once done with it, even on
    errors; the connection is pooled only if the response was read to its end.
    ``keep_case``: the response notes its header names' spelling (a parser of its own).
    ``fresh``: on a new connection, not a pooled one. ``body``: a whole request body
    already at hand, framed as its head says, sent in the head's write; kept, so a dead
    reused connection is replaced as for no body.

    Raises:
        ConnectError, UpstreamBroken, UpstreamTimeout: see the module docstring.
    """
    conn = None if fresh else pool.reuse(endpoint, backend)
    if conn is None:
        conn = await pool.acquire(endpoint, backend, fresh=fresh)
    request_head = conn.request_head(head)
    if body:
        request_head += body
    begun = _begin_on(pool, conn, head[0], request_head, keep_case=keep_case)
    # Let the others run first: by then the answer has often arrived, and a read
    # that finds it costs less than registering a wait (under wrk, -8% CPU/request).
    # A schedule point only: the front end's loop has the request's cancel point,
    # and a read that must wait is one too.
    try:
        await trio.lowlevel.cancel_shielded_checkpoint()
    except BaseException:  # KeyboardInterrupt only: the checkpoint is shielded
        abandon_begun(begun)
        raise
    return await finish_bodyless(
        pool, begun, endpoint, backend, head, counted=counted, keep_case=keep_case, body=body
    )


async def finish_bodyless(
    pool: ConnectionSource,
    begun: Begun,
    endpoint: ir.Endpoint,
    backend: ir.Backend,
    head: tuple[bytes, bytes, list[tuple[bytes, bytes]]],
    *,
    counted: bool = False,
    keep_case: bool = False,
    body: bytes = b"",
) -> UpstreamResponse:
    """The rest of ``send_bodyless`` after ``begin_bodyless``: the answer's head, read.

    A reused connection that fails before any answer byte sends the request
    again, once, on a fresh connection (unless ``counted``).

    Raises:
        ConnectError, UpstreamBroken, UpstreamTimeout: see the module docstring.
    """
    response = begun.response
    if response is None:
        if counted:
            raise UpstreamReset("upstream closed before answering")
        return await send_bodyless(
            pool, endpoint, backend, head, counted=True, keep_case=keep_case, fresh=True, body=body
        )
    conn = response.conn
    try:
        if begun.error is not None:
            raise begun.error
        if begun.rest:
            await conn.send_all(begun.rest)
        if response.head is None:
            event = begun.event
            if event is None and not begun.looked:
                event = response.event_at_hand()  # no wait, no clock
            if type(event) is ResponseReceived:
                response.head = event
            else:
                response.head = await _read_head(response, event)
    except UpstreamBroken:
        response.release(reusable=False)
        if response.received == 0:
            if conn.reused and not counted:
                return await send_bodyless(
                    pool,
                    endpoint,
                    backend,
                    head,
                    counted=True,
                    keep_case=keep_case,
                    fresh=True,
                    body=body,
                )
            raise UpstreamReset(f"upstream {conn.address} closed before answering") from None
        raise
    except BaseException:
        response.release(reusable=False)
        raise
    return response


@asynccontextmanager
async def open_h1_exchange(
    pool: ConnectionSource,
    endpoint: ir.Endpoint,
    backend: ir.Backend,
    head: tuple[bytes, bytes, list[tuple[bytes, bytes]]],
    body: RequestBody,
    *,
    counted: bool = False,
    keep_case: bool = False,
) -> AsyncIterator[UpstreamResponse]:
    """Send a request to ``endpoint`` and yield the response once its head arrived.

    The body, if any, is sent by a task of its own while the response is
    read, so an upstream that answers before reading everything (or streams
    its answer as it reads) cannot deadlock us. Body-less requests, the hot
    path, need no task. On exit the connection goes back to the pool if both
    directions ended cleanly, else it is closed.

    A reused keep-alive connection that turns out dead (EOF before any byte)
    is replaced once by a fresh one, when the body allows resending, unless
    ``counted``: then the caller has a retry budget (``retry.attempts``) and
    the failure is its to count. (One seen closed before the request was
    written never gets this far: the pool drops it.) ``keep_case``: as
    ``send_bodyless``.

    Raises:
        ConnectError, UpstreamBroken, UpstreamTimeout: see the module docstring.
    """
    whole = _whole_body(body)
    if whole is not None:  # no body pump needed, nor its task: one write, as without a body
        plain = await send_bodyless(
            pool, endpoint, backend, head, counted=counted, keep_case=keep_case, body=whole
        )
        try:
            yield plain
        finally:
            plain.release()
        return
    method = head[0]
    fresh = False
    while True:
        conn = await pool.acquire(endpoint, backend, fresh=fresh)
        request_head = conn.request_head(head)
        kind = CaseKeepingResponseParser if keep_case else ResponseParser
        response = UpstreamResponse(conn, kind(method), pool.limits.read_timeout)
        reusable = False
        try:
            failure: list[BaseException] = []
            with collapse_groups():
                async with trio.open_nursery() as nursery:
                    try:
                        await conn.send_all(request_head)
                        nursery.start_soon(_pump_body, conn, body, failure, nursery.cancel_scope)
                        response.head = await _read_head(response, None)
                    except UpstreamBroken:
                        nursery.cancel_scope.cancel()
                        if not response.received:
                            if conn.reused and not body.started and not counted:
                                fresh = True
                                continue
                            raise UpstreamReset(
                                f"upstream {conn.address} closed before answering"
                            ) from None
                        raise
                    yield response
                    reusable = response.reusable and body.finished and not failure
                    if not body.finished:
                        nursery.cancel_scope.cancel()
            if failure:
                raise failure[0]
            return
        finally:
            response._parser.release()  # a fresh parser per body exchange: never kept
            pool.release(conn, reusable=reusable)


AT_HAND_MAX = 16384  # bodies up to this long may leave with their head (a socket's first write)


def _whole_body(body: RequestBody) -> bytes | None:
    """A short body, framed for HTTP/1.1, if all of it arrived already; else None.

    Sent with the head it saves a write and the pump task: without it an
    upstream that answers early (before reading the body) could see its
    answer back before the task ran, and both connections would close with
    the body unforwarded. Only short bodies, so the head's write still goes
    out at once: a longer one is pumped while the response is read, as an
    upstream that answers without reading needs. So are bodies that cannot
    say (a retry's replay).
    """
    if body.length == 0:
        return b""
    take = getattr(body, "take_whole", None)
    whole: bytes | None = take(AT_HAND_MAX) if take is not None else None
    if whole is None or body.length is not None:
        return whole
    # No length (HTTP/2 without content-length): the head says chunked. A whole
    # body is never one with trailers (``take_whole`` leaves those to the pump).
    return serialize_chunk(whole) + serialize_last_chunk() if whole else serialize_last_chunk()


def _case_keeping(conn: UpstreamConnection, method: bytes) -> ResponseParser:
    """A parser that notes the response's header names: the pooled one if it can, else a
    fresh one (and the pooled one is let go).

    Pooled again after the exchange, it also serves later requests without the
    policy, noting nothing (``CaseKeepingResponseParser.reset``).
    """
    pooled, conn.parser = conn.parser, None
    if type(pooled) is CaseKeepingResponseParser and method != b"HEAD":
        pooled.reset()
        pooled.keep_case()
        return pooled
    if pooled is not None:
        pooled.release()
    return CaseKeepingResponseParser(method)


async def _read_head(response: UpstreamResponse, event: Event | None) -> ResponseReceived:
    """The final response head, from ``event`` on: what a read found at hand, if anything.

    None: that read found nothing, or the request just left with a body to
    follow; reading again at once would only say EAGAIN, so the next read
    waits first.
    """
    wait_first = True
    while True:
        if event is None:
            event = await response.next_event(wait_first=wait_first)
            wait_first = False
        if type(event) is ResponseReceived:
            return event
        if type(event) is not InformationalResponseReceived:
            raise UpstreamBroken("unexpected event before the response head")
        event = None


async def _pump_body(
    conn: UpstreamConnection,
    body: RequestBody,
    failure: list[BaseException],
    scope: trio.CancelScope,
) -> None:
    """Copy the request body upstream; client-side failures stop the whole exchange.

    An upstream that stops reading is not an error here: the response side
    reports it, or has already answered.
    """
    chunked = body.length is None
    try:
        while True:
            data = await body.receive()
            if not data:
                if chunked:
                    await conn.send_all(serialize_last_chunk(body.trailers))
                return
            await conn.send_all(serialize_chunk(data) if chunked else data)
    except UpstreamBroken:
        return
    except Exception as exc:
        failure.append(exc)
        scope.cancel()
