"""A rule's and a listener's policies, compiled once per reload, and the checks they make.

``compile_rule`` turns a rule's resolved SecurityPolicy and BackendTrafficPolicy
into a ``RuleGuard``; ``compile_listener`` a listener's ClientTrafficPolicy into
a ``ClientGuard``. The routing tables hold them next to each match, so the one
decide step of the data plane finds them with the route, for every request
kind alike. Checks run in Envoy Gateway's filter order: CORS preflights pass
untouched (the CORS filter answers them), external auth (asynchronous: the
data plane calls ``ext_auth`` first), API key, basic auth, OIDC (``policy.oidc``,
whose callback and refresh the data plane completes asynchronously), JWT
(``policy.jwt``), authorization, local rate limit; compression is chosen when the response head
arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from edgegw import ir
from edgegw.policy import jwtverify
from edgegw.policy.authz import Authorizer
from edgegw.policy.basicauth import BasicAuthVerifier
from edgegw.policy.clientip import ClientIPDetector
from edgegw.policy.jwt import Authenticator, NoRemoteKeys, RemoteKeys
from edgegw.policy.oidc import Exchange, OIDCFlow, OIDCRequest, Providers
from edgegw.policy.ratelimit import RateLimiter

HeaderLookup = Callable[[bytes], str | None]
Headers = Sequence[tuple[bytes, bytes]]
_BASIC_CHALLENGE = [(b"www-authenticate", b'Basic realm="http://edgegw"')]
NO_REMOTE_KEYS = NoRemoteKeys()
REALM_PATH_MAX = 256  # Envoy's jwt_authn cuts the realm's path here


@dataclass
class Verdict:
    """What the checks decided: an answer for the client, or headers for the backend."""

    status: int = 0  # 0: pass on
    reason: str = ""  # "basic", "apikey", "oidc", "jwt", "authorization", "ratelimit"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # on the answer
    body: bytes = b""  # of the answer
    add: list[tuple[bytes, bytes]] = field(default_factory=list)  # to the forwarded request
    remove: tuple[bytes, ...] = ()  # from the forwarded request
    exchange: Exchange | None = None  # an OIDC token request to make, then check again
    recompute: bool = False  # jwt recomputeRoute: route again with ``add`` applied


class RuleGuard:
    """The policies one rule is under on one listener."""

    __slots__ = (
        "api_keys",
        "authorizer",
        "basic",
        "compression",
        "cors",
        "ext_auth",
        "fault",
        "invalid",
        "jwt",
        "limiter",
        "oidc",
        "security",
        "traffic",
    )

    def __init__(self, rule: ir.HTTPRouteRule) -> None:
        security, traffic = rule.security, rule.traffic
        self.security = security.name if security else ""
        self.traffic = traffic.name if traffic else ""
        self.authorizer = (
            Authorizer(security.authorization) if security and security.authorization else None
        )
        self.basic = (
            BasicAuthVerifier(security.basic_auth) if security and security.basic_auth else None
        )
        self.api_keys = (
            _APIKeys(security.api_key_auth) if security and security.api_key_auth else None
        )
        self.ext_auth = security.ext_auth if security else None
        self.jwt = Authenticator(security.jwt) if security and security.jwt else None
        self.oidc = OIDCFlow(security.oidc) if security and security.oidc else None
        self.limiter = RateLimiter(traffic.rate_limits) if traffic and traffic.rate_limits else None
        self.compression = traffic.compression if traffic else ()
        self.fault = traffic.fault if traffic else None
        self.cors = any(isinstance(f, ir.CORSFilter) for f in rule.filters)
        self.invalid = rule.invalid

    def check(
        self,
        method: str,
        client: str,
        header: HeaderLookup,
        query: str,
        now: float,
        jwt: JWTContext | None = None,
        oidc: OIDCContext | None = None,
    ) -> Verdict:
        """The synchronous checks, after external auth allowed the request.

        ``now`` is monotonic (rate limits); ``jwt`` carries the wall clock, the
        remote keys and the realm a JWT check needs; ``oidc`` the request and
        the providers an OIDC check needs (None: OIDC was settled already).
        """
        verdict = Verdict()
        if self.api_keys is not None and not self.api_keys.check(header, query, verdict):
            return verdict
        if self.basic is not None:
            user = self.basic.user(header(b"authorization"))
            if user is None:
                verdict.status, verdict.reason = 401, "basic"
                verdict.headers = list(_BASIC_CHALLENGE)
                return verdict
            name = self.basic.config.forward_username_header
            if name:
                verdict.add.append((name.lower().encode(), user.encode()))
        if self.oidc is not None and oidc is not None and not _check_oidc(self.oidc, oidc, verdict):
            return verdict
        if self.jwt is not None and not self._check_jwt(self.jwt, header, query, jwt, verdict):
            return verdict
        return self.check_after_jwt(client, header, now, verdict)

    def check_after_jwt(
        self, client: str, header: HeaderLookup, now: float, verdict: Verdict | None = None
    ) -> Verdict:
        """What Envoy's filter chain runs after jwt_authn: authorization, then rate limits.

        Alone, these are what a route chosen again (``recomputeRoute``) adds.
        """
        verdict = verdict if verdict is not None else Verdict()
        if self.authorizer is not None:
            allowed, _ = self.authorizer.allows(client, header)
            if not allowed:
                verdict.status, verdict.reason = 403, "authorization"
                return verdict
        if self.limiter is not None and not self.limiter.allow(client, header, now):
            verdict.status, verdict.reason = 429, "ratelimit"
        return verdict

    @staticmethod
    def _check_jwt(
        jwt: Authenticator,
        header: HeaderLookup,
        query: str,
        context: JWTContext | None,
        verdict: Verdict,
    ) -> bool:
        context = context or JWTContext()
        outcome = jwt.check(header, query, context.keys, context.wall or time.time())
        verdict.remove = (*verdict.remove, *jwt.sanitize)
        if outcome.status.code:
            verdict.status, verdict.reason = outcome.status.code, "jwt"
            verdict.headers = [(b"www-authenticate", _bearer(context.realm, outcome.status))]
            verdict.body = outcome.status.message.encode()
            return False
        verdict.add += outcome.add
        verdict.recompute = outcome.recompute
        return True

    def is_preflight(self, method: str, header: HeaderLookup) -> bool:
        """A CORS preflight the rule's CORS filter answers before any auth, as in Envoy."""
        return (
            self.cors
            and method == "OPTIONS"
            and header(b"origin") is not None
            and header(b"access-control-request-method") is not None
        )


