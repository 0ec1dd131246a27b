"""GatewayClass and Gateway (gateway.networking.k8s.io v1 and v1beta1).

Field names and limits follow apis/v1/gateway_types.go and
gatewayclass_types.go; the CEL rules of ``GatewaySpec.listeners`` and
``addresses`` are in ``GatewaySpec.__post_init__``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from edgegw.api.meta import (
    HOSTNAME_PATTERN,
    AnnotationKey,
    AnnotationValue,
    GatewayController,
    Group,
    Hostname,
    Kind,
    LabelKey,
    LabelSelector,
    LabelValue,
    Model,
    NamespaceName,
    Object,
    ObjectName,
    ObjectReference,
    Options,
    PortNumber,
    SecretObjectReference,
    SectionName,
    check_hostnames,
    check_unique,
    is_ip,
)
from edgegw.errors import FieldError

_HOSTNAME = re.compile(HOSTNAME_PATTERN)


# --- GatewayClass ---------------------------------------------------------------------------


class ParametersReference(Model, kw_only=True, frozen=True):
    group: Group
    kind: Kind
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    namespace: NamespaceName | None = None


class GatewayClassSpec(Model, kw_only=True, frozen=True):
    controller_name: GatewayController
    parameters_ref: ParametersReference | None = None
    description: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class GatewayClass(Object, kw_only=True, frozen=True):
    spec: GatewayClassSpec


# --- Gateway --------------------------------------------------------------------------------

ProtocolType = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=255,
        pattern=r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|"
        r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$",
    ),
]


class RouteGroupKind(Model, kw_only=True, frozen=True):
    group: Group = "gateway.networking.k8s.io"
    kind: Kind


class RouteNamespaces(Model, kw_only=True, frozen=True):
    from_: Literal["All", "Selector", "Same"] = msgspec.field(default="Same", name="from")
    selector: LabelSelector | None = None


class AllowedRoutes(Model, kw_only=True, frozen=True):
    namespaces: RouteNamespaces = RouteNamespaces()
    kinds: Annotated[tuple[RouteGroupKind, ...], msgspec.Meta(max_length=8)] = ()


class ListenerTLSConfig(Model, kw_only=True, frozen=True):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: Annotated[tuple[SecretObjectReference, ...], msgspec.Meta(max_length=64)] = ()
    options: Options = {}

    def __post_init__(self) -> None:
        if self.mode == "Terminate" and not self.certificate_refs and not self.options:
            raise FieldError(
                "certificateRefs",
                "certificateRefs or options must be specified when mode is Terminate",
            )


class Listener(Model, kw_only=True, frozen=True):
    name: SectionName
    hostname: Hostname | None = None
    port: PortNumber
    protocol: ProtocolType
    tls: ListenerTLSConfig | None = None
    allowed_routes: AllowedRoutes = AllowedRoutes()

    def __post_init__(self) -> None:
        if self.hostname is not None:
            check_hostnames("hostname", [self.hostname])
        if self.protocol in ("HTTP", "TCP", "UDP") and self.tls is not None:
            raise FieldError(
                "tls", "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"
            )
        if self.protocol == "HTTPS" and self.tls is not None and self.tls.mode != "Terminate":
            raise FieldError("tls.mode", "tls mode must be Terminate for protocol HTTPS")
        if self.protocol == "TLS" and self.tls is None:
            raise FieldError("tls", "tls mode must be set for protocol TLS")
        if self.protocol in ("TCP", "UDP") and self.hostname:
            raise FieldError(
                "hostname", "hostname must not be specified for protocols ['TCP', 'UDP']"
            )


class GatewaySpecAddress(Model, kw_only=True, frozen=True):
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=253)] = "IPAddress"
    value: Annotated[str, msgspec.Meta(max_length=253)] = ""

    def __post_init__(self) -> None:
        if self.type == "Hostname" and self.value and not _HOSTNAME.match(self.value):
            raise FieldError("value", f"{self.value!r} is not a valid hostname")
        if self.type == "IPAddress" and self.value and not is_ip(self.value):
            raise FieldError("value", f"{self.value!r} is not an IP address")


class LocalParametersReference(Model, kw_only=True, frozen=True):
    group: Group
    kind: Kind
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]


class GatewayInfrastructure(Model, kw_only=True, frozen=True):
    labels: Annotated[dict[LabelKey, LabelValue], msgspec.Meta(max_length=8)] = {}
    annotations: Annotated[dict[AnnotationKey, AnnotationValue], msgspec.Meta(max_length=16)] = {}
    parameters_ref: LocalParametersReference | None = None


class ListenerNamespaces(Model, kw_only=True, frozen=True):
    from_: Literal["All", "Selector", "Same", "None"] = msgspec.field(default="None", name="from")
    selector: LabelSelector | None = None


class AllowedListeners(Model, kw_only=True, frozen=True):
    namespaces: ListenerNamespaces = ListenerNamespaces()


class FrontendTLSValidation(Model, kw_only=True, frozen=True):
    ca_certificate_refs: Annotated[
        tuple[ObjectReference, ...], msgspec.Meta(min_length=1, max_length=16)
    ]
    mode: Literal["AllowValidOnly", "AllowInsecureFallback"] = "AllowValidOnly"


class TLSConfig(Model, kw_only=True, frozen=True):
    validation: FrontendTLSValidation | None = None


class TLSPortConfig(Model, kw_only=True, frozen=True):
    port: PortNumber
    tls: TLSConfig


class FrontendTLSConfig(Model, kw_only=True, frozen=True):
    default: TLSConfig
    per_port: Annotated[tuple[TLSPortConfig, ...], msgspec.Meta(max_length=64)] = ()

    def __post_init__(self) -> None:
        check_unique("perPort", (p.port for p in self.per_port), "port")


class GatewayBackendTLS(Model, kw_only=True, frozen=True):
    client_certificate_ref: SecretObjectReference | None = None


class GatewayTLSConfig(Model, kw_only=True, frozen=True):
    backend: GatewayBackendTLS | None = None
    frontend: FrontendTLSConfig | None = None


class GatewaySpec(Model, kw_only=True, frozen=True):
    gateway_class_name: ObjectName
    listeners: Annotated[tuple[Listener, ...], msgspec.Meta(min_length=1, max_length=64)]
    addresses: Annotated[tuple[GatewaySpecAddress, ...], msgspec.Meta(max_length=16)] = ()
    infrastructure: GatewayInfrastructure | None = None
    allowed_listeners: AllowedListeners | None = None
    tls: GatewayTLSConfig | None = None
    default_scope: Literal["All", "None"] | None = None

    def __post_init__(self) -> None:
        check_unique("listeners", (ls.name for ls in self.listeners), "listener name")
        check_unique(
            "listeners",
            ((ls.port, ls.protocol, ls.hostname) for ls in self.listeners),
            "combination of port, protocol and hostname",
        )
        for i, address in enumerate(self.addresses):
            if address.value and address in self.addresses[:i]:
                raise FieldError(f"addresses[{i}]", f"{address.type} values must be unique")


class Gateway(Object, kw_only=True, frozen=True):
    spec: GatewaySpec
