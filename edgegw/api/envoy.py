"""Envoy Gateway's Backend (gateway.envoyproxy.io/v1alpha1): endpoints outside any Service.

A ``backendRefs`` entry with group ``gateway.envoyproxy.io`` and kind
``Backend`` names one of these; its endpoints are IPs, DNS names or unix sockets.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edgegw.api.meta import (
    PRECISE_HOSTNAME_PATTERN,
    LocalObjectReference,
    Model,
    Object,
    SecretObjectReference,
    check_proxy_protocol_annotation,
    is_ip,
)
from edgegw.errors import FieldError

_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_FQDN = Annotated[str, msgspec.Meta(min_length=1, max_length=253, pattern=PRECISE_HOSTNAME_PATTERN)]
AppProtocolType = Literal[
    "gateway.envoyproxy.io/h2c", "gateway.envoyproxy.io/ws", "gateway.envoyproxy.io/wss"
]


class IPEndpoint(Model, kw_only=True, frozen=True):
    address: Annotated[str, msgspec.Meta(min_length=3, max_length=45)]
    port: _Port

    def __post_init__(self) -> None:
        if not is_ip(self.address):
            raise FieldError("address", f"{self.address!r} is not an IP address")


class FQDNEndpoint(Model, kw_only=True, frozen=True):
    hostname: _FQDN
    port: _Port


class UnixSocket(Model, kw_only=True, frozen=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=108)]


class BackendEndpoint(Model, kw_only=True, frozen=True):
    fqdn: FQDNEndpoint | None = None
    ip: IPEndpoint | None = None
    unix: UnixSocket | None = None
    hostname: _FQDN | None = None
    zone: str | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("fqdn", "ip", "unix") if getattr(self, k) is not None]
        if len(given) != 1:
            raise FieldError("", "exactly one of fqdn, ip or unix must be specified")


class BackendTLSSettings(Model, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """TLS to the backend; newer Envoy Gateway fields edgegw does not use are ignored."""

    ca_certificate_refs: Annotated[
        tuple[LocalObjectReference, ...], msgspec.Meta(max_length=8)
    ] = ()
    well_known_ca_certificates: str | None = msgspec.field(
        default=None, name="wellKnownCACertificates"
    )
    insecure_skip_verify: bool = False
    sni: str | None = None
    alpn_protocols: tuple[str, ...] = ()
    client_certificate_ref: SecretObjectReference | None = None

    def __post_init__(self) -> None:
        has_ca = bool(self.ca_certificate_refs or self.well_known_ca_certificates)
        if self.ca_certificate_refs and self.well_known_ca_certificates:
            raise FieldError(
                "wellKnownCACertificates",
                "must not contain both caCertificateRefs and wellKnownCACertificates",
            )
        if self.insecure_skip_verify and has_ca:
            raise FieldError("insecureSkipVerify", "must not be set together with CA certificates")


class BackendSpec(Model, kw_only=True, frozen=True):
    type: Literal["Endpoints", "DynamicResolver"] = "Endpoints"
    endpoints: Annotated[tuple[BackendEndpoint, ...], msgspec.Meta(max_length=64)] = ()
    app_protocols: tuple[AppProtocolType, ...] = ()
    fallback: bool | None = None
    tls: BackendTLSSettings | None = None

    def __post_init__(self) -> None:
        if self.type == "DynamicResolver":
            if self.endpoints:
                raise FieldError("endpoints", "DynamicResolver type cannot have endpoints")
            return
        if not self.endpoints:
            raise FieldError("endpoints", "at least one endpoint is required")
        fqdn = [e.fqdn is not None for e in self.endpoints]
        if any(fqdn) and not all(fqdn):
            raise FieldError("endpoints", "fqdn addresses cannot be mixed with other address types")


class Backend(Object, kw_only=True, frozen=True):
    spec: BackendSpec

    def __post_init__(self) -> None:
        check_proxy_protocol_annotation(self.metadata)
