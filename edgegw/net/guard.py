"""The policy step of the one decision every HTTP request goes through.

``decide`` calls ``admit`` once the rule is known, for HTTP/1.1, HTTP/2, gRPC
and WebSocket requests alike: a listener's ClientTrafficPolicy says who the
client is, a rule's SecurityPolicy and rate limits (``policy.compiled``) say
whether it may pass. Everything here is synchronous except external auth,
which needs a round trip, and OIDC, whose callback and token refresh do:
``admit`` then leaves the rule's guard ``pending`` on the plan, and the
forward step awaits ``authorize`` (the external check, then the same
synchronous checks in Envoy Gateway's filter order, then the OIDC token
request when the OIDC step asked for one) before anything is sent upstream.
A request under no policy costs two attribute checks in ``decide``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from edgegw import ir
from edgegw.net.context import HTTPConnectionContext, Observer
from edgegw.net.extauth import ask, check_head
from edgegw.net.oidc import OIDCProviders, complete
from edgegw.policy import jwtverify
from edgegw.policy.compiled import JWTContext, OIDCContext, RuleGuard, Verdict
from edgegw.policy.fault import inject
from edgegw.policy.jwt import RemoteKeys
from edgegw.policy.oidc import Exchange, OIDCRequest
from edgegw.proto.events import HeaderList
from edgegw.routing import ListenerTable, RouteMatch
from edgegw.routing.matchers import RequestView

_TOO_MANY = b"Too Many Requests\n"
FETCH_FAILED = jwtverify.FETCH_FAILED.message.encode()  # the keys could not be had: "error"


@dataclass
class Admission:
    """``status`` 0: go on (with ``add``/``remove`` applied); else answer with it."""

    client: str
    status: int = 0
    headers: HeaderList = field(default_factory=list)  # of the answer
    body: bytes = b""
    add: HeaderList = field(default_factory=list)
    remove: frozenset[bytes] = frozenset()
    compression: tuple[ir.Compressor, ...] = ()
    pending: RuleGuard | None = None  # external auth or OIDC to await before forwarding
    response: HeaderList = field(default_factory=list)  # added to the response (OIDC cookies)
    delay: float = 0.0  # faultInjection: seconds to wait before going on
    fault: bool = False  # ``status`` is a faultInjection abort
    recompute: bool = False  # jwt recomputeRoute: route again once ``add`` is applied

    def apply(self, headers: Sequence[tuple[bytes, bytes]]) -> HeaderList:
        """Request headers with the policies' removals and additions."""
        kept = [(n, v) for n, v in headers if n not in self.remove]
        return kept + self.add


def admit(
    listener: ListenerTable,
    match: RouteMatch,
    method: str,
    path: str,
    query: str,
    headers: HeaderList,
    peer: str,
    observer: Observer,
    *,
    keys: RemoteKeys | None = None,
    scheme: str = "http",
    authority: str = "",
) -> Admission | None:
    """The synchronous policies of one routed request; None when none applies.

    ``keys`` (the remote JWKS cache), ``scheme`` and ``authority`` serve a JWT check.
    """
    client_guard, guard = listener.client_guard, match.guard
    if client_guard is None and guard is None:
        return None
    client = client_guard.client(peer, headers) if client_guard is not None else peer
    if client is None:  # a failClosed custom header is missing
        observer.policy_decision(
            "clientIPDetection", client_guard.name if client_guard else "", "deny"
        )
        return Admission(client=peer, status=403, body=b"Forbidden\n")
    admission = Admission(client=client)
    if guard is None:
        return admission
    admission.compression = guard.compression
    if guard.fault is not None and _inject(guard, admission, observer):
        return admission
    view = RequestView(method, path, query, headers)
    if guard.is_preflight(method, view.header):
        return admission
    if guard.ext_auth is not None or guard.oidc is not None:
        admission.pending = guard
        return admission
    jwt = _jwt_context(guard, keys, scheme, authority, path, query)
    _check(guard, admission, method, view, query, observer, jwt)
    return admission


def _jwt_context(
    guard: RuleGuard,
    keys: RemoteKeys | None,
    scheme: str,
    authority: str,
    path: str,
    query: str,
) -> JWTContext | None:
    if guard.jwt is None:
        return None
    target = f"{path}?{query}" if query else path
    context = JWTContext(wall=time.time(), realm=f"{scheme}://{authority}{target}")
    if keys is not None:
        context.keys = keys
    return context


def _inject(guard: RuleGuard, admission: Admission, observer: Observer) -> bool:
    """faultInjection, before CORS and auth as in Envoy; True when it aborts the request."""
    assert guard.fault is not None
    outcome = inject(guard.fault, random.random(), random.random())
    admission.delay = outcome.delay
    if outcome.delay:
        observer.policy_decision("faultDelay", guard.traffic, "delay")
    if not outcome.status:
        return False
    observer.policy_decision("faultAbort", guard.traffic, "deny")
    admission.status, admission.headers = outcome.status, outcome.answer_headers()
    admission.fault = True
    admission.body = b"fault filter abort" if outcome.grpc_status is None else b""
    return True


