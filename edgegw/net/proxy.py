"""The forward step: one request carried out as ``decide`` planned it, for every front end.

Theory of operation
-------------------
A front end (``net/http.py`` for HTTP/1.1, ``net/h2server.py`` for HTTP/2
and h2c) frames the client's request into a ``ProxyRequest`` whose body is a
``RequestBody``, hands over a ``ResponseWriter`` for the answer, and awaits
``handle_request``; a WebSocket request also brings its ``Tunnel``. From
here on it is the spec's behaviour, with no framing in sight:

1. ``decide.decide`` (synchronous) matches, filters and plans the request;
   an ``Answer`` (redirect, CORS preflight, 404/421/500/503) is sent at once;
2. mirrors start (body-less requests, and an upgrade's handshake as a GET);
3. an upgrade goes to its tunnel, which moves bytes (``net/websocket.py``);
4. otherwise the upstream exchange with the rule's retries: connect
   failures → 503, broken upstreams → 502, timeouts → 504; a retry only
   while the body can still be sent again (``net/replay.py`` keeps a copy
   up to the connection's buffer limit);
5. the response, its fields from ``decide.response_fields`` (hop-by-hop
   removed, response modifiers, CORS, session token), streamed as it arrives
   (flushed only when the upstream has nothing more queued, so a small
   response leaves in one write).

The hot path is ``handle_request`` → ``_forward`` → ``_once`` → the exchange:
no retry loop, no timeout scope, no per-request task. The whole request runs
under ``request_timeout``, each try under ``backend_request_timeout``. A
failure after the response head went out cannot be reported any more:
``ClientAbort`` tells the front end to drop the connection. Errors on gRPC
routes are answered as gRPC statuses (HTTP 200 with ``grpc-status``).

Mirrors are fire-and-forget copies of body-less requests only: a request with
a body is not mirrored, since copying a stream we must not buffer is not
cheap. They run in ``ctx.background``, at most ``MIRRORS_MAX`` at a time
(counted on the pool), and their responses are read and dropped.
"""

from __future__ import annotations

import random
import time
from typing import Protocol, TypeVar

import msgspec
import trio

from edgegw import ir
from edgegw.net.clusters import Breaker
from edgegw.net.context import (
    ClientAbort,
    HTTPConnectionContext,
    ProxyRequest,
    RequestRecord,
    ResponseWriter,
)
from edgegw.net.decide import (
    Answer,
    RequestPlan,
    decide,
    header_value,
    policy_answer,
    response_fields,
)
from edgegw.net.guard import authorize
from edgegw.net.replay import DEFAULT_LIMIT as REPLAY_LIMIT
from edgegw.net.replay import ReplayBody
from edgegw.net.upstream import (
    Begun,
    Overflow,
    UpstreamError,
    UpstreamPool,
    UpstreamReply,
    UpstreamTimeout,
)
from edgegw.policy import compress
from edgegw.proto.events import (
    DataReceived,
    HeaderList,
    Headers,
    MessageEnded,
)
from edgegw.proto.http1 import reason_phrase, recase
from edgegw.routing import filters as f

MIRRORS_MAX = 256
_now = time.perf_counter  # a request's duration: real time, one C call (trio's clock: three)
_H2 = ("h2c", "h2")  # backend protocols spoken over HTTP/2
_R = TypeVar("_R")
_GRPC_STATUS = {400: b"13", 404: b"12", 421: b"13", 500: b"13", 502: b"14", 503: b"14", 504: b"4"}


# --- the request ---------------------------------------------------------------------------


class Tunnel(Protocol):
    """How a front end carries out an upgrade plan (``net/websocket.py`` has both kinds)."""

    async def forward(
        self, plan: RequestPlan, writer: ResponseWriter, ctx: HTTPConnectionContext
    ) -> None: ...


