"""SecurityPolicy ``oidc``: Envoy Gateway's ``api/v1alpha1/oidc_types.go``, as edgegw reads it.

Like the other policy models these do not reject unknown fields at decode
time: ``envoypolicies.unimplemented_fields`` finds them and the policy is
``Accepted=False`` naming each one (``provider.backendSettings``, say). What
Envoy Gateway checks with CEL rules on the CRD (one of clientID and
clientIDRef; no ``backendRef``; forwardAccessToken with an ID token on
Authorization) is checked here, so a file Kubernetes would refuse is an error
naming its line.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edgegw.api.envoypolicybase import PolicyModel
from edgegw.api.envoytraffic import StringMatch
from edgegw.api.meta import BackendRef, Duration, SecretObjectReference
from edgegw.errors import FieldError

_URL = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
_Token = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_HEADER = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
_COOKIE = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"  # an RFC 6265 cookie-name: a token
_DOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class OIDCProvider(PolicyModel, kw_only=True, frozen=True):
    """The provider; endpoints not given are discovered from the issuer."""

    backend_ref: BackendRef | None = None  # refused: Envoy Gateway's CEL rule
    backend_refs: Annotated[tuple[BackendRef, ...], msgspec.Meta(max_length=16)] = ()
    issuer: _URL
    authorization_endpoint: _URL | None = None
    token_endpoint: _URL | None = None
    end_session_endpoint: _URL | None = None

    def __post_init__(self) -> None:
        if self.backend_ref is not None:
            raise FieldError("backendRef", "BackendRefs must be used, backendRef is not supported.")


class OIDCDenyRedirectHeader(StringMatch, kw_only=True, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=_HEADER)]


class OIDCDenyRedirect(PolicyModel, kw_only=True, frozen=True):
    headers: Annotated[
        tuple[OIDCDenyRedirectHeader, ...], msgspec.Meta(min_length=1, max_length=16)
    ]


_CookieName = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=_COOKIE)]


class OIDCCookieNames(PolicyModel, kw_only=True, frozen=True):
    access_token: _CookieName | None = None
    id_token: _CookieName | None = msgspec.field(default=None, name="idToken")


class OIDCCookieConfig(PolicyModel, kw_only=True, frozen=True):
    same_site: Literal["Lax", "Strict", "None"] | None = None


class OIDCTokenForwarding(PolicyModel, kw_only=True, frozen=True):
    header: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=_HEADER)]

    def __post_init__(self) -> None:
        if self.header.lower() == "host":
            raise FieldError("header", "header cannot be the Host header")


class OIDC(PolicyModel, kw_only=True, frozen=True):
    provider: OIDCProvider
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = msgspec.field(
        default=None, name="clientID"
    )
    client_id_ref: SecretObjectReference | None = msgspec.field(default=None, name="clientIDRef")
    client_secret: SecretObjectReference
    cookie_names: OIDCCookieNames | None = None
    cookie_config: OIDCCookieConfig | None = None
    cookie_domain: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=253, pattern=_DOMAIN)] | None
    ) = None
    scopes: Annotated[tuple[_Token, ...], msgspec.Meta(max_length=32)] = ()
    resources: Annotated[tuple[_URL, ...], msgspec.Meta(max_length=16)] = ()
    redirect_url: _URL | None = msgspec.field(default=None, name="redirectURL")
    deny_redirect: OIDCDenyRedirect | None = None
    logout_path: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None
    forward_access_token: bool | None = None
    forward_id_token: OIDCTokenForwarding | None = msgspec.field(
        default=None, name="forwardIDToken"
    )
    default_token_ttl: Duration | None = msgspec.field(default=None, name="defaultTokenTTL")
    refresh_token: bool | None = None
    default_refresh_token_ttl: Duration | None = msgspec.field(
        default=None, name="defaultRefreshTokenTTL"
    )
    csrf_token_ttl: Duration | None = msgspec.field(default=None, name="csrfTokenTTL")
    disable_token_encryption: bool | None = None
    pass_through_auth_header: bool | None = None

    def __post_init__(self) -> None:
        if (self.client_id is None) == (self.client_id_ref is None):
            raise FieldError("clientID", "only one of clientID or clientIDRef must be set")
        forward = self.forward_id_token
        if self.forward_access_token and forward and forward.header.lower() == "authorization":
            raise FieldError(
                "forwardAccessToken",
                "forwardAccessToken cannot be true when forwardIDToken.header is Authorization",
            )
