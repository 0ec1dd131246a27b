"""SecurityPolicy ``oidc``: the provider's discovery, keys and token endpoint, over the pool.

Theory of operation
-------------------
After each reload ``reconcile`` gets every ``oidc`` provider of the new
generation. Each distinct one (issuer and backend) gets a task in the data
plane's nursery that fetches ``{issuer}/.well-known/openid-configuration``
through the gateway's own upstream pool (``backendRefs``, BackendTLSPolicy,
DNS names and TLS with the system trust store work as for any backend),
retrying after 1 s, doubling up to 60 s, on failure, and refreshing it every
hour once it has it. Requests only read (``endpoints``): until discovery
succeeded, a policy that did not give both endpoints answers logins with 503
(fail closed). Envoy Gateway discovers while translating and refuses the
policy when it cannot; doing it here keeps reloads free of network waits.

The code and refresh exchanges (``exchange``) and the JWKS the ID token is
checked against (``jwks_uri``, cached ``JWKS_TTL``, fetched again for an
unknown ``kid`` at most every ``KID_REFETCH_MIN`` seconds) run on the
request's own path: only a callback or a refresh waits for them, with the
provider's timeout for each request. Answers are bounded (``MAX_DOCUMENT``);
failures are logged without tokens, codes or secrets.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Iterable
from typing import Literal
from urllib.parse import urlsplit

import trio

from edgegw import ir
from edgegw.net.upstream import UpstreamError, UpstreamPool, UpstreamReply
from edgegw.policy import jwtverify as jv
from edgegw.policy import oidcflow as of
from edgegw.policy.oidc import FAILED, Exchange, OIDCFlow, OIDCRequest, Outcome
from edgegw.proto.events import DataReceived, Headers, MessageEnded

log = logging.getLogger("edgegw.oidc")

JWKS_TTL = 300.0
KID_REFETCH_MIN = 5.0
REDISCOVER = 3600.0
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Provider:
    """One provider's discovered endpoints and keys, and the task that discovers them."""

    __slots__ = ("config", "endpoints", "keys", "keys_at", "lock", "scope")

    def __init__(self, config: ir.OIDCProvider) -> None:
        self.config = config
        self.endpoints: of.Endpoints | None = None
        self.keys: tuple[jv.Key, ...] = ()
        self.keys_at = -math.inf
        self.lock = trio.Lock()
        self.scope = trio.CancelScope()


def provider_id(config: ir.OIDCProvider) -> str:
    backend = config.backend.name if config.backend else ""
    return f"{config.issuer} {backend}"


