"""The one decision for every HTTP request: an answer made here, or a plan to forward.

Theory of operation
-------------------
Every request kind reaches ``decide`` the same way: HTTP/1.1 and HTTP/2 (h2c
or TLS) requests, gRPC calls, an HTTP/1.1 ``Upgrade: websocket`` and an
RFC 8441 extended CONNECT (the last two with ``upgrade=True``). The front
ends only frame; nothing else in ``net/`` matches routes or reads filters,
so a policy added here holds for every protocol at once (STYLE rule 11).

``decide`` is synchronous and does no I/O. In order:

1. on plain-HTTP ports a pending ACME HTTP-01 token is answered first,
   before any listener or route (``certificates.challenges``); a request
   that already passed through this gateway (its ``Via``, see
   ``proto/via.py``) is answered 508;
2. listener by Host (an HTTP/1.0 request without one gets the port's
   ``useDefaultHost``); 421 when TLS SNI chose another listener, 404 when
   none; then the path is normalized, once (``proto/target.py``: dot
   segments, unreserved escapes, repeated slashes), so routes match, and the
   backend gets, the resolved path; a listener's ClientTrafficPolicy ``path``
   and ``headers`` apply here, before routing (``policy/clientrequest.py``);
3. the route match (404) and the rule (500 when it is invalid);
4. the rule's filters in order: CORS (a preflight is answered here),
   RequestRedirect (answered here), request and response header modifiers,
   URLRewrite, mirrors;
5. session persistence (a pinned endpoint) or a backend by weight, and the
   backendRef's own filters, the same kinds as the rule's (a backend-level
   RequestRedirect is answered here too); 500/503 when there is no usable backend;
6. the upstream request head: Host, X-Forwarded-*, Via, framing, and for an
   upgrade ``Connection: Upgrade``; the response gets Via too, and on an
   HTTPS listener with HTTP/3 (``routing/http3.py``) ``alt-svc``.

The result is one ``RequestPlan``, which is also the request's state while
it is served: ``answer`` set means "say this and stop"; otherwise the plan
names the backend (and a pinned endpoint), the head to send, what to do to
the response (``response_modifiers``, ``response_extra``), the mirrors, and
through ``rule`` the timeouts and retries. ``net/proxy.py`` carries a plan
out; for an upgrade it hands the plan to the tunnel (``net/websocket.py``),
which only moves bytes. ``response_fields`` is the one place where the
response modifiers are applied, to a 200 as to a 101.

Policies (``net/guard.py``) are a step between 3 and 4: client IP detection,
API key, basic auth, authorization and rate limits set ``answer`` or change
the request headers; external auth needs I/O, so it leaves ``pending`` on
the plan for the forward step to await before anything goes upstream, in one
place for every request kind.
"""

from __future__ import annotations

import random
from urllib.parse import quote_from_bytes

import msgspec

from edgegw import ir
from edgegw.net.context import (
    ChallengeAnswers,
    HTTPConnectionContext,
    ProxyRequest,
    RequestRecord,
)
from edgegw.net.guard import Admission, admit, readmit
from edgegw.policy.clientrequest import ClientRequestRules, LateResponse
from edgegw.policy.compiled import RuleGuard
from edgegw.policy.lb import consistent_pick, hash_key
from edgegw.policy.xfcc import PeerCertificate
from edgegw.proto.events import HeaderList, Headers
from edgegw.proto.http1 import reason_phrase, strip_hop_by_hop
from edgegw.proto.target import normalize_path
from edgegw.proto.via import passed_through
from edgegw.routing import ListenerTable, PortTable, RouteMatch, pick_backend
from edgegw.routing import filters as f
from edgegw.routing.sessions import persist_headers, sticky_lookup

_NO_MODIFIERS: tuple[ir.HeaderModifier, ...] = ()
_NO_MIRRORS: tuple[ir.Backend, ...] = ()
_NO_FIELDS: HeaderList = []  # shared and never mutated: response_extra is replaced, not grown
_UPGRADE_FIELDS = ((b"connection", b"Upgrade"), (b"upgrade", b"websocket"))


class Answer:
    """A response made by the gateway: a redirect, a CORS preflight, an error.

    ``error`` answers carry a short text body, or for gRPC a status in the
    headers (``proxy.send_answer`` knows how).
    """

    __slots__ = ("body", "error", "headers", "status")

    def __init__(
        self, status: int, headers: HeaderList, *, error: bool = False, body: bytes = b""
    ) -> None:
        self.status = status
        self.headers = headers
        self.error = error
        self.body = body