async def handle_request(
    req: ProxyRequest,
    writer: ResponseWriter,
    ctx: HTTPConnectionContext,
    tunnel: Tunnel | None = None,
) -> None:
    """Decide, then answer or forward one request through ``writer``.

    Args:
        req: the request as the front end framed it.
        writer: where the response goes.
        ctx: the connection's tables, pool and observer.
        tunnel: for a WebSocket upgrade, what moves the bytes once the plan
            says "forward"; None for every other request.

    Raises:
        ClientAbort: the response broke off after its head was sent.
    """
    record = RequestRecord(req.method, req.path, ctx.client[0] if ctx.client else "")
    record.protocol = ctx.protocol
    start = _now()
    try:
        await _act(decide(req, ctx, record, upgrade=tunnel is not None), writer, ctx, tunnel)
    finally:
        _record_done(record, start, req, writer, ctx)


class Planned(msgspec.Struct):
    """A request decided by ``plan_request``; ``carry_out`` does the rest.

    ``endpoint``: where the hot path goes (None: the plan is carried out from the
    start); ``begun``: its upstream request, already written, if it could be.
    A Struct: one per HTTP/2 request, made without a Python ``__init__``.
    """

    plan: RequestPlan
    start: float
    begun: Begun | None = None
    endpoint: ir.Endpoint | None = None


def plan_request(req: ProxyRequest, ctx: HTTPConnectionContext) -> Planned:
    """``handle_request``'s synchronous part, for a front end that takes several requests
    at once (HTTP/2): the decision, and on the hot path the upstream request written.

    Writing every request of a read before any task waits for an answer spares
    each one a schedule point (``send_bodyless`` would yield to let the answer
    arrive; here the front end's own turn does). ``carry_out`` must follow.
    """
    record = RequestRecord(req.method, req.path, ctx.client[0] if ctx.client else "")
    record.protocol = ctx.protocol
    planned = Planned(decide(req, ctx, record), _now())
    plan = planned.plan
    if plan.answer is None and not plan.delay and plan.pending is None and _plain(plan):
        pool, backend = ctx.pool, plan.backend
        assert backend is not None
        if pool.can_begin(backend, req.body, req.header_case):
            endpoint = planned.endpoint = pool.choose(backend)  # chosen once: it balances
            if endpoint is not None:
                record.upstream = pool.describe(endpoint)
                planned.begun = pool.begin_exchange(endpoint, backend, plan.head)
    return planned


async def carry_out(planned: Planned, writer: ResponseWriter, ctx: HTTPConnectionContext) -> None:
    """The rest of ``handle_request`` for a request ``plan_request`` decided.

    Raises:
        ClientAbort: the response broke off after its head was sent.
    """
    plan = planned.plan
    try:
        endpoint = planned.endpoint
        if endpoint is None:
            await _act(plan, writer, ctx)
        else:
            await _finish_once(plan, planned.begun, endpoint, writer, ctx)
    finally:
        _done(planned, writer, ctx)


class WholeWriter(ResponseWriter, Protocol):
    """A ``ResponseWriter`` that can also take a whole answer at once, without waiting."""

    def send_whole(
        self, status: int, headers: HeaderList, body: bytes, content_length: int | None
    ) -> bool:
        """Queue head and body as one answer; False, and nothing queued, if it cannot.

        ``content_length``: the backend's, None when it framed the body otherwise.
        """
        ...


def answer_at_hand(planned: Planned, writer: WholeWriter, ctx: HTTPConnectionContext) -> bool:
    """``carry_out`` done now, when the whole answer of the begun exchange is here already.

    What ``stream_response`` would send, for the common answer (a head and a body,
    no trailers, no compression), with no task and no wait. False, and nothing
    sent or taken, otherwise: ``carry_out`` follows.
    """
    begun, plan = planned.begun, planned.plan
    if begun is None or plan.compression:
        return False
    pool = ctx.pool
    whole = pool.whole_at_hand(begun)
    if whole is None:
        return False
    head, body = whole
    if not body or not head.body_expected or head.header_case is not None:
        return False
    fields = response_fields(plan, head.headers, planned.endpoint)
    if not writer.send_whole(head.status_code, fields, body, head.content_length):
        return False
    pool.take_whole(begun)
    _done(planned, writer, ctx)
    return True


