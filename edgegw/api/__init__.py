"""Typed Gateway API (and friends) resources, as read from the config directory.

Every kind edgegw reads is a frozen msgspec Struct here; ``Resources`` holds
one tuple per kind, sorted by (namespace, name), and is what ``translate()``
takes. Decoding from files lives in ``edgegw.config``.
"""

from __future__ import annotations

import msgspec

from edgegw.api.certmanager import Certificate, ClusterIssuer, Issuer
from edgegw.api.core import ConfigMap, EndpointSlice, Namespace, Secret, Service
from edgegw.api.envoy import Backend
from edgegw.api.envoypolicies import BackendTrafficPolicy, ClientTrafficPolicy, SecurityPolicy
from edgegw.api.gateway import Gateway, GatewayClass
from edgegw.api.listenerset import ListenerSet
from edgegw.api.meta import Duration, Object, ObjectMeta, Source, Timestamp
from edgegw.api.metallb import IPAddressPool, L2Advertisement
from edgegw.api.policy import BackendTLSPolicy, ReferenceGrant
from edgegw.api.routes import GRPCRoute, HTTPRoute, TCPRoute, TLSRoute, UDPRoute

__all__ = [
    "Backend",
    "BackendTLSPolicy",
    "BackendTrafficPolicy",
    "Certificate",
    "ClientTrafficPolicy",
    "ClusterIssuer",
    "ConfigMap",
    "Duration",
    "EndpointSlice",
    "GRPCRoute",
    "Gateway",
    "GatewayClass",
    "HTTPRoute",
    "IPAddressPool",
    "Issuer",
    "L2Advertisement",
    "ListenerSet",
    "Namespace",
    "Object",
    "ObjectMeta",
    "ReferenceGrant",
    "Resource",
    "Resources",
    "Secret",
    "SecurityPolicy",
    "Service",
    "Source",
    "TCPRoute",
    "TLSRoute",
    "Timestamp",
    "UDPRoute",
]

Resource = (
    GatewayClass
    | Gateway
    | ListenerSet
    | HTTPRoute
    | GRPCRoute
    | TLSRoute
    | TCPRoute
    | UDPRoute
    | ReferenceGrant
    | BackendTLSPolicy
    | Service
    | EndpointSlice
    | Secret
    | ConfigMap
    | Namespace
    | Backend
    | IPAddressPool
    | L2Advertisement
    | Issuer
    | ClusterIssuer
    | Certificate
    | ClientTrafficPolicy
    | BackendTrafficPolicy
    | SecurityPolicy
)


class Resources(msgspec.Struct, frozen=True, kw_only=True):
    """Everything loaded, one tuple per kind, each in (namespace, name) order."""

    gateway_classes: tuple[GatewayClass, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    listener_sets: tuple[ListenerSet, ...] = ()
    http_routes: tuple[HTTPRoute, ...] = ()
    grpc_routes: tuple[GRPCRoute, ...] = ()
    tls_routes: tuple[TLSRoute, ...] = ()
    tcp_routes: tuple[TCPRoute, ...] = ()
    udp_routes: tuple[UDPRoute, ...] = ()
    reference_grants: tuple[ReferenceGrant, ...] = ()
    backend_tls_policies: tuple[BackendTLSPolicy, ...] = ()
    services: tuple[Service, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()
    secrets: tuple[Secret, ...] = ()
    config_maps: tuple[ConfigMap, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    backends: tuple[Backend, ...] = ()
    ip_address_pools: tuple[IPAddressPool, ...] = ()
    l2_advertisements: tuple[L2Advertisement, ...] = ()
    issuers: tuple[Issuer, ...] = ()
    cluster_issuers: tuple[ClusterIssuer, ...] = ()
    certificates: tuple[Certificate, ...] = ()
    client_traffic_policies: tuple[ClientTrafficPolicy, ...] = ()
    backend_traffic_policies: tuple[BackendTrafficPolicy, ...] = ()
    security_policies: tuple[SecurityPolicy, ...] = ()


# which Resources field holds each kind
FIELD_BY_KIND: dict[type[Object], str] = {
    GatewayClass: "gateway_classes",
    Gateway: "gateways",
    ListenerSet: "listener_sets",
    HTTPRoute: "http_routes",
    GRPCRoute: "grpc_routes",
    TLSRoute: "tls_routes",
    TCPRoute: "tcp_routes",
    UDPRoute: "udp_routes",
    ReferenceGrant: "reference_grants",
    BackendTLSPolicy: "backend_tls_policies",
    Service: "services",
    EndpointSlice: "endpoint_slices",
    Secret: "secrets",
    ConfigMap: "config_maps",
    Namespace: "namespaces",
    Backend: "backends",
    IPAddressPool: "ip_address_pools",
    L2Advertisement: "l2_advertisements",
    Issuer: "issuers",
    ClusterIssuer: "cluster_issuers",
    Certificate: "certificates",
    ClientTrafficPolicy: "client_traffic_policies",
    BackendTrafficPolicy: "backend_traffic_policies",
    SecurityPolicy: "security_policies",
}


def build_resources(objects: list[Object]) -> Resources:
    """Group objects by kind and sort each group by (namespace, name)."""
    groups: dict[str, list[Object]] = {field: [] for field in FIELD_BY_KIND.values()}
    for obj in objects:
        groups[FIELD_BY_KIND[type(obj)]].append(obj)
    for items in groups.values():
        items.sort(key=lambda o: (o.metadata.namespace or "", o.metadata.name))
    return Resources(**{field: tuple(items) for field, items in groups.items()})  # type: ignore[arg-type]