class RequestPlan(msgspec.Struct):
    """One request's decision and state, from ``decide`` to the last byte.

    A ``msgspec.Struct``: made per request, and its many defaults are set in C.

    Attributes:
        req, record: the request and what the access log learns of it.
        upgrade: a WebSocket request; the forward step opens a tunnel.
        grpc: errors are answered as gRPC statuses.
        answer: when set, the whole response; nothing is forwarded.
        rule, backend, pinned: the rule served, the backend picked, and the
            endpoint a session token pins (None: the pool chooses).
        head: the upstream request line and headers (method, target, fields).
        response_modifiers, response_extra: what ``response_fields`` applies.
        mirrors: backends that get a copy of the request.
        client: the client's address as client IP detection found it (``decide``
            starts it as the record's).
        compression: the encodings a BackendTrafficPolicy offers for the response.
        pending: a rule guard whose external auth the forward step awaits first.
        delay: seconds a faultInjection delay holds the request before anything else.
    """

    req: ProxyRequest
    record: RequestRecord
    upgrade: bool
    grpc: bool = False
    answer: Answer | None = None
    rule: ir.HTTPRouteRule | None = None
    backend: ir.Backend | None = None
    pinned: ir.Endpoint | None = None
    head: tuple[bytes, bytes, HeaderList] = (b"", b"", _NO_FIELDS)
    response_modifiers: tuple[ir.HeaderModifier, ...] = _NO_MODIFIERS
    response_extra: HeaderList = _NO_FIELDS
    late_response: LateResponse | None = None  # ClientTrafficPolicy lateResponseHeaders
    mirrors: tuple[ir.Backend, ...] = _NO_MIRRORS
    client: str = ""
    compression: tuple[ir.Compressor, ...] = ()
    pending: RuleGuard | None = None
    delay: float = 0.0

    def refuse(self, status: int) -> RequestPlan:
        """Answer with an error status (as a gRPC status on gRPC requests)."""
        self.answer = Answer(status, [], error=True)
        return self


def decide(
    req: ProxyRequest, ctx: HTTPConnectionContext, record: RequestRecord, *, upgrade: bool = False
) -> RequestPlan:
    """Match, filter and plan one request (see the module docstring); no I/O."""
    plan = RequestPlan(req, record, upgrade, client=record.client)
    if (
        ctx.challenges is not None
        and req.path.startswith(_HTTP01_PATH)
        and _acme_http01(plan, ctx.challenges)
    ):
        return plan
    if passed_through(req.headers, ctx.via):  # a forwarding loop: one hop, then stop
        plan.grpc = looks_grpc(req)
        return plan.refuse(508)
    if not req.authority and ctx.default_host:  # http1.http10.useDefaultHost
        req.authority = req.host = ctx.default_host
    listener = select_listener(ctx.port_table(), req.host, ctx.sni_listener)
    if isinstance(listener, int):
        plan.grpc = looks_grpc(req)
        return plan.refuse(listener)
    record.listener = listener.key
    if listener.client_rules is None:
        req.path = normalize_path(req.path)
    elif _client_rules(plan, listener.client_rules, ctx.client_cert):
        return plan
    method = (
        "GET" if upgrade else req.method
    )  # an extended CONNECT is matched as the GET it becomes
    match = listener.match(req.host, method, req.path, req.query, req.headers)
    if match is None:
        plan.grpc = looks_grpc(req)
        return plan.refuse(404)
    rule = plan.rule = match.rule
    record.route_namespace, record.route_name = match.route.namespace, match.route.name
    record.rule_index = rule.index
    plan.grpc = match.grpc
    if rule.invalid:
        return plan.refuse(500)
    plan.response_extra = [(b"via", ctx.via)]
    if listener.alt_svc is not None and ctx.scheme == "https":
        plan.response_extra.append((b"alt-svc", listener.alt_svc))
    if match.guard is not None or listener.client_guard is not None:
        guarded = _guarded(plan, ctx, listener, match, method)
        if guarded is None:
            return plan
        match, rule = guarded, guarded.rule
    if not rule.filters:  # the common case: the request goes on as it came
        return _pick_backend(plan, ctx, match, listener, None)
    request = _Request(req.headers, req.authority, req.path, ctx.scheme, listener)
    _apply_filters(plan, match, request, rule.filters)
    if plan.answer is not None:
        return plan
    return _pick_backend(plan, ctx, match, listener, request)