def _done(planned: Planned, writer: ResponseWriter, ctx: HTTPConnectionContext) -> None:
    plan = planned.plan
    _record_done(plan.record, planned.start, plan.req, writer, ctx)


def _record_done(
    record: RequestRecord,
    start: float,
    req: ProxyRequest,
    writer: ResponseWriter,
    ctx: HTTPConnectionContext,
) -> None:
    """The request's access-log record completed and counted, however it ended."""
    record.status = writer.status or record.status
    record.duration = _now() - start
    record.bytes_out = writer.bytes_sent
    record.bytes_in = getattr(req.body, "received", 0)
    ctx.observer.request_done(record)


async def _act(
    plan: RequestPlan,
    writer: ResponseWriter,
    ctx: HTTPConnectionContext,
    tunnel: Tunnel | None = None,
) -> None:
    """What happens to a decided request: an answer, a tunnel, or a forward."""
    if plan.delay:  # faultInjection: before auth, an abort, or the upstream
        await trio.sleep(plan.delay)
    if plan.pending is not None:
        await _authorize(plan, ctx)
    if plan.answer is not None:
        await send_answer(writer, plan.answer, plan.grpc)
    elif tunnel is not None:
        _start_mirrors(ctx, plan)
        await tunnel.forward(plan, writer, ctx)
    elif _plain(plan):  # no mirrors, timeouts, retries or pinned endpoint: one try
        await _once(plan, writer, ctx)
    else:
        await _forward(plan, writer, ctx)


async def _authorize(plan: RequestPlan, ctx: HTTPConnectionContext) -> None:
    """External auth or OIDC the plan left pending: an answer, or headers for the upstream."""
    guard, req = plan.pending, plan.req
    assert guard is not None
    method = "GET" if plan.upgrade else req.method
    admission = await authorize(
        ctx, guard, plan.client, method, req.authority, req.path, req.query, req.headers
    )
    if admission.status:
        plan.answer = policy_answer(admission, plan.grpc)
        return
    verb, target, fields = plan.head
    plan.head = (verb, target, admission.apply(fields))
    if admission.response:  # a refreshed OIDC session's cookies
        plan.response_extra = plan.response_extra + admission.response


def _plain(plan: RequestPlan) -> bool:
    """True when ``_forward`` would come down to ``_once``: the hot path, one layer less."""
    rule = plan.rule
    assert rule is not None
    return (
        not plan.mirrors
        and not rule.request_timeout
        and rule.retry is None
        and not rule.backend_request_timeout
        and plan.pinned is None
    )


async def _forward(plan: RequestPlan, writer: ResponseWriter, ctx: HTTPConnectionContext) -> None:
    """Carry a forwarding plan out: mirrors, the request timeout, then one try or retries."""
    rule = plan.rule
    assert rule is not None
    if plan.mirrors:
        _start_mirrors(ctx, plan)
    if not rule.request_timeout:
        if rule.retry is None and not rule.backend_request_timeout and plan.pinned is None:
            return await _once(plan, writer, ctx)
        return await _Retrying(plan, writer, ctx).run()
    with trio.CancelScope(deadline=trio.current_time() + rule.request_timeout) as scope:
        await _Retrying(plan, writer, ctx).run()
    if scope.cancelled_caught:
        if writer.head_sent:
            raise ClientAbort("request timeout")
        await send_error(writer, 504, plan.grpc)
    return None


# --- forwarding ----------------------------------------------------------------------------


_NOTHING: frozenset[ir.Endpoint] = frozenset()


def _count_failure(
    plan: RequestPlan, writer: ResponseWriter, ctx: HTTPConnectionContext, exc: UpstreamError
) -> None:
    """Count a failed try; once the response head went out, the client is cut off.

    Raises:
        ClientAbort: the head was sent already.
    """
    if writer.head_sent:
        raise ClientAbort(str(exc)) from exc
    assert plan.backend is not None
    ctx.observer.upstream_error(plan.backend.name, plan.record.upstream, type(exc).__name__)


