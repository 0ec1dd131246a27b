"""SecurityPolicy ``jwt``: Envoy Gateway's ``api/v1alpha1/jwt_types.go``, as edgegw reads it.

Like the other policy models these do not reject unknown fields at decode
time: ``envoypolicies.unimplemented_fields`` finds them and the policy is
``Accepted=False`` naming each one. What Envoy Gateway checks with CEL rules
on the CRD (one of remoteJWKS and localJWKS, inline with type Inline, claim
headers with recomputeRoute) is checked here, so a file Kubernetes would
refuse is an error naming its line.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edgegw.api.meta import BackendRef, Duration, LocalObjectReference, Model
from edgegw.errors import FieldError

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
_Header = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
MAX_INLINE_JWKS = 256 * 1024  # characters of an inline JWKS


class JWTModel(Model, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """Base of the jwt types: unknown fields are collected, then refused in status."""


class JWKSHTTPTimeout(JWTModel, kw_only=True, frozen=True):
    request_timeout: Duration | None = None


class JWKSTimeout(JWTModel, kw_only=True, frozen=True):
    http: JWKSHTTPTimeout | None = None


class JWKSBackendSettings(JWTModel, kw_only=True, frozen=True):
    """``backendSettings`` (ClusterSettings): only ``timeout.http.requestTimeout`` is read."""

    timeout: JWKSTimeout | None = None


class RemoteJWKS(JWTModel, kw_only=True, frozen=True):
    uri: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    backend_refs: Annotated[tuple[BackendRef, ...], msgspec.Meta(max_length=16)] = ()
    backend_settings: JWKSBackendSettings | None = None
    cache_duration: Duration | None = None
    failed_refetch_duration: Duration | None = None


class LocalJWKS(JWTModel, kw_only=True, frozen=True):
    type: Literal["Inline", "ValueRef"] = "Inline"
    inline: Annotated[str, msgspec.Meta(max_length=MAX_INLINE_JWKS)] | None = None
    value_ref: LocalObjectReference | None = None

    def __post_init__(self) -> None:
        inline = self.type == "Inline"
        if inline != (self.inline is not None) or inline == (self.value_ref is not None):
            raise FieldError("type", "exactly one of inline or valueRef must be set with its type")


class ClaimToHeader(JWTModel, kw_only=True, frozen=True):
    header: _Header
    claim: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class JWTHeaderExtractor(JWTModel, kw_only=True, frozen=True):
    name: _Header
    value_prefix: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class JWTExtractor(JWTModel, kw_only=True, frozen=True):
    headers: Annotated[tuple[JWTHeaderExtractor, ...], msgspec.Meta(max_length=16)] = ()
    cookies: Annotated[tuple[_Header, ...], msgspec.Meta(max_length=16)] = ()
    params: Annotated[tuple[_Header, ...], msgspec.Meta(max_length=16)] = ()


class JWTProvider(JWTModel, kw_only=True, frozen=True):
    name: _Name
    issuer: Annotated[str, msgspec.Meta(max_length=253)] = ""
    audiences: Annotated[tuple[str, ...], msgspec.Meta(max_length=8)] = ()
    remote_jwks: RemoteJWKS | None = msgspec.field(default=None, name="remoteJWKS")
    local_jwks: LocalJWKS | None = msgspec.field(default=None, name="localJWKS")
    claim_to_headers: Annotated[tuple[ClaimToHeader, ...], msgspec.Meta(max_length=32)] = ()
    recompute_route: bool | None = None
    extract_from: JWTExtractor | None = None

    def __post_init__(self) -> None:
        if (self.remote_jwks is None) == (self.local_jwks is None):
            raise FieldError("remoteJWKS", "either remoteJWKS or localJWKS must be specified")
        if self.recompute_route and not self.claim_to_headers:
            raise FieldError(
                "claimToHeaders", "claimToHeaders must be specified if recomputeRoute is enabled"
            )


class JWT(JWTModel, kw_only=True, frozen=True):
    providers: Annotated[tuple[JWTProvider, ...], msgspec.Meta(min_length=1, max_length=16)]
    optional: bool | None = None
    fail_open: bool | None = None

    def __post_init__(self) -> None:
        if self.optional is not None and self.fail_open is not None:
            raise FieldError("failOpen", "optional and failOpen cannot both be set")
