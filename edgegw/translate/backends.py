"""backendRefs → ``ir.Backend``: Services with their EndpointSlices, ExternalNames, Backends.

A reference that cannot be resolved still becomes a Backend, with its weight
and ``invalid`` set, because the spec wants that share of traffic answered
with 500 rather than silently spread over the valid backends. The problem is
also returned so the route's ResolvedRefs condition can name it.

A Service or Backend annotated ``edgegw.io/proxy-protocol: "v1"|"v2"`` gets
a PROXY protocol header of that version in front of every TCP connection the
L4 relay opens to it (``ir.Backend.proxy_protocol``); other values are ignored.

Endpoints come from EndpointSlices labelled ``kubernetes.io/service-name``;
the slice port is matched to the Service port by name, as kube-proxy does,
and endpoints whose ``ready`` condition is false are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import msgspec

from edgegw import api, ir
from edgegw.api.meta import PROXY_PROTOCOL_ANNOTATION, BackendObjectReference
from edgegw.translate.backendtls import BackendTLSPolicies
from edgegw.translate.index import ENVOY_GROUP, GATEWAY_GROUP, Index, Key

_APP_PROTOCOLS: dict[str, ir.AppProtocol] = {
    "kubernetes.io/h2c": "h2c",
    "kubernetes.io/ws": "ws",
    "kubernetes.io/wss": "wss",
    "gateway.envoyproxy.io/h2c": "h2c",
    "gateway.envoyproxy.io/ws": "ws",
    "gateway.envoyproxy.io/wss": "wss",
}
_PROXY_VERSIONS: dict[str, Literal[1, 2]] = {"v1": 1, "v2": 2}


class BackendProblem(NamedTuple):
    reason: str  # RefNotPermitted, InvalidKind, BackendNotFound, UnsupportedProtocol
    message: str


@dataclass
class BackendContext:
    """Who is referring: the route (for grants and defaults) and its Gateways (for policies)."""

    index: Index
    policies: BackendTLSPolicies
    route_kind: str
    route_ns: str
    gateways: set[Key]
    protocol: Literal["TCP", "UDP"] = "TCP"
    grpc: bool = False


def resolve(
    ctx: BackendContext, ref: BackendObjectReference, weight: int = 1
) -> tuple[ir.Backend, BackendProblem | None]:
    """Resolve one reference; the Backend is ``invalid`` exactly when a problem is returned."""
    ns = ref.namespace or ctx.route_ns
    name = f"{ns}/{ref.name}:{ref.port}" if ref.port else f"{ns}/{ref.name}"
    found = _resolve(ctx, ref, ns)
    if isinstance(found, BackendProblem):
        return ir.Backend(name=name, weight=weight, invalid=found.message), found
    app, tls = _over_tls(ctx, found.app_protocol, found.tls)
    return ir.Backend(
        name=name,
        weight=weight,
        endpoints=found.endpoints,
        app_protocol=app,
        tls=tls,
        invalid=found.invalid,
        proxy_protocol=found.proxy_protocol,
    ), None


def _over_tls(
    ctx: BackendContext, app: ir.AppProtocol, tls: ir.BackendTLS | None
) -> tuple[ir.AppProtocol, ir.BackendTLS | None]:
    """HTTP/2 to a backend behind TLS is "h2", and its handshake must offer ALPN ``h2``.

    Every reference passes here (a Service port with appProtocol
    ``kubernetes.io/h2c``, any GRPCRoute backend; Envoy Gateway Backends too,
    should they ever carry TLS): a backend spoken to as HTTP/2 over TLS
    negotiates it by ALPN (RFC 9113 section 3.2): a server that
    offers both h2 and http/1.1 picks http/1.1 when the client names nothing,
    and gRPC servers refuse a TLS connection without ALPN h2. L4 routes relay
    the client's bytes untouched, so no ALPN is chosen for them.
    """
    if tls is None or app not in ("h2c", "h2"):
        return app, tls
    if ctx.route_kind in ("HTTPRoute", "GRPCRoute") and tls.alpn != ("h2",):
        tls = msgspec.structs.replace(tls, alpn=("h2",))
    return "h2", tls


def _resolve(
    ctx: BackendContext, ref: BackendObjectReference, ns: str
) -> ir.Backend | BackendProblem:
    kind = (ref.group, ref.kind)
    if kind not in (("", "Service"), (ENVOY_GROUP, "Backend")):
        return BackendProblem("InvalidKind", f"unsupported backend kind {ref.group}/{ref.kind}")
    source = (GATEWAY_GROUP, ctx.route_kind, ctx.route_ns)
    if not ctx.index.ref_allowed(source, (ref.group, ref.kind, ns, ref.name)):
        return BackendProblem(
            "RefNotPermitted",
            f"backend ref to {ref.kind} {ns}/{ref.name} not permitted by any ReferenceGrant",
        )
    if ref.kind == "Backend":
        return _envoy_backend(ctx, ref, ns)
    return _service(ctx, ref, ns)


def _service(
    ctx: BackendContext, ref: BackendObjectReference, ns: str
) -> ir.Backend | BackendProblem:
    service = ctx.index.services.get((ns, ref.name))
    if service is None:
        return BackendProblem("BackendNotFound", f"Service {ns}/{ref.name} not found")
    port = next(
        (p for p in service.spec.ports if p.port == ref.port and p.protocol == ctx.protocol), None
    )
    if port is None:
        return BackendProblem(
            "BackendNotFound",
            f"{ctx.protocol} port {ref.port} not found on Service {ns}/{ref.name}",
        )
    app = _app_protocol(ctx, port.app_protocol)
    if isinstance(app, BackendProblem):
        return app
    if service.spec.type == "ExternalName":
        endpoints: tuple[ir.Endpoint, ...] = (
            ir.Endpoint(kind="fqdn", address=service.spec.external_name or "", port=port.port),
        )
    else:
        endpoints = _slice_endpoints(ctx.index, ns, ref.name, port.name)
    tls, invalid = _policy_tls(ctx, ns, ref.name, port.name)
    return ir.Backend(
        name="",
        endpoints=endpoints,
        app_protocol=app,
        tls=tls,
        invalid=invalid,
        proxy_protocol=proxy_protocol_version(service.metadata.annotations),
    )


def proxy_protocol_version(annotations: dict[str, str]) -> Literal[0, 1, 2]:
    """The PROXY protocol version a Service or Backend asks for; 0 for none."""
    value = annotations.get(PROXY_PROTOCOL_ANNOTATION, "").strip().lower()
    return _PROXY_VERSIONS.get(value, 0)


def _app_protocol(ctx: BackendContext, declared: str | None) -> ir.AppProtocol | BackendProblem:
    if ctx.grpc:
        return "h2c"
    if declared is None or declared in ("http", "HTTP", "kubernetes.io/http"):
        return "http1"
    app = _APP_PROTOCOLS.get(declared)
    if app is None and "/" in declared and ctx.route_kind in ("HTTPRoute", "GRPCRoute"):
        return BackendProblem("UnsupportedProtocol", f"appProtocol {declared!r} is not supported")
    return app or "http1"


def _policy_tls(
    ctx: BackendContext, ns: str, service: str, port_name: str | None
) -> tuple[ir.BackendTLS | None, str | None]:
    state = ctx.policies.for_port(ns, service, port_name)
    if state is None:
        return None, None
    ctx.policies.use(state, ctx.gateways)
    if state.tls is None:
        who = f"{state.policy.metadata.namespace}/{state.policy.metadata.name}"
        return None, f"BackendTLSPolicy {who} has no usable CA certificate"
    return state.tls, None


def _slice_endpoints(
    index: Index, ns: str, service: str, port_name: str | None
) -> tuple[ir.Endpoint, ...]:
    found: list[ir.Endpoint] = []
    for eps in index.slices.get((ns, service), ()):
        number = next((p.port for p in eps.ports if (p.name or None) == port_name), None)
        if number is None:
            continue
        kind: Literal["ip", "fqdn"] = "fqdn" if eps.address_type == "FQDN" else "ip"
        for endpoint in eps.endpoints:
            if endpoint.conditions.ready is False:
                continue
            for address in endpoint.addresses:
                candidate = ir.Endpoint(kind=kind, address=address, port=number)
                if candidate not in found:
                    found.append(candidate)
    return tuple(found)


def _envoy_backend(
    ctx: BackendContext, ref: BackendObjectReference, ns: str
) -> ir.Backend | BackendProblem:
    backend = ctx.index.backends.get((ns, ref.name))
    if backend is None:
        return BackendProblem("BackendNotFound", f"Backend {ns}/{ref.name} not found")
    endpoints = tuple(_envoy_endpoint(e) for e in backend.spec.endpoints)
    app: ir.AppProtocol = "h2c" if ctx.grpc else "http1"
    for declared in backend.spec.app_protocols:
        app = _APP_PROTOCOLS.get(declared, app)
    return ir.Backend(
        name="",
        endpoints=endpoints,
        app_protocol=app,
        proxy_protocol=proxy_protocol_version(backend.metadata.annotations),
    )


def _envoy_endpoint(endpoint: api.envoy.BackendEndpoint) -> ir.Endpoint:
    if endpoint.ip is not None:
        return ir.Endpoint(kind="ip", address=endpoint.ip.address, port=endpoint.ip.port)
    if endpoint.fqdn is not None:
        return ir.Endpoint(kind="fqdn", address=endpoint.fqdn.hostname, port=endpoint.fqdn.port)
    assert endpoint.unix is not None  # the api model guarantees exactly one is set
    return ir.Endpoint(kind="unix", address=endpoint.unix.path)


def policy_backend(
    index: Index,
    policies: BackendTLSPolicies,
    namespace: str,
    refs: tuple[BackendObjectReference, ...],
    https: ir.BackendTLS | None,
) -> ir.Backend | str:
    """The one backend a SecurityPolicy names for a provider it calls (a remote JWKS, an OIDC
    token endpoint), or what is wrong with ``refs`` (the message, with its field suffix).

    ``https`` is the TLS to use when the provider's URL is https and no BackendTLSPolicy
    covers the backend, as Envoy Gateway does.
    """
    if len(refs) > 1:
        return "backendRefs: only one backendRef is implemented"
    ctx = BackendContext(
        index=index, policies=policies, route_kind="SecurityPolicy", route_ns=namespace,
        gateways=set(),
    )  # fmt: skip
    backend, problem = resolve(ctx, refs[0])
    if problem is not None:
        return f"backendRefs[0]: {problem.message}"
    if backend.tls is None and https is not None:
        backend = ir.Backend(name=backend.name, endpoints=backend.endpoints, tls=https)
    return backend