async def _once(plan: RequestPlan, writer: ResponseWriter, ctx: HTTPConnectionContext) -> None:
    """The hot path: one try, no per-try timeout, no pinned endpoint.

    What ``_Retrying.run`` does without its retry loop: most requests need
    none, and each layer of coroutines costs a proxied request about 1 µs.
    """
    pool, backend = ctx.pool, plan.backend
    assert backend is not None
    endpoint = pool.choose(backend)
    if endpoint is None:
        return await send_error(writer, 503, plan.grpc)
    plan.record.upstream = pool.describe(endpoint)
    return await _finish_once(plan, None, endpoint, writer, ctx)


async def _finish_once(
    plan: RequestPlan,
    begun: Begun | None,
    endpoint: ir.Endpoint,
    writer: ResponseWriter,
    ctx: HTTPConnectionContext,
) -> None:
    """``_once`` for a chosen endpoint, going on from the exchange ``plan_request``
    began there if it began one."""
    backend, req = plan.backend, plan.req
    assert backend is not None
    deliver = lambda rsp: stream_response(rsp, writer, plan, endpoint)  # noqa: E731
    try:
        if begun is None:
            await ctx.pool.exchange(
                endpoint, backend, plan.head, req.body, deliver, header_case=req.header_case
            )
        else:
            await ctx.pool.finish_exchange(begun, endpoint, backend, plan.head, deliver)
    except UpstreamError as exc:
        _count_failure(plan, writer, ctx, exc)
        return await send_error(writer, exc.status, plan.grpc)
    return None


class _Retrying:
    """Tries a backend until a response is delivered or retries run out."""

    __slots__ = ("ctx", "plan", "writer")

    def __init__(
        self, plan: RequestPlan, writer: ResponseWriter, ctx: HTTPConnectionContext
    ) -> None:
        self.plan, self.writer, self.ctx = plan, writer, ctx
        req = plan.req
        if plan.rule is not None and plan.rule.retry is not None and req.body.length != 0:
            req.body = ReplayBody(req.body, ctx.buffer_limit or REPLAY_LIMIT)

    def _resendable(self) -> bool:
        body = self.plan.req.body
        if body.length == 0 or not body.started:
            return True
        return isinstance(body, ReplayBody) and body.replayable

    async def run(self) -> None:
        plan, pool = self.plan, self.ctx.pool
        assert plan.backend is not None
        assert plan.rule is not None
        breaker = pool.clusters.breaker(plan.backend.cluster) if plan.backend.cluster else None
        tried: set[ir.Endpoint] = set()
        attempt = 1
        retry = plan.rule.retry
        while True:
            try:
                status = await self._attempt(tried, attempt, breaker)
            finally:
                if attempt > 1 and breaker is not None:
                    breaker.end_retry()  # the retry this attempt was is over
            if status is None:
                return None
            assert retry is not None
            await trio.sleep(f.backoff_delay(retry, attempt, random.random()))
            attempt += 1
            if isinstance(plan.req.body, ReplayBody) and plan.req.body.started:
                plan.req.body.rewind()

    async def _attempt(
        self, tried: set[ir.Endpoint], attempt: int, breaker: Breaker | None
    ) -> int | None:
        """One try; a status (0 for a failure) when a retry follows, None when answered."""
        plan, pool = self.plan, self.ctx.pool
        retry = plan.rule.retry if plan.rule is not None else None
        assert plan.backend is not None
        endpoint = plan.pinned or pool.choose(plan.backend, frozenset(tried) if tried else _NOTHING)
        if endpoint is None:
            await send_error(self.writer, 503, plan.grpc)
            return None
        plan.record.upstream = pool.describe(endpoint)
        tried.add(endpoint)
        try:
            return await self._try_endpoint(endpoint, attempt, breaker)
        except UpstreamError as exc:
            _count_failure(plan, self.writer, self.ctx, exc)
            if (
                isinstance(exc, Overflow)
                or not self._resendable()
                or not f.should_retry(retry, None, attempt)
                or (breaker is not None and not breaker.start_retry())
            ):
                await send_error(self.writer, exc.status, plan.grpc)
                return None
            return 0

    async def _try_endpoint(
        self, endpoint: ir.Endpoint, attempt: int, breaker: Breaker | None
    ) -> int | None:
        """One try; returns a status worth retrying, or None once a response was delivered."""
        assert self.plan.rule is not None
        per_try = self.plan.rule.backend_request_timeout
        if not per_try:
            return await self._send(endpoint, attempt, breaker)
        with trio.CancelScope(deadline=trio.current_time() + per_try) as scope:
            return await self._send(endpoint, attempt, breaker)
        assert scope.cancelled_caught
        timeout = UpstreamTimeout("backend request timeout")
        assert self.plan.backend is not None
        self.ctx.pool.report_failure(endpoint, self.plan.backend, timeout)
        raise timeout

    async def _send(
        self, endpoint: ir.Endpoint, attempt: int, breaker: Breaker | None
    ) -> int | None:
        plan = self.plan
        assert plan.backend is not None
        return await self.ctx.pool.exchange(
            endpoint,
            plan.backend,
            plan.head,
            plan.req.body,
            lambda rsp: self._deliver(rsp, endpoint, attempt, breaker),
            counted=plan.rule is not None and plan.rule.retry is not None,
            header_case=plan.req.header_case,
        )

    async def _deliver(
        self, rsp: UpstreamReply, endpoint: ir.Endpoint, attempt: int, breaker: Breaker | None
    ) -> int | None:
        assert rsp.head is not None
        assert self.plan.rule is not None
        status = rsp.head.status_code
        retry = self.plan.rule.retry
        grpc_status = _grpc_status(rsp.head.headers) if retry and retry.grpc_statuses else None
        if (
            retry is not None
            and (status in retry.codes or grpc_status in retry.grpc_statuses)
            and self._resendable()
            and f.should_retry(retry, status, attempt, grpc_status)
            and (breaker is None or breaker.start_retry())  # circuitBreaker maxParallelRetries
        ):
            return status
        await stream_response(rsp, self.writer, self.plan, endpoint)
        return None