@dataclass
class JWTContext:
    """What a JWT check needs beyond the headers: keys, clock, and the realm of a 401."""

    keys: RemoteKeys = NO_REMOTE_KEYS
    wall: float = 0.0  # 0: time.time()
    realm: str = ""  # scheme://host/path?query, as the client asked for it


@dataclass
class OIDCContext:
    """What an OIDC check needs beyond the headers: the request's URL parts, the providers."""

    request: OIDCRequest
    providers: Providers | None  # None: the data plane cannot reach providers (fail closed)


def _check_oidc(flow: OIDCFlow, context: OIDCContext, verdict: Verdict) -> bool:
    """The OIDC step; False when it answers, or leaves an exchange to make."""
    if context.providers is None:
        verdict.status, verdict.reason = 503, "oidc"
        return False
    outcome = flow.check(context.request, context.providers)
    if outcome.exchange is not None:
        verdict.exchange = outcome.exchange
        return False
    if outcome.status:
        verdict.status, verdict.reason = outcome.status, "oidc"
        verdict.headers, verdict.body = outcome.headers, outcome.body
        return False
    verdict.add += outcome.add
    verdict.remove = (*verdict.remove, *outcome.remove)
    return True


def _bearer(realm: str, status: jwtverify.Status) -> bytes:
    """Envoy's challenge: the request's URI as realm; ``invalid_token`` unless it was missing."""
    scheme, sep, rest = realm.partition("://")
    host, slash, path = rest.partition("/")
    realm = f"{scheme}{sep}{host}{slash}{path[: REALM_PATH_MAX - 1]}"
    quoted = realm.replace('"', "%22")
    value = f'Bearer realm="{quoted}"'
    if status is not jwtverify.MISSING:
        value += ', error="invalid_token"'
    return value.encode("latin-1", "replace")


class _APIKeys:
    __slots__ = ("_by_key", "_config")

    def __init__(self, config: ir.APIKeyAuth) -> None:
        self._config = config
        self._by_key = {key: client for client, key in config.keys}

    def check(self, header: HeaderLookup, query: str, verdict: Verdict) -> bool:
        config = self._config
        key = self._extract(header, query)
        client = self._by_key.get(key.encode()) if key is not None else None
        if client is None:
            verdict.status, verdict.reason = 401, "apikey"
            return False
        if config.forward_client_id_header:
            verdict.add.append((config.forward_client_id_header.lower().encode(), client.encode()))
        if config.sanitize:
            verdict.remove = tuple(h.encode() for h in config.headers)
        return True

    def _extract(self, header: HeaderLookup, query: str) -> str | None:
        config = self._config
        for name in config.headers:
            value = header(name.encode())
            if value is not None:
                return value
        if config.params and query:
            params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
            for name in config.params:
                if name in params:
                    return params[name]
        if config.cookies:
            cookies = _cookies(header(b"cookie"))
            for name in config.cookies:
                if name in cookies:
                    return cookies[name]
        return None


def _cookies(value: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (value or "").split(";")[:64]:
        name, sep, val = part.strip().partition("=")
        if sep:
            out.setdefault(name, val)
    return out


def compile_rule(rule: ir.HTTPRouteRule) -> RuleGuard | None:
    """The guard of a rule, or None when no policy applies (the fast path)."""
    if rule.security is None and rule.traffic is None:
        return None
    return RuleGuard(rule)


class ClientGuard:
    """A listener's ClientTrafficPolicy parts that act per request."""

    __slots__ = ("detector", "name")

    def __init__(self, policy: ir.ClientPolicy) -> None:
        self.name = policy.name
        self.detector = ClientIPDetector(policy.client_ip) if policy.client_ip else None

    def client(self, peer: str, headers: Headers) -> str | None:
        """The client address; None when a failClosed custom header is missing."""
        return peer if self.detector is None else self.detector.client(peer, headers)


def compile_listener(listener: ir.Listener) -> ClientGuard | None:
    policy = listener.client_policy
    return ClientGuard(policy) if policy is not None else None
