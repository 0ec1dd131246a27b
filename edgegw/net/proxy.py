"""One proxied request, independent of the client's HTTP version.

Theory of operation
-------------------
A front end (``net/http.py`` for HTTP/1.1; HTTP/2 later) parses the client's
request into a ``ProxyRequest`` whose body is a ``RequestBody``, hands over a
``ResponseWriter`` for the answer, and awaits ``handle_request``. From here
on it is the spec's behaviour, with no framing in sight:

1. listener by Host (421 when TLS SNI picked another one); route match (404);
2. the rule's filters in order: CORS (preflights answered here), redirects
   (answered here), header modifiers, URL rewrite, mirrors;
3. a backend by weight, or the endpoint a session cookie/header names;
   unresolved backend or zero weights → 500, no endpoints → 503;
4. the upstream exchange (``upstream.open_exchange``) with the rule's retries:
   connect failures → 503, broken upstreams → 502, timeouts → 504; a retry
   only while the body can still be sent again;
5. the response, hop-by-hop headers removed, response filters applied,
   streamed as it arrives (flushed only when the upstream has nothing more
   queued, so a small response leaves in one write).

The whole request runs under ``request_timeout``, each attempt under
``backend_request_timeout``. A failure after the response head went out cannot
be reported any more: ``ClientAbort`` tells the front end to drop the
connection. Errors on gRPC routes are answered as gRPC statuses (HTTP 200 with
``grpc-status``), which matters once an HTTP/2 front end exists.

Mirrors are fire-and-forget copies of body-less requests only: a request with
a body is not mirrored, since copying a stream we must not buffer is not
cheap. They run in ``ctx.background``, at most ``MIRRORS_MAX`` at a time, and
their responses are read and dropped.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import trio

from edgegw import ir
from edgegw.net.context import (
    ClientAbort,
    HTTPConnectionContext,
    ProxyRequest,
    RequestRecord,
    ResponseWriter,
)
from edgegw.net.h2upstream import open_h2_exchange
from edgegw.net.sessions import persist_headers, sticky_lookup
from edgegw.net.upstream import (
    RequestBody,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeout,
    describe_endpoint,
    exchange,
    open_exchange,
)
from edgegw.proto.events import (
    DataReceived,
    Event,
    HeaderList,
    Headers,
    MessageEnded,
    ResponseReceived,
)
from edgegw.proto.http1 import reason_phrase, strip_hop_by_hop
from edgegw.routing import ListenerTable, PortTable, RouteMatch, pick_backend
from edgegw.routing import filters as f

MIRRORS_MAX = 256
_H2 = ("h2c", "h2")  # backend protocols spoken over HTTP/2
_R = TypeVar("_R")
_GRPC_STATUS = {404: b"12", 421: b"13", 500: b"13", 502: b"14", 503: b"14", 504: b"4"}


# --- the request ---------------------------------------------------------------------------


async def handle_request(
    req: ProxyRequest, writer: ResponseWriter, ctx: HTTPConnectionContext
) -> None:
    """Route, filter and forward one request, answering through ``writer``.

    Raises:
        ClientAbort: the response broke off after its head was sent.
    """
    client = ctx.client[0] if ctx.client else ""
    record = RequestRecord(req.method, req.path, client)
    start = trio.current_time()
    try:
        await _dispatch(req, writer, ctx, record)
    finally:
        record.status = writer.status
        record.duration = trio.current_time() - start
        record.bytes_out = writer.bytes_sent
        record.bytes_in = getattr(req.body, "received", 0)
        ctx.observer.request_done(record)


def _select_listener(table: PortTable, host: str, sni: str | None) -> ListenerTable | int:
    chosen = table.listener_for_host(host)
    if sni is None:
        return chosen if chosen is not None else 404
    if chosen is None:
        return next((t for t in table.listeners if t.listener.key == sni), 404)
    return chosen if chosen.listener.key == sni else 421


async def _dispatch(
    req: ProxyRequest, writer: ResponseWriter, ctx: HTTPConnectionContext, record: RequestRecord
) -> None:
    listener = _select_listener(ctx.port_table(), req.host, ctx.sni_listener)
    if isinstance(listener, int):
        return await _error(writer, listener, _looks_grpc(req))
    record.listener = listener.listener.key
    match = listener.match(req.host, req.method, req.path, req.query, req.headers)
    if match is None:
        return await _error(writer, 404, _looks_grpc(req))
    rule = match.rule
    record.route_namespace, record.route_name = match.route.namespace, match.route.name
    record.rule_index = rule.index
    grpc = rule.grpc or match.route.kind == "GRPCRoute"
    if rule.invalid:
        return await _error(writer, 500, grpc)
    port = listener.listener.port
    if not rule.request_timeout:
        return await _serve_rule(req, writer, ctx, record, match, port, grpc)
    with trio.CancelScope(deadline=trio.current_time() + rule.request_timeout) as scope:
        await _serve_rule(req, writer, ctx, record, match, port, grpc)
    if scope.cancelled_caught:
        if writer.head_sent:
            raise ClientAbort("request timeout")
        await _error(writer, 504, grpc)
    return None


class _Plan:
    """What the filters decided: the request to forward and what to do to the response."""

    __slots__ = (
        "answer",
        "authority",
        "headers",
        "mirrors",
        "path",
        "response_extra",
        "response_modifiers",
    )

    def __init__(self, headers: HeaderList, authority: str, path: str) -> None:
        self.headers = headers
        self.authority = authority
        self.path = path
        self.response_modifiers: list[ir.HeaderModifier] = []
        self.response_extra: HeaderList = []
        self.mirrors: list[ir.Backend] = []
        self.answer: tuple[int, HeaderList] | None = None


def _header(headers: HeaderList, name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _apply_filters(
    req: ProxyRequest, match: RouteMatch, scheme: str, port: int, plan: _Plan
) -> None:
    for flt in match.rule.filters:
        if isinstance(flt, ir.RequestHeaderModifierFilter):
            plan.headers = f.apply_header_modifier(plan.headers, flt.modifier)
        elif isinstance(flt, ir.ResponseHeaderModifierFilter):
            plan.response_modifiers.append(flt.modifier)
        elif isinstance(flt, ir.URLRewriteFilter):
            plan.authority, plan.path = f.rewrite(flt, plan.authority, plan.path, match.match)
        elif isinstance(flt, ir.RequestMirrorFilter):
            if f.mirror_wanted(flt, random.random()):
                plan.mirrors.append(flt.backend)
        elif isinstance(flt, ir.RequestRedirectFilter):
            status, location = f.redirect_location(
                flt, scheme, req.host, port, req.path, req.query, match.match
            )
            plan.answer = (status, [(b"location", location.encode())])
            return
        elif isinstance(flt, ir.CORSFilter) and _cors(req, flt, plan):
            return


def _cors(req: ProxyRequest, cors: ir.CORSFilter, plan: _Plan) -> bool:
    """Apply a CORS filter; True when the gateway answers (a preflight)."""
    origin = _header(req.headers, b"origin")
    wanted = _header(req.headers, b"access-control-request-method")
    if f.is_cors_preflight(req.method, origin, wanted):
        assert origin is not None
        asked = _header(req.headers, b"access-control-request-headers")
        plan.answer = (200, f.cors_preflight(cors, origin, wanted, asked) or [])
        return True
    plan.response_extra += f.cors_response_headers(cors, origin)
    return False


def _apply_backend_filters(backend: ir.Backend, plan: _Plan) -> None:
    for flt in backend.filters:
        if isinstance(flt, ir.RequestHeaderModifierFilter):
            plan.headers = f.apply_header_modifier(plan.headers, flt.modifier)
        elif isinstance(flt, ir.ResponseHeaderModifierFilter):
            plan.response_modifiers.append(flt.modifier)


async def _serve_rule(
    req: ProxyRequest,
    writer: ResponseWriter,
    ctx: HTTPConnectionContext,
    record: RequestRecord,
    match: RouteMatch,
    port: int,
    grpc: bool,
) -> None:
    rule = match.rule
    plan = _Plan(req.headers, req.authority, req.path)
    if rule.filters:
        _apply_filters(req, match, ctx.scheme, port, plan)
        if plan.answer is not None:
            return await _respond(writer, plan.answer[0], plan.answer[1])
    sticky = sticky_lookup(rule, req.headers)
    backend = sticky[0] if sticky else pick_backend(rule, random.random())
    if backend is None or backend.invalid:  # gRPC clients get UNAVAILABLE (14) for this
        return await _error(writer, 503 if grpc else 500, grpc)
    record.backend = backend.name
    if not backend.endpoints:
        return await _error(writer, 503, grpc)
    if backend.filters:
        _apply_backend_filters(backend, plan)
    head = _upstream_head(req, ctx, plan)
    if plan.mirrors:
        _start_mirrors(ctx, req, plan.mirrors, head)
    attempt = _Attempt(req, writer, ctx, record, rule, backend, head, plan, grpc)
    if rule.retry is None and not rule.backend_request_timeout and sticky is None:
        return await attempt.once()
    return await attempt.run(sticky[1] if sticky else None)


# --- forwarding ----------------------------------------------------------------------------


def _upstream_head(
    req: ProxyRequest, ctx: HTTPConnectionContext, plan: _Plan
) -> tuple[bytes, bytes, HeaderList]:
    """Request line and headers for the upstream: Host, X-Forwarded-*, framing."""
    authority = plan.authority.encode("latin-1")
    out: HeaderList = [(b"host", authority)]
    forwarded_for: bytes | None = None
    for item in plan.headers:
        name = item[0]
        if name == b"x-forwarded-for":
            forwarded_for = item[1] if forwarded_for is None else forwarded_for + b", " + item[1]
        elif name == b"host":
            out[0] = item  # set by a header modifier
        elif name not in (b"x-forwarded-proto", b"x-forwarded-host", b"expect"):
            out.append(item)
    client = (ctx.client[0] if ctx.client else "").encode()
    out.append((b"x-forwarded-for", forwarded_for + b", " + client if forwarded_for else client))
    out.append((b"x-forwarded-proto", ctx.scheme.encode()))
    out.append((b"x-forwarded-host", req.authority.encode("latin-1")))
    if req.body.length is None:
        out.append((b"transfer-encoding", b"chunked"))
    target = plan.path + "?" + req.query if req.query else plan.path
    return req.method.encode(), target.encode("latin-1"), out


_NOTHING: frozenset[ir.Endpoint] = frozenset()
_descriptions: dict[ir.Endpoint, str] = {}


def _describe(endpoint: ir.Endpoint) -> str:
    text = _descriptions.get(endpoint)
    if text is None:
        if len(_descriptions) > 4096:
            _descriptions.clear()
        text = _descriptions[endpoint] = describe_endpoint(endpoint)
    return text


async def _exchange(
    pool: UpstreamPool,
    endpoint: ir.Endpoint,
    backend: ir.Backend,
    head: tuple[bytes, bytes, HeaderList],
    body: RequestBody,
    deliver: Callable[[UpstreamReply], Awaitable[_R]],
) -> _R:
    """One exchange with ``endpoint`` in the backend's protocol; ``deliver`` takes the reply.

    Raises:
        UpstreamError: see ``net/upstream.py``.
    """
    if backend.app_protocol in _H2:
        async with open_h2_exchange(pool, endpoint, backend, head, body) as h2rsp:
            return await deliver(h2rsp)
    if body.length == 0:  # no body pump needed, nor its context manager
        rsp = await exchange(pool, endpoint, backend, head)
        try:
            return await deliver(rsp)
        finally:
            rsp.release()
    async with open_exchange(pool, endpoint, backend, head, body) as rsp:
        return await deliver(rsp)


class _Attempt:
    """Tries a backend until a response is delivered or retries run out."""

    __slots__ = ("backend", "ctx", "grpc", "head", "plan", "record", "req", "rule", "writer")

    def __init__(
        self,
        req: ProxyRequest,
        writer: ResponseWriter,
        ctx: HTTPConnectionContext,
        record: RequestRecord,
        rule: ir.HTTPRouteRule,
        backend: ir.Backend,
        head: tuple[bytes, bytes, HeaderList],
        plan: _Plan,
        grpc: bool,
    ) -> None:
        self.req, self.writer, self.ctx, self.record = req, writer, ctx, record
        self.rule, self.backend, self.head, self.plan, self.grpc = rule, backend, head, plan, grpc

    async def once(self) -> None:
        """The hot path: one try, no per-try timeout, no pinned endpoint.

        What ``run`` does without its retry loop: most requests need none, and
        each layer of coroutines costs a proxied request about 1 µs.
        """
        pool, backend, rule = self.ctx.pool, self.backend, self.rule
        endpoint = pool.choose(backend)
        if endpoint is None:
            return await _error(self.writer, 503, self.grpc)
        self.record.upstream = _describe(endpoint)
        extra = persist_headers(rule, backend, endpoint) if rule.session_persistence else []
        writer, plan = self.writer, self.plan
        try:
            await _exchange(
                pool,
                endpoint,
                backend,
                self.head,
                self.req.body,
                lambda rsp: _stream_response(rsp, writer, plan, extra),
            )
        except UpstreamError as exc:
            self._count_failure(exc)
            return await _error(writer, exc.status, self.grpc)
        return None

    def _count_failure(self, exc: UpstreamError) -> None:
        """Count a failed try; once the response head went out, the client is cut off.

        Raises:
            ClientAbort: the head was sent already.
        """
        if self.writer.head_sent:
            raise ClientAbort(str(exc)) from exc
        kind = type(exc).__name__
        self.ctx.observer.upstream_error(self.backend.name, self.record.upstream, kind)

    def _resendable(self) -> bool:
        return self.req.body.length == 0 or not self.req.body.started

    async def run(self, pinned: ir.Endpoint | None) -> None:
        tried: set[ir.Endpoint] = set()
        attempt = 1
        retry = self.rule.retry
        while True:
            endpoint = pinned or self.ctx.pool.choose(
                self.backend, frozenset(tried) if tried else _NOTHING
            )
            if endpoint is None:
                return await _error(self.writer, 503, self.grpc)
            self.record.upstream = _describe(endpoint)
            try:
                status = await self._once(endpoint, attempt, persist=pinned is None)
            except UpstreamError as exc:
                self._count_failure(exc)
                if not (self._resendable() and f.should_retry(retry, None, attempt)):
                    return await _error(self.writer, exc.status, self.grpc)
                status = 0
            if status is None:
                return None
            assert retry is not None
            tried.add(endpoint)
            await trio.sleep(f.backoff_delay(retry, attempt, random.random()))
            attempt += 1

    async def _once(self, endpoint: ir.Endpoint, attempt: int, *, persist: bool) -> int | None:
        """One try; returns a status worth retrying, or None once a response was delivered."""
        per_try = self.rule.backend_request_timeout
        if not per_try:
            return await self._exchange(endpoint, attempt, persist)
        with trio.CancelScope(deadline=trio.current_time() + per_try) as scope:
            return await self._exchange(endpoint, attempt, persist)
        assert scope.cancelled_caught
        raise UpstreamTimeout("backend request timeout")

    async def _exchange(self, endpoint: ir.Endpoint, attempt: int, persist: bool) -> int | None:
        return await _exchange(
            self.ctx.pool,
            endpoint,
            self.backend,
            self.head,
            self.req.body,
            lambda rsp: self._deliver(rsp, endpoint, attempt, persist),
        )

    async def _deliver(
        self, rsp: UpstreamReply, endpoint: ir.Endpoint, attempt: int, persist: bool
    ) -> int | None:
        assert rsp.head is not None
        status = rsp.head.status_code
        retry = self.rule.retry
        if (
            retry is not None
            and status in retry.codes
            and self._resendable()
            and f.should_retry(retry, status, attempt)
        ):
            return status
        extra = persist_headers(self.rule, self.backend, endpoint) if persist else []
        await _stream_response(rsp, self.writer, self.plan, extra)
        return None


class UpstreamReply(Protocol):
    """A response being read from a backend, over HTTP/1.1 or HTTP/2."""

    head: ResponseReceived | None

    async def next_event(self) -> Event: ...

    def pending(self) -> bool: ...


async def _stream_response(
    rsp: UpstreamReply, writer: ResponseWriter, plan: _Plan, extra: HeaderList
) -> None:
    head = rsp.head
    assert head is not None
    headers = strip_hop_by_hop(head.headers)
    for modifier in plan.response_modifiers:
        headers = f.apply_header_modifier(headers, modifier)
    headers += plan.response_extra
    headers += extra
    await writer.send_head(
        head.status_code, headers, content_length=head.content_length, body=head.body_expected
    )
    while True:
        if not rsp.pending():
            await writer.flush()
        event = await rsp.next_event()
        if isinstance(event, DataReceived):
            await writer.send_data(event.data)
        elif isinstance(event, MessageEnded):
            return await writer.end(event.trailers)


# --- answers made here ---------------------------------------------------------------------


async def _respond(
    writer: ResponseWriter, status: int, headers: HeaderList, body: bytes = b""
) -> None:
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    if body:
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    await writer.send_head(status, headers, content_length=len(body), body=True)
    if body:
        await writer.send_data(body)
    await writer.end()


async def _error(writer: ResponseWriter, status: int, grpc: bool) -> None:
    reason = reason_phrase(status) or b"Error"
    if not grpc:
        return await _respond(writer, status, [], reason + b"\n")
    headers = [
        (b"content-type", b"application/grpc"),
        (b"grpc-status", _GRPC_STATUS.get(status, b"2")),
        (b"grpc-message", reason),
    ]
    return await _respond(writer, 200, headers)


def _looks_grpc(req: ProxyRequest) -> bool:
    content_type = _header(req.headers, b"content-type")
    return content_type is not None and content_type.startswith("application/grpc")


# --- mirrors -------------------------------------------------------------------------------


class _NoBody:
    length: int | None = 0
    started = False
    finished = True
    received = 0
    trailers: Headers = ()

    async def receive(self) -> bytes:
        return b""


_mirrors_in_flight = [0]


def _start_mirrors(
    ctx: HTTPConnectionContext,
    req: ProxyRequest,
    backends: list[ir.Backend],
    head: tuple[bytes, bytes, HeaderList],
) -> None:
    if ctx.background is None or req.body.length != 0:
        return
    for backend in backends:
        if backend.invalid or not backend.endpoints or _mirrors_in_flight[0] >= MIRRORS_MAX:
            continue
        _mirrors_in_flight[0] += 1
        ctx.background.start_soon(_mirror, ctx.pool, backend, head)


async def _mirror(
    pool: UpstreamPool, backend: ir.Backend, head: tuple[bytes, bytes, HeaderList]
) -> None:
    """Send a copy and drop the answer; nothing here may reach the client."""
    try:
        endpoint = pool.choose(backend)
        with trio.move_on_after(30):
            if endpoint is not None:
                async with open_exchange(pool, endpoint, backend, head, _NoBody()) as rsp:
                    while not isinstance(await rsp.next_event(), MessageEnded):
                        pass
    except UpstreamError:
        pass
    finally:
        _mirrors_in_flight[0] -= 1