def _grpc_status(headers: Headers) -> int | None:
    """The grpc-status of a trailers-only gRPC answer (in its headers), for the gRPC retry
    triggers; None when there is none or it is not a number."""
    for name, value in headers:
        if name == b"grpc-status":
            return int(value) if value.isdigit() else None
    return None


async def stream_response(
    rsp: UpstreamReply, writer: ResponseWriter, plan: RequestPlan, endpoint: ir.Endpoint
) -> None:
    """A backend's response to the client, as it arrives, with the plan's response fields."""
    head = rsp.head
    assert head is not None
    fields = response_fields(plan, head.headers, endpoint)
    if plan.compression and compress.response_allows(plan.req.method, head.status_code, fields):
        accept = header_value(plan.req.headers, b"accept-encoding")
        encoding = compress.choose(accept, plan.compression)
        if encoding is not None:
            return await _stream_compressed(rsp, writer, plan, fields, encoding)
        fields.append((b"vary", b"Accept-Encoding"))
    if head.header_case is not None:  # http1.preserveHeaderCase, HTTP/1.1 on both sides
        fields = recase(fields, head.header_case)
    await writer.send_head(
        head.status_code, fields, content_length=head.content_length, body=head.body_expected
    )
    while True:
        if not rsp.pending():
            await writer.flush()
        event = await rsp.next_event()
        if isinstance(event, DataReceived):
            await writer.send_data(event.data)
        elif isinstance(event, MessageEnded):
            return await writer.end(event.trailers)


