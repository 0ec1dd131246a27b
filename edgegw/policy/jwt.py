"""SecurityPolicy ``jwt``: which tokens a request carries and whether a provider admits it.

Theory of operation
-------------------
Envoy Gateway makes each policy one Envoy jwt_authn requirement: "any of"
the providers, plus "allow missing" when ``optional`` and "allow missing or
failed" when ``failOpen``. Envoy's rules, kept here:

- each provider looks for tokens in its own locations (``extractFrom``; by
  default ``Authorization: Bearer <token>`` and the ``access_token`` query
  parameter); a header's value prefix may sit anywhere in the value, and the
  token is the run of base64url characters and dots after it;
- a provider admits the request when it found a token and every token it
  found verifies (``jwtverify``); its ``claimToHeaders`` are then set on the
  request (strings as they are, numbers and booleans as JSON writes them,
  objects and lists as base64 of their JSON; nested claims by dots);
- providers are tried in order, the first that admits wins; when none does,
  the status is the last one's (Envoy's "any" verifier reports the last
  child to finish), so with several providers a client may read "Jwt issuer
  is not configured" for a token that another provider found expired;
- ``optional``: no token in any provider's locations is admitted; a token
  that is there must still verify, with the provider of its issuer;
- the headers named in ``claimToHeaders`` are removed from the client's
  request first, so a client can never supply its own;
- the token itself goes on to the backend (Envoy Gateway sets ``forward``).

Keys are the provider's local JWKS, parsed once per reload, or what the
data plane's ``RemoteKeys`` holds for its remote JWKS right now: nothing yet
means "Jwks remote fetch is failed", and a token whose ``kid`` is not in the
set asks ``RemoteKeys`` to fetch again (it decides when) while this request
gets its 401. Nothing here waits.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

import msgspec

from edgegw import ir
from edgegw.policy import jwtverify as jv

HeaderLookup = Callable[[bytes], str | None]
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_.-]+")
MAX_CLAIM_HEADER = 8 * 1024
CACHE_MAX = 1024  # verified tokens remembered per provider (only issuers can add)


class RemoteKeys(Protocol):
    """The data plane's remote JWKS cache (``net/jwks.py``), as the checks see it."""

    def keys(self, remote: str) -> tuple[jv.Key, ...] | None: ...

    def unknown_kid(self, remote: str) -> None: ...


class NoRemoteKeys:
    """No remote JWKS known (tests, ``edgegw check``): every remote provider fails closed."""

    def keys(self, remote: str) -> tuple[jv.Key, ...] | None:
        return None

    def unknown_kid(self, remote: str) -> None:
        pass


def remote_id(remote: ir.RemoteJWKS) -> str:
    """The cache key of a remote JWKS: the same URI through the same backend is fetched once."""
    return f"{remote.uri} {remote.backend.name}"


@dataclass
class Outcome:
    """``status.code`` 0: admitted, with ``add`` for the forwarded request.

    ``recompute``: the provider that verified asks for the route to be chosen
    again with those headers (``recomputeRoute``).
    """

    status: jv.Status
    add: list[tuple[bytes, bytes]] = field(default_factory=list)
    recompute: bool = False


class _Request:
    """The request's token sources, each decoded once."""

    __slots__ = ("_cookies", "_params", "header", "query")

    def __init__(self, header: HeaderLookup, query: str) -> None:
        self.header, self.query = header, query
        self._params: dict[str, str] | None = None
        self._cookies: dict[str, str] | None = None

    def param(self, name: str) -> str | None:
        if self._params is None:
            self._params = {}
            for key, value in parse_qsl(self.query, keep_blank_values=True)[:256]:
                self._params.setdefault(key, value)
        return self._params.get(name)

    def cookie(self, name: str) -> str | None:
        if self._cookies is None:
            self._cookies = {}
            for part in (self.header(b"cookie") or "").split(";")[:64]:
                key, sep, value = part.strip().partition("=")
                if sep:
                    self._cookies.setdefault(key, value.strip('"'))
        return self._cookies.get(name)


Location = tuple[str, str, str]  # ("header", name, prefix), ("param", name, ""), ("cookie", ...)


def locations(config: ir.JWTProvider) -> tuple[Location, ...]:
    """Where a provider looks for tokens, in Envoy's order: headers, params, cookies."""
    return (
        *(("header", name, prefix) for name, prefix in config.headers),
        *(("param", name, "") for name in config.params),
        *(("cookie", name, "") for name in config.cookies),
    )


def _extract(request: _Request, location: Location) -> str | None:
    kind, name, prefix = location
    if kind == "param":
        return request.param(name)
    if kind == "cookie":
        return request.cookie(name)
    value = request.header(name.encode("latin-1"))
    if value is None or not prefix:
        return value
    at = value.find(prefix)
    return None if at < 0 else _token_after(value, at + len(prefix))