def _client_rules(
    plan: RequestPlan, rules: ClientRequestRules, peer: PeerCertificate | None
) -> bool:
    """A ClientTrafficPolicy's path and header rules; True when they answer the request."""
    req = plan.req
    plan.late_response = rules.late_response
    req.path, refusal = rules.path(req.path, req.query)
    if refusal is None:
        req.headers, refusal = rules.headers(req.headers, peer)
    if refusal is None:
        return False
    plan.grpc = looks_grpc(req)
    if refusal.status == 307 and not plan.grpc:
        plan.answer = Answer(307, [(b"location", refusal.location.encode("latin-1"))])
    else:  # gRPC calls get INTERNAL (13) for both, as in Envoy
        plan.refuse(400)
    return True


class _Request:
    """The request as the filters leave it, and the listener a redirect is made from."""

    __slots__ = ("authority", "headers", "path", "port", "scheme")

    def __init__(
        self, headers: HeaderList, authority: str, path: str, scheme: str, listener: ListenerTable
    ) -> None:
        self.headers, self.authority, self.path = headers, authority, path
        self.scheme, self.port = scheme, listener.listener.port


_HTTP01_PATH = "/.well-known/acme-challenge/"  # RFC 8555 section 8.3: a cheap first test


def _acme_http01(plan: RequestPlan, challenges: ChallengeAnswers) -> bool:
    """ACME HTTP-01 (RFC 8555 §8.3): answered before any route, on plain-HTTP ports."""
    req = plan.req
    if plan.upgrade or req.method not in ("GET", "HEAD"):
        return False
    body = challenges.answer_http01(req.path)
    if body is not None:
        plan.answer = Answer(200, [], body=body)
    return body is not None


def _admitted(plan: RequestPlan, admission: Admission) -> Answer | None:
    """Take the policies' verdict into the plan; the answer when they refuse the request."""
    plan.client = plan.record.client = admission.client
    plan.compression = admission.compression
    plan.pending = admission.pending
    plan.delay = admission.delay
    if admission.fault:
        plan.answer = _fault_answer(admission, plan.grpc)
        return plan.answer
    if admission.status:
        plan.answer = policy_answer(admission, plan.grpc)
        return plan.answer
    if admission.add or admission.remove:
        plan.req.headers = admission.apply(plan.req.headers)
    return None


def _guarded(
    plan: RequestPlan,
    ctx: HTTPConnectionContext,
    listener: ListenerTable,
    match: RouteMatch,
    method: str,
) -> RouteMatch | None:
    """The policies of the matched rule; the match to go on with, None when they answered."""
    req = plan.req
    admission = admit(
        listener,
        match,
        method,
        req.path,
        req.query,
        req.headers,
        plan.record.client,
        ctx.observer,
        keys=ctx.jwks,
        scheme=ctx.scheme,
        authority=req.authority,
    )
    if admission is None:
        return match
    if _admitted(plan, admission) is not None:
        return None
    if admission.recompute:
        return _rematch(plan, ctx, listener, match, method)
    return match


def _rematch(
    plan: RequestPlan,
    ctx: HTTPConnectionContext,
    listener: ListenerTable,
    match: RouteMatch,
    method: str,
) -> RouteMatch | None:
    """jwt ``recomputeRoute``: the route chosen again with the claim headers; None if answered.

    As in Envoy, which clears its route cache after jwt_authn: another rule
    brings its own filters and backends and the policies its filter chain runs
    after jwt_authn (authorization, rate limits); CORS, faults, external,
    basic, API-key and JWT auth already ran, for the first. No route: 404.
    """
    req = plan.req
    again = listener.match(req.host, method, req.path, req.query, req.headers)
    if again is None:
        plan.refuse(404)
        return None
    if again.rule is match.rule:
        return match
    record = plan.record
    rule = plan.rule = again.rule
    record.route_namespace, record.route_name = again.route.namespace, again.route.name
    record.rule_index = rule.index
    plan.grpc = again.grpc
    if rule.invalid:
        plan.refuse(500)
        return None
    guard = again.guard
    if guard is None:
        plan.compression = ()
        return again
    readmission = readmit(
        guard, plan.client, method, req.path, req.query, req.headers, ctx.observer
    )
    plan.compression = readmission.compression
    if readmission.status:
        plan.answer = policy_answer(readmission, plan.grpc)
        return None
    return again


def _fault_answer(admission: Admission, grpc: bool) -> Answer:
    """A faultInjection abort: its ``grpcStatus`` as given, an ``httpStatus`` as Envoy sends it.

    An HTTP status to a gRPC client becomes the gRPC status Envoy maps it to.
    """
    if admission.headers:  # grpcStatus: HTTP 200 carrying it
        return Answer(200, admission.headers)
    if grpc:
        return Answer(admission.status, [], error=True)
    return Answer(admission.status, [], body=admission.body)