class OIDCProviders:
    """The providers of the running configuration (``policy.oidc.Providers``)."""

    def __init__(self, pool: UpstreamPool, nursery: trio.Nursery, root: bytes) -> None:
        self._pool = pool
        self._nursery = nursery
        self._root = root
        self._providers: dict[str, _Provider] = {}

    # --- what requests ask (synchronous) --------------------------------------------------

    def root_key(self) -> bytes:
        return self._root

    def endpoints(self, config: ir.OIDCProvider) -> of.Endpoints | None:
        entry = self._providers.get(provider_id(config))
        return of.merged(config, entry.endpoints if entry else None)

    # --- what a reload tells --------------------------------------------------------------

    def reconcile(self, providers: Iterable[ir.OIDCProvider]) -> None:
        wanted = {provider_id(p): p for p in providers}
        for key in set(self._providers) - set(wanted):
            self._providers.pop(key).scope.cancel()
        for key, config in wanted.items():
            entry = self._providers.get(key)
            if entry is None:
                entry = self._providers[key] = _Provider(config)
                self._nursery.start_soon(self._discover, entry)
            entry.config = config

    async def _discover(self, entry: _Provider) -> None:
        delay = 1.0
        with entry.scope:
            while True:
                config = entry.config
                url = config.issuer + "/.well-known/openid-configuration"
                try:
                    status, body = await self._get(config, url)
                    if status != 200:
                        raise of.FlowError(f"HTTP status {status}")
                    entry.endpoints = of.parse_discovery(body, config.issuer)
                except Exception as exc:  # whatever a provider does, it never ends the gateway
                    log.warning("OIDC discovery %s: %s; retrying in %.0f s", url, _why(exc), delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 60.0)
                    continue
                delay = 1.0
                await trio.sleep(REDISCOVER)

    # --- the exchanges (on a callback's or a refresh's path) ------------------------------

    async def exchange(self, flow: OIDCFlow, exchange: Exchange, now: float) -> of.Tokens:
        """The tokens of a code or refresh grant, the ID token checked. Raises: FlowError."""
        config = flow.config
        endpoints = self.endpoints(config.provider)
        if endpoints is None:
            raise of.FlowError("the provider's endpoints are not known yet")
        if exchange.grant == "authorization_code":
            fields = of.code_fields(exchange.redirect_uri, exchange.code, exchange.verifier)
        else:
            fields = of.refresh_fields(exchange.refresh, config.scopes)
        body, basic = of.token_request(config, fields)
        status, answer = await self._post(config.provider, endpoints.token, body, basic)
        refresh = exchange.grant == "refresh_token"
        tokens = of.parse_tokens(
            status, answer, config.default_token_ttl, need_id_token=not refresh
        )
        if tokens.id_token:
            keys = await self._keys(config.provider, endpoints, tokens.id_token)
            nonce = None if refresh else exchange.nonce
            of.check_id_token(config, tokens.id_token, nonce, keys, now)
        return tokens

    async def _keys(
        self, config: ir.OIDCProvider, endpoints: of.Endpoints, id_token: str
    ) -> tuple[jv.Key, ...]:
        entry = self._providers.get(provider_id(config))
        if entry is None or not endpoints.jwks:
            raise of.FlowError("the provider's JWKS is not known (no discovery document)")
        parsed = jv.parse(id_token)
        kid = parsed.kid if isinstance(parsed, jv.Token) else None
        async with entry.lock:
            age = trio.current_time() - entry.keys_at
            unknown = kid is not None and all(k.kid != kid for k in entry.keys)
            if age > JWKS_TTL or (unknown and age > KID_REFETCH_MIN):
                status, body = await self._get(config, endpoints.jwks)
                if status != 200:
                    raise of.FlowError(f"the JWKS endpoint answered {status}")
                try:
                    entry.keys = jv.parse_jwks(body)
                except ValueError as exc:
                    raise of.FlowError(f"JWKS: {exc}") from None
                entry.keys_at = trio.current_time()
        return entry.keys

    # --- HTTP through the pool ------------------------------------------------------------

    async def _get(self, config: ir.OIDCProvider, url: str) -> tuple[int, bytes]:
        return await self._request(config, b"GET", url, b"", [])

    async def _post(
        self, config: ir.OIDCProvider, url: str, body: bytes, basic: bytes
    ) -> tuple[int, bytes]:
        fields = [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"authorization", basic),
        ]
        return await self._request(config, b"POST", url, body, fields)

    async def _request(
        self,
        config: ir.OIDCProvider,
        method: bytes,
        url: str,
        body: bytes,
        fields: list[tuple[bytes, bytes]],
    ) -> tuple[int, bytes]:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise of.FlowError(f"{url!r} is not an http or https URL")
        backend = config.backend or url_backend(parts.scheme, parts.hostname, parts.port)
        endpoint = self._pool.choose(backend) if backend.endpoints else None
        if endpoint is None:
            raise of.FlowError("the provider's backend has no endpoints")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head_fields = [
            (b"host", parts.netloc.encode("ascii", "replace")),
            (b"accept", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            *fields,
        ]
        head = (method, target.encode("ascii", "replace"), head_fields)
        try:
            with trio.fail_after(config.timeout):
                return await self._pool.exchange(endpoint, backend, head, _Body(body), _read)
        except trio.TooSlowError:
            raise of.FlowError("the provider did not answer in time") from None
        except UpstreamError as exc:
            raise of.FlowError(f"the provider cannot be reached: {exc}") from None


def url_backend(scheme: str, host: str, port: int | None) -> ir.Backend:
    """The backend a provider URL names by itself: its host and port, TLS for https."""
    kind: Literal["ip", "fqdn"] = "ip"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        kind = "fqdn"
    endpoint = ir.Endpoint(kind=kind, address=host, port=port or _DEFAULT_PORTS[scheme])
    tls = ir.BackendTLS(hostname=host) if scheme == "https" else None
    return ir.Backend(name=f"oidc {scheme}://{host}", endpoints=(endpoint,), tls=tls)


def providers_of(model: ir.Model) -> Iterable[ir.OIDCProvider]:
    """Every OIDC provider a rule of ``model`` is under (repeats included)."""
    for port in model.ports:
        for listener in port.listeners:
            for route in listener.http_routes:
                for rule in route.rules:
                    oidc = rule.security.oidc if rule.security else None
                    if oidc is not None:
                        yield oidc.provider


async def complete(
    providers: OIDCProviders, flow: OIDCFlow, exchange: Exchange, req: OIDCRequest
) -> Outcome:
    """Carry out an ``Exchange``: a login's answer, or a refreshed request's cookies.

    A refresh that fails starts a new login, as Envoy's does.
    """
    keys = flow.keys(providers.root_key())
    now = req.now
    try:
        tokens = await providers.exchange(flow, exchange, now)
    except of.FlowError as exc:
        log.warning("OIDC %s %s: %s", flow.config.name, exchange.grant, exc)
        if exchange.grant == "refresh_token":
            return flow.login(req, providers)
        return Outcome(status=401, body=FAILED)
    if exchange.grant == "authorization_code":
        return flow.finish_login(keys, exchange, tokens, now)
    if not tokens.refresh_token:  # not rotated: the one the session had stays good
        tokens = tokens._replace(refresh_token=exchange.refresh)
    names = flow.names
    fresh = {names.access: tokens.access_token, names.id: tokens.id_token}
    if tokens.refresh_token:
        fresh[names.refresh] = tokens.refresh_token
    cookie = flow.backend_cookie(req.header(b"cookie") or "", fresh)
    return Outcome(
        add=[cookie, *flow.forward_headers(tokens.access_token, tokens.id_token)],
        set_cookies=flow.session_set_cookies(keys, exchange.host, tokens, now),
    )


async def _read(rsp: UpstreamReply) -> tuple[int, bytes]:
    head = rsp.head
    assert head is not None
    body = bytearray()
    while True:
        event = await rsp.next_event()
        if isinstance(event, DataReceived):
            body += event.data
            if len(body) > of.MAX_DOCUMENT:
                raise of.FlowError(f"the answer is larger than {of.MAX_DOCUMENT} bytes")
        elif isinstance(event, MessageEnded):
            return head.status_code, bytes(body)


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


class _Body:
    """A small request body, sent in one piece."""

    started = False
    finished = False
    received = 0
    trailers: Headers = ()

    def __init__(self, data: bytes) -> None:
        self.length: int | None = len(data)
        self._data = data

    async def receive(self) -> bytes:
        data, self._data = self._data, b""
        self.started = True
        self.finished = not data
        self.received += len(data)
        return data
