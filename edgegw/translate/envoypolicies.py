"""The three Envoy Gateway policy kinds, attached and applied to rules and listeners.

``translate.policies`` decides which policy serves which slot; this module
holds one ``PolicyAttachments`` per kind and writes the winner into the IR:
a rule's ``security`` and ``traffic`` (plus the BackendTrafficPolicy's
timeout and retry where the route set none of its own, and a SecurityPolicy's
CORS as the rule's first filter), a listener's ``client_policy``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import msgspec

from edgegw import ir
from edgegw.api.envoypolicies import EnvoyPolicy
from edgegw.api.meta import Object
from edgegw.translate.backendtls import BackendTLSPolicies
from edgegw.translate.clientconvert import Problem
from edgegw.translate.index import Index, Key
from edgegw.translate.listeners import ListenerState
from edgegw.translate.policies import LISTENER, ROUTE, RULE, PolicyAttachments, PolicyState
from edgegw.translate.policyconvert import (
    BackendTraffic,
    Security,
    SecurityConverter,
    backend_traffic,
    client_policy,
)

_T = TypeVar("_T")


def _safe(convert: Callable[[Any], _T]) -> Callable[[EnvoyPolicy], tuple[_T | None, str | None]]:
    def run(policy: EnvoyPolicy) -> tuple[_T | None, str | None]:
        try:
            return convert(policy), None
        except Problem as exc:
            return None, str(exc)

    return run


class EnvoyPolicies:
    """ClientTrafficPolicy, BackendTrafficPolicy and SecurityPolicy of one translation."""

    def __init__(self, index: Index, tls: BackendTLSPolicies, ours: set[Key]) -> None:
        res = index.resources
        self.client: PolicyAttachments[ir.ClientPolicy] = PolicyAttachments(
            index, res.client_traffic_policies, ours, _safe(client_policy), routes_too=False
        )
        self.backend: PolicyAttachments[BackendTraffic] = PolicyAttachments(
            index, res.backend_traffic_policies, ours, _safe(backend_traffic)
        )
        self.security: PolicyAttachments[Security] = PolicyAttachments(
            index, res.security_policies, ours, _safe(SecurityConverter(index, tls))
        )

    def client_policy(self, listener: ListenerState) -> ir.ClientPolicy | None:
        state = self.client.for_listener(listener.gateway_key, listener.spec.name)
        policy = state.resolved if state is not None else None
        if policy is not None and policy.default_host == "":  # http10.useDefaultHost
            host = listener.spec.hostname
            default = host if host and not host.startswith("*") else None
            policy = msgspec.structs.replace(policy, default_host=default)
        return policy

    def rules(
        self,
        route: Object,
        kind: str,
        listener: ListenerState,
        rules: tuple[ir.HTTPRouteRule, ...],
    ) -> tuple[ir.HTTPRouteRule, ...]:
        """The rules as served on ``listener``, each with the policies that apply there."""
        ident = (kind, route.metadata.namespace or "", route.metadata.name)
        gateway, section = listener.gateway_key, listener.spec.name
        out = []
        for rule in rules:
            security = self.security.for_rule(ident, rule.name, gateway, section)
            traffic = self.backend.for_rule(ident, rule.name, gateway, section)
            if security is not None:
                rule = _with_security(rule, security.name, security.resolved, security.problem)
            if traffic is not None and traffic.resolved is not None:
                where = self._cluster_scope(traffic, ident, rule.name, listener)
                resolved = _with_route_host(traffic.resolved, route)
                rule = _with_traffic(rule, resolved, ident, where)
            out.append(rule)
        return tuple(out)

    def _cluster_scope(
        self,
        traffic: PolicyState[BackendTraffic],
        route: tuple[str, str, str],
        rule: str | None,
        listener: ListenerState,
    ) -> str:
        """ "" for a route's own policy; "@gateway" or "@gateway/listener" for one it inherits.

        Envoy Gateway runs one proxy per Gateway, so health and limits inherited from a
        Gateway or listener are kept apart per Gateway (or listener) here too.
        """
        slots = self.backend.slots
        kind, ns, name = route
        if slots.get((RULE, kind, ns, name, rule)) is traffic:
            return ""
        if slots.get((ROUTE, kind, ns, name, None)) is traffic:
            return ""
        gw_ns, gw_name = listener.gateway_key
        if slots.get((LISTENER, "Gateway", gw_ns, gw_name, listener.spec.name)) is traffic:
            return f"@{gw_ns}/{gw_name}/{listener.spec.name}"
        return f"@{gw_ns}/{gw_name}"

    def statuses(self, controller: str) -> Iterator[tuple[EnvoyPolicy, dict[str, Any]]]:
        yield from self.client.statuses(controller)
        yield from self.backend.statuses(controller)
        yield from self.security.statuses(controller)


def _with_security(
    rule: ir.HTTPRouteRule, name: str, resolved: Security | None, problem: str | None
) -> ir.HTTPRouteRule:
    if resolved is None:  # an auth policy that cannot be enforced fails closed
        why = f"SecurityPolicy {name} is not accepted: {problem}"
        return msgspec.structs.replace(rule, invalid=rule.invalid or why)
    filters = rule.filters
    if resolved.cors is not None:
        filters = (resolved.cors, *(f for f in filters if not isinstance(f, ir.CORSFilter)))
    return msgspec.structs.replace(rule, security=resolved.security, filters=filters)


def _with_traffic(
    rule: ir.HTTPRouteRule, traffic: BackendTraffic, route: tuple[str, str, str], where: str
) -> ir.HTTPRouteRule:
    changes: dict[str, Any] = {}
    policy = traffic.traffic
    if policy.compression or policy.rate_limits or policy.hash_on or policy.fault:
        changes["traffic"] = policy
    if traffic.load_balancer is not None or traffic.cluster is not None:
        changes["backends"] = tuple(
            _backend(b, traffic, route, rule.index, where) for b in rule.backends
        )
    if rule.request_timeout is None and traffic.timeout_set:
        changes["request_timeout"] = traffic.request_timeout
    if rule.retry is None and traffic.retry is not None:
        changes["retry"] = traffic.retry
        if rule.backend_request_timeout is None and traffic.per_try_timeout:
            changes["backend_request_timeout"] = traffic.per_try_timeout
    return msgspec.structs.replace(rule, **changes)


def _with_route_host(traffic: BackendTraffic, route: Object) -> BackendTraffic:
    """An HTTP health check without ``hostname`` sends the route's hostname, as Envoy Gateway."""
    cluster = traffic.cluster
    active = cluster.active if cluster is not None else None
    if cluster is None or active is None or active.kind != "HTTP" or active.host:
        return traffic
    hostnames = getattr(getattr(route, "spec", None), "hostnames", ())
    host = next((h for h in hostnames if not h.startswith("*")), "")
    if not host:
        return traffic
    active = msgspec.structs.replace(active, host=host)
    return dataclasses.replace(traffic, cluster=msgspec.structs.replace(cluster, active=active))


def _backend(
    backend: ir.Backend,
    traffic: BackendTraffic,
    route: tuple[str, str, str],
    index: int,
    where: str,
) -> ir.Backend:
    """The backend with the policy's load balancer and its own cluster (Envoy Gateway's
    cluster is per route rule: ``httproute/namespace/name/rule/N``)."""
    changes: dict[str, Any] = {}
    if traffic.load_balancer is not None:
        changes["load_balancer"] = traffic.load_balancer
    if traffic.cluster is not None and backend.invalid is None:
        kind, ns, name = route
        cluster = f"{kind.lower()}/{ns}/{name}/rule/{index}/{backend.name}{where}"
        changes["cluster"] = msgspec.structs.replace(traffic.cluster, cluster=cluster)
    return msgspec.structs.replace(backend, **changes)
