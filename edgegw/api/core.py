"""Kubernetes core v1 and discovery v1 kinds: Service, Secret, ConfigMap, Namespace, EndpointSlice.

These are usually the output of ``kubectl get -o yaml`` and carry many fields
edgegw has no use for (clusterIP, sessionAffinity…), so their specs ignore
unknown fields instead of rejecting them; what edgegw reads is still checked.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edgegw.api.meta import Model, Object, PortNumber, check_proxy_protocol_annotation
from edgegw.errors import FieldError

_ServiceProtocol = Literal["TCP", "UDP", "SCTP"]
_PortName = Annotated[str, msgspec.Meta(max_length=63)]


class ServicePort(Model, kw_only=True, frozen=True, forbid_unknown_fields=False):
    name: _PortName | None = None
    port: PortNumber
    target_port: PortNumber | Annotated[str, msgspec.Meta(min_length=1, max_length=15)] | None = (
        None
    )
    protocol: _ServiceProtocol = "TCP"
    app_protocol: str | None = None
    node_port: int | None = None


class ServiceSpec(Model, kw_only=True, frozen=True, forbid_unknown_fields=False):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    ports: tuple[ServicePort, ...] = ()
    selector: dict[str, str] = {}
    external_name: str | None = None
    cluster_ip: str | None = msgspec.field(default=None, name="clusterIP")

    def __post_init__(self) -> None:
        if self.type == "ExternalName" and not self.external_name:
            raise FieldError("externalName", "required when type is ExternalName")
        names = [p.name for p in self.ports]
        if len(self.ports) > 1 and None in names:
            raise FieldError(
                f"ports[{names.index(None)}].name", "required when a Service has ports"
            )
        for i, name in enumerate(names):
            if name is not None and name in names[:i]:
                raise FieldError(f"ports[{i}].name", f"port name {name!r} is repeated")


class Service(Object, kw_only=True, frozen=True):
    spec: ServiceSpec = ServiceSpec()

    def __post_init__(self) -> None:
        check_proxy_protocol_annotation(self.metadata)


class Secret(Object, kw_only=True, frozen=True):
    """A Secret; ``data`` holds the decoded bytes of ``data`` and ``stringData`` merged.

    As in Kubernetes, a key in ``stringData`` wins over the same key in ``data``.
    """

    type: str = "Opaque"
    data: dict[str, bytes] = {}
    string_data: dict[str, str] = {}
    immutable: bool | None = None

    def __post_init__(self) -> None:
        if self.string_data:
            merged = dict(self.data)
            merged.update((k, v.encode()) for k, v in self.string_data.items())
            msgspec.structs.force_setattr(self, "data", merged)
        if self.type == "kubernetes.io/tls":
            for key in ("tls.crt", "tls.key"):
                if key not in self.data:
                    raise FieldError("data", f"a kubernetes.io/tls Secret needs {key!r}")


class ConfigMap(Object, kw_only=True, frozen=True):
    data: dict[str, str] = {}
    binary_data: dict[str, bytes] = {}
    immutable: bool | None = None


class Namespace(Object, kw_only=True, frozen=True):
    """Only metadata (labels) matters: ``allowedRoutes`` selectors match on it."""


# --- discovery.k8s.io/v1 EndpointSlice ------------------------------------------------------


class EndpointConditions(Model, kw_only=True, frozen=True, forbid_unknown_fields=False):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class Endpoint(Model, kw_only=True, frozen=True, forbid_unknown_fields=False):
    addresses: Annotated[tuple[str, ...], msgspec.Meta(min_length=1, max_length=100)]
    conditions: EndpointConditions = EndpointConditions()
    hostname: str | None = None
    node_name: str | None = None
    zone: str | None = None


class EndpointPort(Model, kw_only=True, frozen=True, forbid_unknown_fields=False):
    name: str | None = None
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    protocol: _ServiceProtocol = "TCP"
    app_protocol: str | None = None


class EndpointSlice(Object, kw_only=True, frozen=True):
    address_type: Literal["IPv4", "IPv6", "FQDN"]
    endpoints: Annotated[tuple[Endpoint, ...], msgspec.Meta(max_length=1000)] = ()
    ports: Annotated[tuple[EndpointPort, ...], msgspec.Meta(max_length=100)] = ()
