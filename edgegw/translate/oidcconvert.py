"""SecurityPolicy ``oidc`` → ``ir.OIDC``, with Envoy Gateway's defaults and validation.

Pure, like the rest of ``translate``: the client secret (and a ``clientIDRef``)
come from Secrets through the caller's ``secret`` lookup, which applies
ReferenceGrants; ``provider.backendRefs`` resolves like any backend. What
Envoy Gateway's ``buildOIDC`` does is done the same way: ``openid`` is added to
the scopes, the redirect URL must be ``http``, ``https`` or
``%REQ(x-forwarded-proto)%`` with a path other than ``/`` (that path is the
callback), cookies get a suffix unique to the policy, ``passThroughAuthHeader``
needs a ``jwt`` that reads a header. Endpoints not given are left empty: the
data plane discovers them from the issuer (``net/oidc.py``), off the reload,
where Envoy Gateway fetches them while translating.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from urllib.parse import urlsplit

from edgegw import api, ir
from edgegw.api import envoyoidc as eo
from edgegw.api.meta import SecretObjectReference
from edgegw.translate.backends import policy_backend
from edgegw.translate.backendtls import BackendTLSPolicies
from edgegw.translate.index import Index

CLIENT_SECRET_KEY = "client-secret"
CLIENT_ID_KEY = "client-id"
DEFAULT_REDIRECT_URL = "%REQ(x-forwarded-proto)%://%REQ(:authority)%/oauth2/callback"
_SCHEMES = ("http", "https", "%REQ(x-forwarded-proto)%")

SecretLookup = Callable[[str, SecretObjectReference, str], api.Secret]


class OIDCProblem(ValueError):
    """An ``oidc`` field that cannot be carried out; the message names it."""


class OIDCConverter:
    """Needs the Index for backendRefs, and the caller's Secret lookup."""

    def __init__(self, index: Index, tls: BackendTLSPolicies, secret: SecretLookup) -> None:
        self._index = index
        self._tls = tls
        self._secret = secret

    def __call__(self, ns: str, name: str, spec: eo.OIDC, jwt: ir.JWT | None) -> ir.OIDC:
        """Raises: OIDCProblem (and the Secret lookup's own error)."""
        field = "spec.oidc"
        redirect_url = spec.redirect_url or DEFAULT_REDIRECT_URL
        redirect_path = redirect_path_of(redirect_url)
        if redirect_path is None:
            raise OIDCProblem(f"{field}.redirectURL: invalid redirect URL {redirect_url}")
        cookies = spec.cookie_names or eo.OIDCCookieNames()
        suffix = cookie_suffix(ns, name)
        return ir.OIDC(
            name=f"{ns}/{name}",
            provider=self._provider(ns, f"{field}.provider", spec.provider),
            client_id=self._client_id(ns, spec),
            client_secret=self._client_secret(ns, spec.client_secret),
            scopes=with_openid(spec.scopes),
            resources=spec.resources,
            redirect_url=redirect_url,
            redirect_path=redirect_path,
            logout_path=spec.logout_path or "/logout",
            forward_access_token=bool(spec.forward_access_token),
            forward_id_token_header=(
                spec.forward_id_token.header.lower() if spec.forward_id_token else ""
            ),
            refresh_token=spec.refresh_token is not False,
            cookie_suffix=suffix,
            access_token_cookie=cookies.access_token or f"AccessToken-{suffix}",
            id_token_cookie=cookies.id_token or f"IdToken-{suffix}",
            cookie_domain=spec.cookie_domain or "",
            same_site=spec.cookie_config.same_site or "" if spec.cookie_config else "",
            default_token_ttl=float(spec.default_token_ttl or 0.0),
            default_refresh_token_ttl=float(spec.default_refresh_token_ttl or 604800.0),
            csrf_token_ttl=float(spec.csrf_token_ttl or 600.0),
            encrypt_tokens=not spec.disable_token_encryption,
            pass_through=_pass_through(field, spec, jwt),
            deny_redirect=tuple(
                (h.name.lower(), h.type, h.value)
                for h in (spec.deny_redirect.headers if spec.deny_redirect else ())
            ),
        )

    def _client_id(self, ns: str, spec: eo.OIDC) -> str:
        if spec.client_id is not None:
            return spec.client_id
        assert spec.client_id_ref is not None
        field = "spec.oidc.clientIDRef"
        secret = self._secret(ns, spec.client_id_ref, field)
        value = secret.data.get(CLIENT_ID_KEY, b"").strip()
        if not value:
            raise OIDCProblem(f"{field}: client ID not found in secret (key {CLIENT_ID_KEY})")
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise OIDCProblem(f"{field}: the client ID is not ASCII text") from None

    def _client_secret(self, ns: str, ref: SecretObjectReference) -> bytes:
        field = "spec.oidc.clientSecret"
        value = self._secret(ns, ref, field).data.get(CLIENT_SECRET_KEY, b"").strip()
        if not value:
            raise OIDCProblem(
                f"{field}: client secret not found in secret (key {CLIENT_SECRET_KEY})"
            )
        return value

    def _provider(self, ns: str, field: str, spec: eo.OIDCProvider) -> ir.OIDCProvider:
        _check_url(f"{field}.issuer", spec.issuer, issuer=True)
        for where, url in (
            ("authorizationEndpoint", spec.authorization_endpoint),
            ("tokenEndpoint", spec.token_endpoint),
            ("endSessionEndpoint", spec.end_session_endpoint),
        ):
            if url is not None:
                _check_url(f"{field}.{where}", url)
        backend = self._backend(ns, field, spec) if spec.backend_refs else None
        return ir.OIDCProvider(
            issuer=spec.issuer.rstrip("/"),
            authorization_endpoint=spec.authorization_endpoint or "",
            token_endpoint=spec.token_endpoint or "",
            end_session_endpoint=spec.end_session_endpoint or "",
            backend=backend,
        )

    def _backend(self, ns: str, field: str, spec: eo.OIDCProvider) -> ir.Backend:
        url = urlsplit(spec.token_endpoint or spec.issuer)
        https = ir.BackendTLS(hostname=url.hostname or "") if url.scheme == "https" else None
        found = policy_backend(self._index, self._tls, ns, spec.backend_refs, https)
        if isinstance(found, str):
            raise OIDCProblem(f"{field}.{found}")
        return found