# Envoy's mapping of a local reply's HTTP status to a gRPC status (Grpc::Utility)
_GRPC_STATUS = {400: b"13", 401: b"16", 403: b"7", 404: b"12", 429: b"14", 503: b"14"}


def policy_answer(admission: Admission, grpc: bool) -> Answer:
    """A policy's refusal; to a gRPC client as Envoy sends local replies: a gRPC status.

    The HTTP status maps as Envoy maps it (401 → UNAUTHENTICATED, 403 →
    PERMISSION_DENIED, 429 → UNAVAILABLE, others UNKNOWN), the body becomes
    ``grpc-message``, and the policy's own headers (``www-authenticate``) stay.
    """
    if not grpc:
        return Answer(admission.status, admission.headers, body=admission.body)
    message = admission.body.strip() or (reason_phrase(admission.status) or b"")
    headers = [
        *admission.headers,
        (b"content-type", b"application/grpc"),
        (b"grpc-status", _GRPC_STATUS.get(admission.status, b"2")),
        (b"grpc-message", quote_from_bytes(message, safe=" ").encode()),
    ]
    return Answer(200, headers)


def _pick_backend(
    plan: RequestPlan,
    ctx: HTTPConnectionContext,
    match: RouteMatch,
    listener: ListenerTable,
    request: _Request | None,
) -> RequestPlan:
    """The backend (and a pinned endpoint), its filters, then the upstream head.

    ``request`` is what the rule's filters made of the request, None when it had none.
    """
    rule, req = match.rule, plan.req
    sessions = match.sessions
    sticky = sticky_lookup(rule, sessions, req.headers) if sessions is not None else None
    backend: ir.Backend | None
    if sticky is not None:
        backend, plan.pinned = sticky
    elif len(rule.backends) == 1:  # no draw needed
        backend = rule.backends[0] if rule.backends[0].weight > 0 else None
    else:
        backend = pick_backend(rule, random.random())
    if backend is None or backend.invalid:  # gRPC clients get UNAVAILABLE (14) for this
        return plan.refuse(503 if plan.grpc else 500)
    plan.backend = backend
    plan.record.backend = backend.name
    if not backend.endpoints:
        return plan.refuse(503)
    if rule.traffic is not None and rule.traffic.hash_on is not None and sticky is None:
        plan.pinned = _hashed_endpoint(plan, ctx, backend, rule.traffic.hash_on)
    if backend.filters:  # the same kinds as the rule's, RequestRedirect and URLRewrite included
        if request is None:
            request = _Request(req.headers, req.authority, req.path, ctx.scheme, listener)
        _apply_filters(plan, match, request, backend.filters)
        if plan.answer is not None:
            return plan
    if request is None:
        plan.head = upstream_head(plan, ctx, req.headers, req.authority, req.path)
    else:
        plan.head = upstream_head(plan, ctx, request.headers, request.authority, request.path)
    return plan


def _hashed_endpoint(
    plan: RequestPlan, ctx: HTTPConnectionContext, backend: ir.Backend, hash_on: tuple[str, str]
) -> ir.Endpoint | None:
    """ConsistentHash: the endpoint the request's key maps to among those not ejected."""
    key = hash_key(hash_on, plan.client, plan.req.headers)
    if key is None or len(backend.endpoints) < 2:
        return None
    healthy = [e for e in backend.endpoints if not ctx.pool.is_ejected(e, backend)]
    return consistent_pick(healthy or backend.endpoints, key)


def select_listener(table: PortTable, host: str, sni: str | None) -> ListenerTable | int:
    """The listener for ``host``; 421 when TLS SNI chose another one, 404 when none."""
    chosen = table.listener_for_host(host)
    if sni is None:
        return chosen if chosen is not None else 404
    if chosen is None:
        return next((t for t in table.listeners if t.key == sni), 404)
    return chosen if chosen.key == sni else 421


def header_value(headers: HeaderList, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case), or None."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def looks_grpc(req: ProxyRequest) -> bool:
    """A gRPC call by its content type (before any route said so)."""
    content_type = header_value(req.headers, b"content-type")
    return content_type is not None and content_type.startswith("application/grpc")


# --- filters -------------------------------------------------------------------------------