async def authorize(
    ctx: HTTPConnectionContext,
    guard: RuleGuard,
    client: str,
    method: str,
    authority: str,
    path: str,
    query: str,
    headers: HeaderList,
) -> Admission:
    """External auth, then the synchronous checks, then an OIDC exchange they asked for."""
    admission = Admission(client=client, compression=guard.compression)
    ext = guard.ext_auth
    if ext is not None and not await _ext_auth(
        ctx, guard, ext, admission, method, authority, path, query, headers
    ):
        return admission
    view = RequestView(method, path, query, headers)
    jwt = _jwt_context(guard, ctx.jwks, ctx.scheme, authority, path, query)
    oidc = None
    if guard.oidc is not None:
        request = OIDCRequest(ctx.scheme, authority, path, query, view.header, time.time())
        oidc = OIDCContext(request, ctx.oidc)
    exchange = _check(guard, admission, method, view, query, ctx.observer, jwt, oidc)
    if exchange is not None and oidc is not None and ctx.oidc is not None:
        await _exchange(ctx.oidc, guard, admission, oidc.request, exchange, ctx.observer)
        if not admission.status and exchange.grant == "refresh_token":  # the rest of the checks
            _check(guard, admission, method, view, query, ctx.observer, jwt, None)
    return admission


async def _ext_auth(
    ctx: HTTPConnectionContext,
    guard: RuleGuard,
    ext: ir.ExtAuth,
    admission: Admission,
    method: str,
    authority: str,
    path: str,
    query: str,
    headers: HeaderList,
) -> bool:
    """External auth; False when its answer goes to the client."""
    admission.remove = frozenset(h.encode() for h in ext.headers_to_backend)
    target = path + "?" + query if query else path
    head = check_head(ext, method, authority, target, headers, admission.client, ctx.scheme)
    result = await ask(ctx.pool, ext, head)
    outcome = "error" if result.error else ("deny" if result.status else "allow")
    ctx.observer.policy_decision("extAuth", guard.security, outcome)
    if result.status:
        admission.status, admission.headers, admission.body = (
            result.status,
            result.headers,
            result.body,
        )
        return False
    admission.add += result.headers
    return True


async def _exchange(
    providers: OIDCProviders,
    guard: RuleGuard,
    admission: Admission,
    request: OIDCRequest,
    exchange: Exchange,
    observer: Observer,
) -> None:
    """The token request the OIDC step asked for: a login's answer, or a refreshed session."""
    assert guard.oidc is not None
    outcome = await complete(providers, guard.oidc, exchange, request)
    if outcome.status:
        result = "allow" if outcome.status == 302 and exchange.grant != "refresh_token" else "deny"
        observer.policy_decision("oidc", guard.security, result)
        admission.status, admission.headers, admission.body = (
            outcome.status,
            outcome.headers,
            outcome.body,
        )
        return
    admission.response += outcome.set_cookies
    admission.add += outcome.add
    admission.remove |= {n for n, _ in outcome.add}


def _check(
    guard: RuleGuard,
    admission: Admission,
    method: str,
    view: RequestView,
    query: str,
    observer: Observer,
    jwt: JWTContext | None = None,
    oidc: OIDCContext | None = None,
) -> Exchange | None:
    """The synchronous checks into ``admission``; the OIDC exchange they ask for, if any."""
    now = trio.current_time()
    verdict = guard.check(method, admission.client, view.header, query, now, jwt, oidc)
    if verdict.exchange is not None:
        return verdict.exchange
    _take(guard, admission, verdict, observer)
    return None


def readmit(
    guard: RuleGuard,
    client: str,
    method: str,
    path: str,
    query: str,
    headers: HeaderList,
    observer: Observer,
) -> Admission:
    """The rule a request was routed to again (jwt ``recomputeRoute``): what Envoy's filter
    chain still runs for it after jwt_authn, its authorization and rate limits."""
    admission = Admission(client=client, compression=guard.compression)
    view = RequestView(method, path, query, headers)
    verdict = guard.check_after_jwt(client, view.header, trio.current_time())
    _take(guard, admission, verdict, observer)
    return admission


def _take(guard: RuleGuard, admission: Admission, verdict: Verdict, observer: Observer) -> None:
    """The checks' verdict into the admission, and into the decision counters."""
    if verdict.reason:
        kind = "rateLimit" if verdict.reason == "ratelimit" else verdict.reason
        name = guard.traffic if kind == "rateLimit" else guard.security
        outcome = "error" if verdict.body == FETCH_FAILED else "deny"
        observer.policy_decision(kind, name, outcome)
    elif guard.security:
        observer.policy_decision("security", guard.security, "allow")
    if verdict.status:
        admission.status, admission.headers = verdict.status, verdict.headers
        admission.body = _TOO_MANY if verdict.status == 429 else verdict.body
        return
    admission.add += verdict.add
    admission.remove |= frozenset(verdict.remove) | {n for n, _ in verdict.add}
    admission.recompute = verdict.recompute