async def _stream_compressed(
    rsp: UpstreamReply,
    writer: ResponseWriter,
    plan: RequestPlan,
    fields: HeaderList,
    encoding: ir.Compressor,
) -> None:
    """``_stream_response`` through an encoder, flushed whenever the backend pauses."""
    head = rsp.head
    assert head is not None
    encoder = compress.Encoder(encoding)
    fields = compress.encoded_headers(fields, encoding)
    if head.header_case is not None:
        fields = recase(fields, head.header_case)
    await writer.send_head(head.status_code, fields, content_length=None, body=True)
    try:
        while True:
            if not rsp.pending():
                out = encoder.flush()
                if out:
                    await writer.send_data(out)
                await writer.flush()
            event = await rsp.next_event()
            if isinstance(event, DataReceived):
                out = encoder.compress(event.data)
                if out:
                    await writer.send_data(out)
            elif isinstance(event, MessageEnded):
                await writer.send_data(encoder.finish())
                return await writer.end(event.trailers)
    finally:
        record = plan.record
        record.encoding, record.uncompressed, record.compressed = (
            encoding,
            encoder.bytes_in,
            encoder.bytes_out,
        )


# --- answers made here ---------------------------------------------------------------------


async def send_answer(writer: ResponseWriter, answer: Answer, grpc: bool) -> None:
    """Send an answer ``decide`` made (a redirect, a preflight, an error)."""
    if answer.error:
        return await send_error(writer, answer.status, grpc)
    return await respond(writer, answer.status, answer.headers, answer.body)


async def respond(
    writer: ResponseWriter, status: int, headers: HeaderList, body: bytes = b""
) -> None:
    """A complete response made here; Content-Length (and a text type for a body) added."""
    typed = any(name == b"content-type" for name, _ in headers)
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    if body and not typed:
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    await writer.send_head(status, headers, content_length=len(body), body=True)
    if body:
        await writer.send_data(body)
    await writer.end()


async def send_error(writer: ResponseWriter, status: int, grpc: bool) -> None:
    """An error made here: a short text body, or for gRPC a status (HTTP 200, ``grpc-status``)."""
    reason = reason_phrase(status) or b"Error"
    if not grpc:
        return await respond(writer, status, [], reason + b"\n")
    headers = [
        (b"content-type", b"application/grpc"),
        (b"grpc-status", _GRPC_STATUS.get(status, b"2")),
        (b"grpc-message", reason),
    ]
    return await respond(writer, 200, headers)


# --- mirrors -------------------------------------------------------------------------------


class _NoBody:
    length: int | None = 0
    started = False
    finished = True
    received = 0
    trailers: Headers = ()

    async def receive(self) -> bytes:
        return b""


_NOT_MIRRORED = frozenset({b"connection", b"upgrade", b"transfer-encoding"})


def _start_mirrors(ctx: HTTPConnectionContext, plan: RequestPlan) -> None:
    """Start a copy of a body-less request (or an upgrade's handshake, as a plain GET)."""
    if not plan.mirrors or ctx.background is None:
        return
    method, target, fields = plan.head
    if plan.upgrade:
        fields = [item for item in fields if item[0] not in _NOT_MIRRORED]
    elif plan.req.body.length != 0:
        return
    pool = ctx.pool
    for backend in plan.mirrors:
        if backend.invalid or not backend.endpoints or pool.mirrors_in_flight >= MIRRORS_MAX:
            continue
        pool.mirrors_in_flight += 1
        ctx.background.start_soon(_mirror, pool, backend, (method, target, fields))


async def _drop_response(rsp: UpstreamReply) -> None:
    while not isinstance(await rsp.next_event(), MessageEnded):
        pass


async def _mirror(
    pool: UpstreamPool, backend: ir.Backend, head: tuple[bytes, bytes, HeaderList]
) -> None:
    """Send a copy and drop the answer; nothing here may reach the client."""
    try:
        endpoint = pool.choose(backend)
        with trio.move_on_after(30):
            if endpoint is not None:
                await pool.exchange(endpoint, backend, head, _NoBody(), _drop_response)
    except UpstreamError:
        pass
    finally:
        pool.mirrors_in_flight -= 1