def redirect_path_of(url: str) -> str | None:
    """Envoy Gateway's ``extractRedirectPath``: the callback path, or None when invalid."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        return None
    slash = rest.find("/")
    if slash <= 0:
        return None
    path = rest[slash:].partition("?")[0]
    return None if path == "/" else path


def with_openid(scopes: tuple[str, ...]) -> tuple[str, ...]:
    """The scopes as given, ``openid`` added at the end when missing."""
    return scopes if "openid" in scopes else (*scopes, "openid")


def cookie_suffix(ns: str, name: str) -> str:
    """A stable suffix unique to the policy, so two policies' cookies never collide."""
    return hashlib.sha256(f"{ns}/{name}".encode()).hexdigest()[:8]


def _check_url(field: str, url: str, *, issuer: bool = False) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OIDCProblem(f"{field}: {url!r} is not an http or https URL")
    if "@" in parts.netloc:  # never sent, and it would show in logs
        raise OIDCProblem(f"{field}: user information in the URL is not supported")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise OIDCProblem(f"{field}: {url!r} has an invalid port") from None
    if issuer and (parts.query or parts.fragment):
        raise OIDCProblem(f"{field}: an issuer has no query or fragment")


def _pass_through(field: str, spec: eo.OIDC, jwt: ir.JWT | None) -> tuple[tuple[str, str], ...]:
    """``passThroughAuthHeader``: the headers a ``jwt`` provider reads a token from."""
    if not spec.pass_through_auth_header:
        return ()
    headers = tuple(h for p in (jwt.providers if jwt else ()) for h in p.headers)
    if jwt is None:
        raise OIDCProblem(
            f"{field}.passThroughAuthHeader: must be used in conjunction with JWT settings"
        )
    if not headers:
        raise OIDCProblem(
            f"{field}.passThroughAuthHeader: must be used in conjunction with a JWT "
            "provider that is configured to read from a header"
        )
    return headers