class Provider:
    """One provider, compiled: its locations, its audiences, its keys or where they come from."""

    def __init__(self, config: ir.JWTProvider) -> None:
        self.config = config
        self.locations = locations(config)
        self.audiences = frozenset(jv.sanitize_audience(a) for a in config.audiences)
        self.local = jv.parse_jwks(config.local_jwks) if config.local_jwks is not None else None
        self.remote = remote_id(config.remote_jwks) if config.remote_jwks is not None else None
        self.claims = tuple((h.encode("latin-1"), c.split(".")) for h, c in config.claim_to_headers)
        self._verified: dict[str, tuple[jv.Token, tuple[jv.Key, ...]]] = {}

    def tokens(self, request: _Request) -> Iterator[str]:
        """The tokens in this provider's locations."""
        for location in self.locations:
            found = _extract(request, location)
            if found is not None:
                yield found

    def verify(
        self, token: str | jv.Token, issuers: frozenset[str] | None, remote: RemoteKeys, now: float
    ) -> jv.Token | jv.Status:
        """One token, Envoy's order: form, issuer, time, audience, keys, signature."""
        cached = self._verified.get(token) if isinstance(token, str) else None
        parsed = cached[0] if cached else jv.parse(token) if isinstance(token, str) else token
        if isinstance(parsed, jv.Status):
            return parsed
        allowed = issuers if issuers is not None else frozenset({self.config.issuer})
        if "" not in allowed and parsed.issuer not in allowed:
            return jv.UNKNOWN_ISSUER
        status = jv.check_time(parsed, now)
        if status.code:
            return status
        if not jv.audiences_allowed(self.audiences, parsed):
            return jv.AUDIENCE_NOT_ALLOWED
        keys = self.local if self.remote is None else remote.keys(self.remote)
        if keys is None:
            return jv.FETCH_FAILED
        if cached and cached[1] is keys:  # verified before with these very keys
            return parsed
        status = jv.verify_signature(parsed, keys)
        if status is jv.KID_ALG_MISMATCH and self.remote is not None and parsed.kid:
            remote.unknown_kid(self.remote)  # perhaps a key the issuer just rotated in
        if status is not jv.OK:
            return status
        if isinstance(token, str):
            self._remember(token, parsed, keys)
        return parsed

    def _remember(self, token: str, parsed: jv.Token, keys: tuple[jv.Key, ...]) -> None:
        """Signatures are the costly part: a token that verified is not checked again."""
        if len(self._verified) >= CACHE_MAX:
            self._verified.clear()
        self._verified[token] = (parsed, keys)

    def claim_headers(self, token: jv.Token) -> Iterator[tuple[bytes, bytes]]:
        for header, path in self.claims:
            value = _claim_text(_claim(token.payload, path))
            if value:
                yield header, value


class Authenticator:
    """A policy's ``jwt``, compiled once per reload; ``check`` runs per request."""

    def __init__(self, config: ir.JWT) -> None:
        self.config = config
        self.providers = tuple(Provider(p) for p in config.providers)
        self.sanitize = frozenset(h for p in self.providers for h, _ in p.claims)
        # every location any provider reads → the issuers of the providers reading it
        self.readers: dict[Location, frozenset[str]] = {}
        for p in self.providers:
            for location in p.locations:
                issuers = self.readers.get(location, frozenset())
                self.readers[location] = issuers | {p.config.issuer}

    def check(self, header: HeaderLookup, query: str, remote: RemoteKeys, now: float) -> Outcome:
        """Admit or refuse one request; never raises for anything the client sent."""
        request = _Request(header, query)
        status = jv.MISSING
        for provider in self.providers:
            status, add = self._provider(provider, request, remote, now)
            if not status.code:
                return Outcome(status, add, provider.config.recompute_route and bool(add))
        if self.config.fail_open:
            return Outcome(jv.OK)
        if self.config.optional:
            return self._allow_missing(request, remote, now)
        return Outcome(status)

    def _provider(
        self, provider: Provider, request: _Request, remote: RemoteKeys, now: float
    ) -> tuple[jv.Status, list[tuple[bytes, bytes]]]:
        add: list[tuple[bytes, bytes]] = []
        status = jv.MISSING
        for token in provider.tokens(request):
            verified = provider.verify(token, None, remote, now)
            if isinstance(verified, jv.Status):
                return verified, []
            status = jv.OK
            add += provider.claim_headers(verified)
        return status, add

    def _allow_missing(self, request: _Request, remote: RemoteKeys, now: float) -> Outcome:
        """Envoy's "allow missing": no token anywhere passes; a token present must verify."""
        add: list[tuple[bytes, bytes]] = []
        recompute = False
        for location, issuers in self.readers.items():
            token = _extract(request, location)
            if token is None:
                continue
            parsed = jv.parse(token)
            if isinstance(parsed, jv.Status):
                return Outcome(parsed)
            owner = self._by_issuer(parsed.issuer)
            if owner is None:
                return Outcome(jv.UNKNOWN_ISSUER)
            verified = owner.verify(parsed, issuers, remote, now)
            if isinstance(verified, jv.Status):
                return Outcome(verified)
            add += owner.claim_headers(verified)
            recompute = recompute or owner.config.recompute_route
        return Outcome(jv.OK, add, recompute and bool(add))

    def _by_issuer(self, issuer: str) -> Provider | None:
        for provider in self.providers:
            if provider.config.issuer == issuer:
                return provider
        return next((p for p in self.providers if not p.config.issuer), None)


def _token_after(value: str, start: int) -> str:
    """Envoy's extractJWT: the first run of base64url characters and dots from ``start`` on."""
    found = _TOKEN_RUN.search(value, start)
    return found.group() if found else value


def _claim(payload: dict[str, Any], path: list[str]) -> Any:
    node: Any = payload
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _claim_text(value: Any) -> bytes:
    """A claim as Envoy writes it into a header; empty when it writes nothing."""
    if isinstance(value, str):
        text = value.encode("utf-8")
    elif isinstance(value, bool):
        text = b"true" if value else b"false"
    elif isinstance(value, int | float):
        text = b"%d" % value if float(value).is_integer() else repr(float(value)).encode()
    elif isinstance(value, dict | list):
        text = base64.b64encode(msgspec.json.encode(value))
    else:
        return b""
    if len(text) > MAX_CLAIM_HEADER or any(c in text for c in b"\r\n\0"):
        return b""
    return text
