"""SecurityPolicy ``oidc``: the decisions of Envoy's oauth2 filter, without I/O.

Theory of operation
-------------------
``OIDCFlow.check`` runs for every request under the policy, in Envoy's order:

1. a request carrying a header the policy's ``jwt`` reads a token from
   (``passThroughAuthHeader``) passes untouched, for the JWT check to judge;
2. unless ``forwardAccessToken`` (or an ID token on Authorization), the
   client's Authorization header is kept (Envoy Gateway's
   ``preserveAuthorizationHeader``);
3. the logout path clears the cookies and redirects to ``/`` of the same
   host, or to the provider's end-session endpoint with ``id_token_hint``;
4. a valid session (``oidccookies``) passes: the token cookies go to the
   backend decrypted, the login cookie not at all, the access token as
   ``Authorization: Bearer`` with ``forwardAccessToken``; on the callback path
   a logged-in user is sent back to the state's URL instead;
5. the callback path (the redirect URL's) checks ``error``, ``code`` and
   ``state`` against the login cookie, then asks for an ``Exchange`` (the
   token request, ``net/oidc.py``); ``finish`` turns the provider's answer
   into the session cookies and a 302 to the original URL;
6. an expired session with a refresh token asks for a refresh ``Exchange``
   (unless ``refreshToken: false``); a successful one lets the request go
   on with the new cookies set on its response;
7. otherwise ``denyRedirect`` headers get 401, and everyone else a 302 to
   the authorization endpoint with ``state``, ``nonce`` and a PKCE challenge,
   and the login cookie. Until the provider's endpoints are known
   (discovery) the answer is 503.

A gRPC call gets the same answers; ``decide.policy_answer`` turns them into
gRPC statuses as Envoy's local replies are (401 → UNAUTHENTICATED).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

from edgegw import ir
from edgegw.policy import oidccookies as oc
from edgegw.policy.oidcflow import Endpoints, Tokens, authorize_url, request_url
from edgegw.proto.events import HeaderList

HeaderLookup = Callable[[bytes], str | None]
FAILED = b"OAuth flow failed."
NOT_READY = b"OIDC provider not ready\n"


class Providers(Protocol):
    """What the data plane knows of providers (``net/oidc.py``): the key, the endpoints."""

    def root_key(self) -> bytes: ...

    def endpoints(self, provider: ir.OIDCProvider) -> Endpoints | None: ...


class OIDCRequest(NamedTuple):
    """The parts of a request the flow reads."""

    scheme: str
    authority: str
    path: str
    query: str
    header: HeaderLookup
    now: float


class Exchange(NamedTuple):
    """A token request the data plane must make before the request is answered or passed.

    ``grant`` is "authorization_code" (``code``, ``redirect_uri``, the PKCE
    ``verifier``; then a 302 to ``url``) or "refresh_token" (``refresh``; then
    the request goes on).
    """

    grant: str
    host: str
    code: str = ""
    redirect_uri: str = ""
    verifier: str = ""
    nonce: str = ""
    url: str = ""
    refresh: str = ""
    login_cookie: str = ""  # deleted once the login is done


@dataclass
class Outcome:
    """``status`` 0 and no ``exchange``: pass on with ``add``/``remove``; else answer."""

    status: int = 0
    headers: HeaderList = field(default_factory=list)  # of the answer
    body: bytes = b""
    add: HeaderList = field(default_factory=list)  # to the forwarded request
    remove: tuple[bytes, ...] = ()
    exchange: Exchange | None = None
    set_cookies: HeaderList = field(default_factory=list)  # on the forwarded response


class OIDCFlow:
    """One policy's flow, compiled once per reload; keys derived on first use."""

    __slots__ = ("_keys", "_root", "config", "names", "session_cookies")

    def __init__(self, config: ir.OIDC) -> None:
        self.config = config
        sfx = config.cookie_suffix
        self.names = _Names(
            access=config.access_token_cookie,
            id=config.id_token_cookie,
            refresh=f"RefreshToken-{sfx}",
            expires=f"OauthExpires-{sfx}",
            hmac=f"OauthHMAC-{sfx}",
            nonce=f"OauthNonce-{sfx}",
        )
        self.session_cookies = frozenset(self.names)
        self._root = b""
        self._keys: oc.Keys | None = None

    def keys(self, root: bytes) -> oc.Keys:
        if self._keys is None or root != self._root:
            self._root, self._keys = root, oc.policy_keys(root, self.config.name)
        return self._keys

    def check(self, req: OIDCRequest, providers: Providers) -> Outcome:
        """The synchronous step (see the module docstring)."""
        config = self.config
        if config.pass_through and _passes(config.pass_through, req.header):
            return Outcome()
        keys = self.keys(providers.root_key())
        cookies = oc.parse_cookies(req.header(b"cookie"), self.session_cookies)
        if req.path == config.logout_path:
            return self._logout(req, providers, keys, cookies)
        session = self._session(req, keys, cookies)
        if session == _VALID:
            if req.path == config.redirect_path:
                return self._back_again(req)
            return self._pass(req, keys, cookies)
        if req.path == config.redirect_path:
            return self._callback(req, keys, cookies)
        if session == _EXPIRED and config.refresh_token and cookies.get(self.names.refresh):
            refresh = oc.unseal(keys, cookies[self.names.refresh], config.encrypt_tokens)
            if refresh:
                return Outcome(exchange=Exchange("refresh_token", self._host(req), refresh=refresh))
        return self.login(req, providers)

    def login(self, req: OIDCRequest, providers: Providers) -> Outcome:
        """No session: 401 for ``denyRedirect`` requests, else off to the provider."""
        if _denied(self.config.deny_redirect, req.header):
            return Outcome(status=401, body=FAILED)
        return self._login(req, providers, self.keys(providers.root_key()))

    # --- the steps ----------------------------------------------------------------------

    def _host(self, req: OIDCRequest) -> str:
        return self.config.cookie_domain or req.authority

    def _session(self, req: OIDCRequest, keys: oc.Keys, cookies: dict[str, str]) -> int:
        names = self.names
        expires, mac = cookies.get(names.expires, ""), cookies.get(names.hmac, "")
        tokens = (
            cookies.get(names.access, ""),
            cookies.get(names.id, ""),
            cookies.get(names.refresh, ""),
        )
        if not oc.session_valid(keys, self._host(req), expires, tokens, mac):
            return _NONE
        return _VALID if int(expires) > req.now else _EXPIRED

    def _pass(self, req: OIDCRequest, keys: oc.Keys, cookies: dict[str, str]) -> Outcome:
        """A valid session: token cookies decrypted for the backend, the login cookie dropped."""
        config, names = self.config, self.names
        plain = {
            name: oc.unseal(keys, value, config.encrypt_tokens) or ""
            for name, value in cookies.items()
            if name in (names.access, names.id, names.refresh)
        }
        kept = {k: cookies[k] for k in (names.expires, names.hmac) if k in cookies}
        outcome = Outcome(add=[self.backend_cookie(req.header(b"cookie") or "", plain | kept)])
        outcome.add += self.forward_headers(plain.get(names.access, ""), plain.get(names.id, ""))
        return outcome

    def backend_cookie(self, raw: str, session: dict[str, str]) -> tuple[bytes, bytes]:
        """The Cookie header the backend gets: the client's others, the session's ``session``."""
        rest = oc.strip_cookies(raw, self.session_cookies, self.names.nonce + ".")
        parts = [rest] if rest else []
        parts += [f"{k}={v}" for k, v in session.items()]
        return b"cookie", "; ".join(parts).encode("latin-1", "replace")

    def forward_headers(self, access: str, id_token: str) -> HeaderList:
        """``forwardAccessToken`` and ``forwardIDToken``: the tokens as the backend gets them."""
        config, out = self.config, []
        if config.forward_access_token and access:
            out.append((b"authorization", b"Bearer " + access.encode("latin-1", "replace")))
        header = config.forward_id_token_header
        if header and id_token:
            prefix = "Bearer " if header == "authorization" else ""
            out.append((header.encode(), (prefix + id_token).encode("latin-1", "replace")))
        return out

    def _back_again(self, req: OIDCRequest) -> Outcome:
        """Logged in already on the callback path (a race of two logins): back to the URL."""
        state = _query(req.query).get("state", "")
        decoded = oc.decode_state(state)
        if decoded is None or not _same_origin(decoded[0], req):
            return Outcome(status=401, body=FAILED)
        headers = [(b"location", decoded[0].encode("latin-1", "replace"))]
        headers.append((b"set-cookie", oc.delete_cookie(self._login_cookie(decoded[1]))))
        return Outcome(status=302, headers=headers)

    def _login_cookie(self, csrf: str) -> str:
        """A login's own cookie (Envoy's per-flow name): logins in two tabs do not collide."""
        return f"{self.names.nonce}.{oc.flow_id(csrf)}"

    def _callback(self, req: OIDCRequest, keys: oc.Keys, cookies: dict[str, str]) -> Outcome:
        params = _query(req.query)
        code, state = params.get("code", ""), params.get("state", "")
        if "error" in params or not code or not state or len(code) > 2048:
            return Outcome(status=401, body=FAILED)
        decoded = oc.decode_state(state)
        if decoded is None:
            return Outcome(status=401, body=FAILED)
        url, csrf = decoded
        name = self._login_cookie(csrf)
        login = oc.parse_cookies(req.header(b"cookie"), frozenset((name,))).get(name)
        if login is None or not (oc.csrf_valid(keys, csrf) and _equal(csrf, login)):
            return Outcome(status=401, body=FAILED)
        if not _same_origin(url, req) or urlsplit(url).path == self.config.redirect_path:
            return Outcome(status=401, body=FAILED)
        exchange = Exchange(
            "authorization_code",
            self._host(req),
            code=code,
            redirect_uri=self._redirect_uri(req),
            verifier=oc.verifier_for(keys, csrf),
            nonce=oc.nonce_for(keys, csrf),
            url=url,
            login_cookie=name,
        )
        return Outcome(exchange=exchange)

    def _login(self, req: OIDCRequest, providers: Providers, keys: oc.Keys) -> Outcome:
        endpoints = providers.endpoints(self.config.provider)
        if endpoints is None:
            return Outcome(status=503, body=NOT_READY)
        csrf = oc.new_csrf(keys)
        original = request_url(req.scheme, req.authority, req.path, req.query)
        if len(original) > oc.MAX_URL:
            return Outcome(status=401, body=FAILED)
        location = authorize_url(
            self.config,
            endpoints.authorization,
            redirect_uri=self._redirect_uri(req),
            state=oc.encode_state(original, csrf),
            nonce=oc.nonce_for(keys, csrf),
            challenge=oc.challenge_for(oc.verifier_for(keys, csrf)),
        )
        config = self.config
        cookie = oc.set_cookie(
            self._login_cookie(csrf),
            csrf,
            int(config.csrf_token_ttl),
            config.cookie_domain,
            config.same_site,
        )
        headers = [(b"location", location.encode("latin-1", "replace")), (b"set-cookie", cookie)]
        return Outcome(status=302, headers=headers)

    def _logout(
        self, req: OIDCRequest, providers: Providers, keys: oc.Keys, cookies: dict[str, str]
    ) -> Outcome:
        home = f"{req.scheme}://{req.authority}/"
        location = home
        endpoints = providers.endpoints(self.config.provider)
        end = endpoints.end_session if endpoints else self.config.provider.end_session_endpoint
        if end:
            id_token = oc.unseal(keys, cookies.get(self.names.id, ""), self.config.encrypt_tokens)
            sep = "&" if "?" in end else "?"
            location = (
                f"{end}{sep}id_token_hint={quote(id_token or '', safe='')}"
                f"&client_id={quote(self.config.client_id, safe='')}"
                f"&post_logout_redirect_uri={quote(home, safe='')}"
            )
        headers = [(b"location", location.encode("latin-1", "replace"))]
        headers += [(b"set-cookie", oc.delete_cookie(name)) for name in self.names]
        return Outcome(status=302, headers=headers)

    def _redirect_uri(self, req: OIDCRequest) -> str:
        url = self.config.redirect_url
        proto = req.header(b"x-forwarded-proto") or req.scheme
        url = url.replace("%REQ(x-forwarded-proto)%", proto if proto in _SCHEMES else req.scheme)
        return url.replace("%REQ(:authority)%", req.authority)

    # --- after the exchange -------------------------------------------------------------

    def session_set_cookies(
        self, keys: oc.Keys, host: str, tokens: Tokens, now: float
    ) -> HeaderList:
        """The Set-Cookie fields of a new session (after a login or a refresh)."""
        config, names = self.config, self.names
        ttl = int(tokens.expires_in)
        expires = str(int(now) + ttl)
        seal = config.encrypt_tokens
        access = oc.seal(keys, tokens.access_token, seal)
        id_ = oc.seal(keys, tokens.id_token, seal)
        refresh = oc.seal(keys, tokens.refresh_token, seal) if config.refresh_token else ""
        mac = oc.session_hmac(keys, host, expires, access, id_, refresh)
        domain, same_site = config.cookie_domain, config.same_site
        cookies = [
            oc.set_cookie(names.hmac, mac, ttl, domain, same_site),
            oc.set_cookie(names.expires, expires, ttl, domain, same_site),
            oc.set_cookie(names.access, access, ttl, domain, same_site),
        ]
        # a token the provider did not send is deleted: the HMAC was made without it
        refresh_ttl = int(config.default_refresh_token_ttl)
        for name, value, max_age in ((names.id, id_, ttl), (names.refresh, refresh, refresh_ttl)):
            cookie = oc.set_cookie(name, value, max_age, domain, same_site)
            cookies.append(cookie if value else oc.delete_cookie(name))
        return [(b"set-cookie", c) for c in cookies]

    def finish_login(
        self, keys: oc.Keys, exchange: Exchange, tokens: Tokens, now: float
    ) -> Outcome:
        """The answer to a callback whose code became tokens: cookies, and back to the URL."""
        headers = [(b"location", exchange.url.encode("latin-1", "replace"))]
        headers += self.session_set_cookies(keys, exchange.host, tokens, now)
        headers.append((b"set-cookie", oc.delete_cookie(exchange.login_cookie)))
        return Outcome(status=302, headers=headers)