def _apply_filters(
    plan: RequestPlan, match: RouteMatch, request: _Request, filters: tuple[ir.HTTPFilter, ...]
) -> None:
    """Filters in order, the rule's then the picked backendRef's, updating ``request``.

    Sets ``plan.answer`` for redirects and preflights.
    """
    req = plan.req
    for flt in filters:
        if isinstance(flt, ir.RequestHeaderModifierFilter):
            request.headers = f.apply_header_modifier(request.headers, flt.modifier)
        elif isinstance(flt, ir.ResponseHeaderModifierFilter):
            plan.response_modifiers += (flt.modifier,)
        elif isinstance(flt, ir.URLRewriteFilter):
            request.authority, request.path = f.rewrite(
                flt, request.authority, request.path, match.match
            )
        elif isinstance(flt, ir.RequestMirrorFilter):
            if f.mirror_wanted(flt, random.random()):
                plan.mirrors += (flt.backend,)
        elif isinstance(flt, ir.RequestRedirectFilter):
            status, location = f.redirect_location(
                flt, request.scheme, req.host, request.port, req.path, req.query, match.match
            )
            plan.answer = Answer(status, [(b"location", location.encode())])
            break
        elif isinstance(flt, ir.CORSFilter) and _cors(plan, flt):
            break


def _cors(plan: RequestPlan, cors: ir.CORSFilter) -> bool:
    """Apply a CORS filter; True when the gateway answers (a preflight)."""
    req = plan.req
    origin = header_value(req.headers, b"origin")
    wanted = header_value(req.headers, b"access-control-request-method")
    if not plan.upgrade and f.is_cors_preflight(req.method, origin, wanted):
        assert origin is not None
        asked = header_value(req.headers, b"access-control-request-headers")
        plan.answer = Answer(200, f.cors_preflight(cors, origin, wanted, asked) or [])
        return True
    plan.response_extra = plan.response_extra + f.cors_response_headers(cors, origin)
    return False


# --- the upstream request and the response fields ------------------------------------------


def upstream_head(
    plan: RequestPlan, ctx: HTTPConnectionContext, headers: HeaderList, authority: str, path: str
) -> tuple[bytes, bytes, HeaderList]:
    """Request line and headers for the upstream: Host, X-Forwarded-*, framing.

    The head depends on its arguments and the connection alone; the last one made on
    a connection is kept with what it was made of (``ctx.head_memo``), and made again
    only when one of them differs: the same fields list (``is``) comes back as long as
    the front end remembers the parsed head (HTTP/2 and HTTP/1.1 both do). The caller
    gets its own list.
    """
    req = plan.req
    memo = ctx.head_memo
    chunked = req.body.length is None
    key = (path, req.query, authority, req.authority, req.method, chunked)
    if memo is not None and memo[0] is headers and memo[1] == key and not plan.upgrade:
        method, target, fields = memo[2]
        return method, target, list(fields)
    head = _upstream_head(plan, ctx, headers, authority, path, chunked)
    if plan.upgrade:
        return head
    ctx.head_memo = (headers, key, head)
    return head[0], head[1], list(head[2])


def _upstream_head(
    plan: RequestPlan,
    ctx: HTTPConnectionContext,
    headers: HeaderList,
    authority: str,
    path: str,
    chunked: bool,
) -> tuple[bytes, bytes, HeaderList]:
    req = plan.req
    out: HeaderList = [(b"host", authority.encode("latin-1"))]
    forwarded_for: bytes | None = None
    for item in headers:
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
    out.append((b"via", ctx.via))
    if plan.upgrade:
        out += _UPGRADE_FIELDS
        method = b"GET"
    else:
        if chunked:
            out.append((b"transfer-encoding", b"chunked"))
        method = req.method.encode()
    target = path + "?" + req.query if req.query else path
    return method, target.encode("latin-1"), out


def response_fields(
    plan: RequestPlan, headers: Headers | HeaderList, endpoint: ir.Endpoint | None
) -> HeaderList:
    """The response head's fields as the client gets them, for every kind of response.

    Hop-by-hop fields removed, the response header modifiers applied, then
    the listener's ``lateResponseHeaders`` (Envoy runs that header mutation
    after the router's), CORS fields and a session token (for ``endpoint``,
    unless a token pinned it) added. A 101's ``Connection``/``Upgrade`` are the
    tunnel's to add back.
    """
    fields = strip_hop_by_hop(headers)
    for modifier in plan.response_modifiers:
        fields = f.apply_header_modifier(fields, modifier)
    if plan.late_response is not None:
        fields = plan.late_response.apply(fields)
    if plan.response_extra:
        fields += plan.response_extra
    if plan.rule is not None and plan.rule.session_persistence:
        fields += _session_token(plan, endpoint)
    return fields


def _session_token(plan: RequestPlan, endpoint: ir.Endpoint | None) -> HeaderList:
    """The cookie or header that pins later requests to ``endpoint``; none if one pinned it."""
    if endpoint is None or plan.pinned is not None or plan.backend is None or plan.rule is None:
        return []
    return persist_headers(plan.rule, plan.backend, endpoint)
