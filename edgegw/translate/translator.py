"""``translate()``: the walk from resources to IR and statuses, in dependency order.

1. GatewayClasses: only those naming our controller are served.
2. Gateways of those classes: addresses, listeners (validity, conflicts),
   then sockets across Gateways (PortUnavailable); their conditions settle
   here, before any route is looked at, because attachment depends on them.
3. Routes of every kind: backends and filters once per route, then each
   parentRef attaches it to listeners; attached routes are copied into each
   programmed listener with the hostnames that listener and route share.
4. The IR groups programmed listeners into one Port per bound socket; the
   statuses are written last, once attachedRoutes and policy ancestors are known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from edgegw import api, ir
from edgegw.api.meta import Object
from edgegw.translate.backends import BackendContext, resolve
from edgegw.translate.backendtls import BackendTLSPolicies
from edgegw.translate.envoypolicies import EnvoyPolicies
from edgegw.translate.gateways import (
    GatewayState,
    build_gateway,
    claim_ports,
    class_status,
    finish_gateway,
    gateway_status,
    our_gateways,
)
from edgegw.translate.httproutes import grpc_rules, http_rules
from edgegw.translate.index import Index, Key, key_of, precedence
from edgegw.translate.listeners import ListenerState, is_programmed
from edgegw.translate.listenersets import finish_listener_set, merge_listener_sets
from edgegw.translate.result import ResourceStatus, TranslateOptions, TranslateResult
from edgegw.translate.routes import (
    ParentResult,
    RouteProblems,
    attach,
    finish_parent,
    our_parents,
    parent_status,
)

_R = TypeVar("_R", bound=Object)
Payload = tuple[ir.HTTPRouteRule, ...] | tuple[ir.Backend, ...]


def _status(obj: Object, status: dict[str, Any]) -> ResourceStatus:
    meta = obj.metadata
    return ResourceStatus(
        api_version=obj.api_version,
        kind=obj.kind,
        name=meta.name,
        namespace=meta.namespace,
        generation=meta.generation,
        status=status,
    )


class _Translation:
    """The state of one ``translate()`` call; never outlives it."""

    def __init__(self, resources: api.Resources, options: TranslateOptions) -> None:
        self.options = options
        self.index = Index(resources)
        self.policies = BackendTLSPolicies(self.index)
        self.gateways = [
            build_gateway(self.index, gw, options)
            for gw in our_gateways(self.index, options.controller_name)
        ]
        self.by_key: dict[Key, GatewayState] = {gw.key: gw for gw in self.gateways}
        self.listener_sets = merge_listener_sets(self.index, self.by_key, options.now)
        claim_ports(self.gateways)
        for state in self.gateways:
            finish_gateway(state)
        for listener_set in self.listener_sets:
            finish_listener_set(listener_set)
        self.sets_by_key = {ls.key: ls for ls in self.listener_sets}
        self.envoy = EnvoyPolicies(self.index, self.policies, set(self.by_key))

    def route(
        self,
        route: _R,
        kind: str,
        hostnames: tuple[str, ...] | None,
        convert: Callable[[BackendContext, _R, RouteProblems], Payload],
        protocol: str = "TCP",
    ) -> ResourceStatus | None:
        spec_refs = route.spec.parent_refs  # type: ignore[attr-defined]
        parents = our_parents(route, spec_refs, self.by_key, self.sets_by_key)
        if not parents:
            return None
        problems = RouteProblems()
        ctx = BackendContext(
            index=self.index,
            policies=self.policies,
            route_kind=kind,
            route_ns=route.metadata.namespace or "",
            gateways={p.gateway.key for p in parents},
            protocol="UDP" if protocol == "UDP" else "TCP",
            grpc=kind == "GRPCRoute",
        )
        payload = convert(ctx, route, problems)
        results = [attach(self.index, route, kind, hostnames, p) for p in parents]
        for result in results:
            finish_parent(result, problems)
            self._place(route, kind, result, payload)
        parent_statuses = [parent_status(route, r, self.options.controller_name) for r in results]
        return _status(route, {"parents": parent_statuses})

    def _place(self, route: Object, kind: str, result: ParentResult, payload: Payload) -> None:
        ident = (kind, route.metadata.namespace or "", route.metadata.name)
        for listener, hosts in result.attached:
            if ident in listener.attached:
                continue
            listener.attached.add(ident)
            if is_programmed(listener):
                served = payload
                if kind in ("HTTPRoute", "GRPCRoute"):  # each listener under its own policies
                    served = self.envoy.rules(route, kind, listener, payload)  # type: ignore[arg-type]
                _add_to_listener(listener, route, kind, hosts, served, result.gateway)

    def model(self) -> ir.Model:
        ports: dict[tuple[str, str, int], list[ir.Listener]] = {}
        for gw in self.gateways:
            for state in gw.all_listeners:
                if not is_programmed(state):
                    continue
                listener = _ir_listener(state, self.envoy.client_policy(state))
                for address in gw.addresses:
                    key = (state.transport, address, state.spec.port)
                    ports.setdefault(key, []).append(listener)
        return ir.Model(
            generation=self.options.generation,
            ports=tuple(
                ir.Port(transport=t, address=a, port=p, listeners=tuple(ls))  # type: ignore[arg-type]
                for (t, a, p), ls in sorted(ports.items())
            ),
        )


def _add_to_listener(
    listener: ListenerState,
    route: Object,
    kind: str,
    hosts: tuple[str, ...],
    payload: Payload,
    gateway: GatewayState,
) -> None:
    ns, name = route.metadata.namespace or "", route.metadata.name
    if kind in ("HTTPRoute", "GRPCRoute"):
        rules: tuple[ir.HTTPRouteRule, ...] = payload  # type: ignore[assignment]
        if gateway.client_cert is not None:
            rules = tuple(_rule_with_client_cert(r, gateway) for r in rules)
        listener.http_routes.append(
            ir.HTTPRoute(
                namespace=ns,
                name=name,
                kind=kind,  # type: ignore[arg-type]
                hostnames=hosts,
                rules=rules,
                precedence=precedence(route),
            )
        )
        return
    backends: tuple[ir.Backend, ...] = payload  # type: ignore[assignment]
    if listener.tls is not None and listener.tls.mode == "Passthrough":
        # the client's TLS session reaches the backend untouched: no TLS of ours to it
        backends = tuple(msgspec.structs.replace(b, tls=None) for b in backends)
    elif gateway.client_cert is not None:
        backends = tuple(_backend_with_client_cert(b, gateway) for b in backends)
    listener.l4_routes.append(
        ir.L4Route(
            namespace=ns,
            name=name,
            kind=kind,  # type: ignore[arg-type]
            hostnames=hosts,
            backends=backends,
            precedence=precedence(route),
        )
    )


def _backend_with_client_cert(backend: ir.Backend, gateway: GatewayState) -> ir.Backend:
    pair = gateway.client_cert
    if backend.tls is None or pair is None:
        return backend
    tls = msgspec.structs.replace(
        backend.tls, client_cert_pem=pair.chain_pem, client_key_pem=pair.key_pem
    )
    return msgspec.structs.replace(backend, tls=tls)


def _rule_with_client_cert(rule: ir.HTTPRouteRule, gateway: GatewayState) -> ir.HTTPRouteRule:
    backends = tuple(_backend_with_client_cert(b, gateway) for b in rule.backends)
    return msgspec.structs.replace(rule, backends=backends)


def _ir_listener(state: ListenerState, client_policy: ir.ClientPolicy | None) -> ir.Listener:
    spec = state.spec
    return ir.Listener(
        gateway_namespace=state.gateway.metadata.namespace or "",
        gateway_name=state.gateway.metadata.name,
        name=spec.name,
        protocol=spec.protocol,  # type: ignore[arg-type]
        port=spec.port,
        hostname=spec.hostname,
        listener_set="/".join(key_of(state.listener_set)) if state.listener_set else None,
        tls=state.tls,
        http_routes=tuple(sorted(state.http_routes, key=lambda r: r.precedence)),
        l4_routes=tuple(sorted(state.l4_routes, key=lambda r: r.precedence)),
        proxy_protocol_accept=accepts_proxy_protocol(state)
        or (client_policy is not None and client_policy.proxy_protocol),
        client_policy=client_policy,
    )


ACCEPT_PROXY_PROTOCOL_ANNOTATION = "edgegw.io/accept-proxy-protocol"
_PROXY_PROTOCOL_LISTENERS = frozenset({"TCP", "TLS", "HTTP", "HTTPS"})


def accepts_proxy_protocol(state: ListenerState) -> bool:
    """Whether a listener reads a PROXY protocol header before anything else.

    The Gateway annotation ``edgegw.io/accept-proxy-protocol`` is ``"true"``
    (every TCP-based listener of the Gateway: TCP, TLS, HTTP, HTTPS) or a
    comma-separated list of listener names. UDP listeners never do.
    """
    if state.spec.protocol not in _PROXY_PROTOCOL_LISTENERS:
        return False
    value = state.gateway.metadata.annotations.get(ACCEPT_PROXY_PROTOCOL_ANNOTATION, "")
    names = {part.strip() for part in value.split(",")}
    return value.strip().lower() == "true" or state.spec.name in names


def _l4_backends(
    ctx: BackendContext,
    route: api.TLSRoute | api.TCPRoute | api.UDPRoute,
    problems: RouteProblems,
) -> tuple[ir.Backend, ...]:
    out = []
    for rule in route.spec.rules:
        for ref in rule.backend_refs:
            backend, problem = resolve(ctx, ref, ref.weight)
            if problem is not None:
                problems.unresolved(problem.reason, problem.message)
            out.append(backend)
    return tuple(out)


def translate(resources: api.Resources, options: TranslateOptions) -> TranslateResult:
    """Translate every loaded resource into the IR and the statuses.

    Args:
        resources: everything loaded from the config directory.
        options: the controller name, addresses and other outside facts.

    Returns:
        The IR the data plane serves and one status per resource we manage.
    """
    run = _Translation(resources, options)
    statuses: list[ResourceStatus] = [
        _status(gc, class_status(gc))
        for gc in resources.gateway_classes
        if gc.spec.controller_name == options.controller_name
    ]
    routes: list[ResourceStatus | None] = []
    routes += [
        run.route(r, "HTTPRoute", r.spec.hostnames, http_rules) for r in resources.http_routes
    ]
    routes += [
        run.route(r, "GRPCRoute", r.spec.hostnames, grpc_rules) for r in resources.grpc_routes
    ]
    routes += [
        run.route(r, "TLSRoute", r.spec.hostnames, _l4_backends) for r in resources.tls_routes
    ]
    routes += [run.route(r, "TCPRoute", None, _l4_backends) for r in resources.tcp_routes]
    routes += [run.route(r, "UDPRoute", None, _l4_backends, "UDP") for r in resources.udp_routes]
    statuses += [_status(gw.gateway, gateway_status(gw)) for gw in run.gateways]
    statuses += [_status(ls.listener_set, ls.status()) for ls in run.listener_sets]
    statuses += [s for s in routes if s is not None]
    statuses += [_status(p, s) for p, s in run.policies.statuses(options.controller_name)]
    model = run.model()
    statuses += [_status(p, s) for p, s in run.envoy.statuses(options.controller_name)]
    return TranslateResult(model=model, statuses=tuple(statuses))