class _Names(NamedTuple):
    access: str
    id: str
    refresh: str
    expires: str
    hmac: str
    nonce: str


_NONE, _EXPIRED, _VALID = 0, 1, 2
_SCHEMES = ("http", "https")


def _query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query[:8192], keep_blank_values=True, max_num_fields=64):
        params.setdefault(name, value)
    return params


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def _same_origin(url: str, req: OIDCRequest) -> bool:
    """The state's URL is on the host that got the callback: never an open redirect."""
    parts = urlsplit(url)
    return parts.scheme in _SCHEMES and parts.netloc.lower() == req.authority.lower()


def _passes(headers: tuple[tuple[str, str], ...], header: HeaderLookup) -> bool:
    for name, prefix in headers:
        value = header(name.encode())
        if value is not None and value.startswith(prefix):
            return True
    return False


def _denied(rules: tuple[tuple[str, str, str], ...], header: HeaderLookup) -> bool:
    """``denyRedirect``: any header matching its StringMatch."""
    for name, kind, expected in rules:
        value = header(name.encode())
        if value is None:
            continue
        if (
            (kind == "Exact" and value == expected)
            or (kind == "Prefix" and value.startswith(expected))
            or (kind == "Suffix" and value.endswith(expected))
            or (kind == "RegularExpression" and re.fullmatch(expected, value[:4096]))
        ):
            return True
    return False
