"""Listener validation: protocols, route kinds, TLS, and conflicts within a Gateway.

Each listener is judged on its own first (is its protocol supported, do its
certificate references resolve, which route kinds may attach), then against
its siblings: listeners that cannot be told apart are Conflicted and none of
them is accepted, as the spec requires ("MUST NOT pick one conflicting
Listener as the winner").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgegw import api, ir
from edgegw.translate.conditions import (
    ACCEPTED,
    CONFLICTED,
    PROGRAMMED,
    RESOLVED_REFS,
    Conditions,
)
from edgegw.translate.index import GATEWAY_GROUP, Index, Key
from edgegw.translate.tls import frontend_validation, listener_certificates

# which route kinds each protocol serves
ROUTE_KINDS: dict[str, tuple[str, ...]] = {
    "HTTP": ("HTTPRoute", "GRPCRoute"),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
    "TLS": ("TLSRoute",),
    "TCP": ("TCPRoute",),
    "UDP": ("UDPRoute",),
}
# listeners on one port must share a family: HTTP, the TLS family (HTTPS + TLS), TCP
_FAMILY = {"HTTP": "HTTP", "HTTPS": "TLS", "TLS": "TLS", "TCP": "TCP", "UDP": "UDP"}


@dataclass
class ListenerState:
    """A listener being translated: its verdict so far and the routes it collects."""

    gateway: api.Gateway
    spec: api.gateway.Listener
    conditions: Conditions
    listener_set: api.ListenerSet | None = None  # the set that brought it, if not the Gateway
    kinds: tuple[str, ...] = ()
    tls: ir.ListenerTLS | None = None
    attached: set[tuple[str, str, str]] = field(default_factory=set)
    http_routes: list[ir.HTTPRoute] = field(default_factory=list)
    l4_routes: list[ir.L4Route] = field(default_factory=list)
    usable: bool = True  # False when it cannot be programmed whatever else happens

    @property
    def gateway_key(self) -> Key:
        return (self.gateway.metadata.namespace or "", self.gateway.metadata.name)

    @property
    def owner(self) -> api.Gateway | api.ListenerSet:
        """The resource whose spec holds this listener: its namespace is "Same"."""
        return self.listener_set or self.gateway

    @property
    def transport(self) -> str:
        return "udp" if self.spec.protocol == "UDP" else "tcp"

    @property
    def accepted(self) -> bool:
        return self.conditions.is_ok(ACCEPTED)

    def status(self) -> dict[str, Any]:
        """The ListenerStatus entry for the Gateway's status."""
        return {
            "name": self.spec.name,
            "supportedKinds": [{"group": GATEWAY_GROUP, "kind": k} for k in self.kinds],
            "attachedRoutes": len(self.attached),
            "conditions": self.conditions.to_list(),
        }


def build_listeners(index: Index, gateway: api.Gateway, now: float | None) -> list[ListenerState]:
    """Judge every listener of ``gateway``, then mark the indistinct ones Conflicted."""
    states = [judge(index, gateway, spec, now) for spec in gateway.spec.listeners]
    _mark_conflicts([s for s in states if s.accepted])
    return states


def judge(
    index: Index,
    gateway: api.Gateway,
    spec: api.gateway.Listener,
    now: float | None,
    listener_set: api.ListenerSet | None = None,
) -> ListenerState:
    """One listener on its own: protocol, route kinds and TLS references."""
    owner = listener_set or gateway
    state = ListenerState(
        gateway=gateway,
        spec=spec,
        conditions=Conditions(owner.metadata.generation),
        listener_set=listener_set,
    )
    supported = ROUTE_KINDS.get(spec.protocol)
    if supported is None:
        state.conditions.fail(
            ACCEPTED, "UnsupportedProtocol", f"protocol {spec.protocol} is not supported"
        )
        state.usable = False
        return state
    _route_kinds(state, supported)
    if spec.protocol in ("HTTPS", "TLS"):
        _tls(index, state, now)
    return state


def _route_kinds(state: ListenerState, supported: tuple[str, ...]) -> None:
    wanted = state.spec.allowed_routes.kinds
    if not wanted:
        state.kinds = supported
        return
    kinds = [k.kind for k in wanted if k.group == GATEWAY_GROUP and k.kind in supported]
    state.kinds = tuple(dict.fromkeys(kinds))
    bad = [f"{k.group}/{k.kind}" for k in wanted if k.kind not in kinds or k.group != GATEWAY_GROUP]
    if bad:
        state.conditions.fail(
            RESOLVED_REFS,
            "InvalidRouteKinds",
            f"route kinds {', '.join(bad)} are not supported on a {state.spec.protocol} listener",
        )
    if not state.kinds:
        state.usable = False


def _tls(index: Index, state: ListenerState, now: float | None) -> None:
    config = state.spec.tls
    if config is None:
        state.conditions.fail(ACCEPTED, "Invalid", f"a {state.spec.protocol} listener needs tls")
        state.usable = False
        return
    if config.mode == "Passthrough":
        state.tls = ir.ListenerTLS(mode="Passthrough")
        return
    certs, problem = listener_certificates(index, state.owner, config, now)
    if problem is not None:
        state.conditions.fail(RESOLVED_REFS, problem.reason, problem.message)
    if not certs:
        state.usable = False
    validation, ca_problem = frontend_validation(index, state.gateway, state.spec.port)
    if ca_problem is not None:
        state.conditions.fail(RESOLVED_REFS, ca_problem.reason, ca_problem.message)
        if validation is None:
            state.conditions.fail(ACCEPTED, "NoValidCACertificate", ca_problem.message)
    state.tls = ir.ListenerTLS(mode="Terminate", certificates=certs, frontend_validation=validation)


def _mark_conflicts(states: list[ListenerState]) -> None:
    by_port: dict[tuple[str, int], list[ListenerState]] = {}
    for state in states:
        by_port.setdefault((state.transport, state.spec.port), []).append(state)
    for group in by_port.values():
        families = {_FAMILY[s.spec.protocol] for s in group}
        if len(families) > 1:
            for state in group:
                mark_conflicted(
                    state, "ProtocolConflict", "listeners on this port use different protocols"
                )
            continue
        family = families.pop()
        if family in ("TCP", "UDP") and len(group) > 1:
            for state in group:
                mark_conflicted(
                    state, "ProtocolConflict", f"only one {family} listener fits a port"
                )
            continue
        _hostname_conflicts(group)


def conflict_with(earlier: list[ListenerState], state: ListenerState) -> tuple[str, str] | None:
    """Why ``state`` cannot share the Gateway with the accepted ``earlier`` listeners, if so.

    ListenerSet listeners are merged after the Gateway's own in precedence
    order; the first of two conflicting listeners keeps its place.
    """
    for other in earlier:
        if other.transport != state.transport or other.spec.port != state.spec.port:
            continue
        family = _FAMILY[state.spec.protocol]
        if _FAMILY[other.spec.protocol] != family:
            return ("ProtocolConflict", f"{_where(other)} uses {other.spec.protocol} on this port")
        if family in ("TCP", "UDP"):
            return ("ProtocolConflict", f"{_where(other)} already has this {family} port")
        if (other.spec.hostname or "") == (state.spec.hostname or ""):
            shown = state.spec.hostname or "(none)"
            return ("HostnameConflict", f"{_where(other)} has hostname {shown} on this port")
    return None


def _where(state: ListenerState) -> str:
    owner = state.owner
    return f"listener {state.spec.name} of {owner.kind} {owner.metadata.name}"


def _hostname_conflicts(group: list[ListenerState]) -> None:
    seen: dict[str, list[ListenerState]] = {}
    for state in group:
        seen.setdefault(state.spec.hostname or "", []).append(state)
    for host, same in seen.items():
        if len(same) > 1:
            for state in same:
                shown = host or "(none)"
                mark_conflicted(
                    state, "HostnameConflict", f"another listener on this port has hostname {shown}"
                )


def mark_conflicted(state: ListenerState, reason: str, message: str) -> None:
    """Conflicted=True, and neither Accepted nor Programmed."""
    state.conditions.set(CONFLICTED, True, reason, message)
    state.conditions.fail(ACCEPTED, reason, message)
    state.conditions.fail(PROGRAMMED, reason, message)
    state.usable = False


def finish(state: ListenerState, programmable: bool, why_not: str) -> None:
    """Settle Accepted, Programmed and ResolvedRefs once nothing else can change them.

    ``programmable`` is False when the Gateway as a whole cannot be served
    (not accepted, no address); ``why_not`` says why.
    """
    conds = state.conditions
    conds.default(ACCEPTED, True, "Accepted", "Listener is valid")
    conds.default(RESOLVED_REFS, True, "ResolvedRefs", "All references resolved")
    if not conds.is_ok(ACCEPTED) or not state.usable:
        conds.fail(PROGRAMMED, "Invalid", "Listener is invalid, see other conditions")
    elif not programmable:
        conds.fail(PROGRAMMED, "Invalid", why_not)
    conds.default(PROGRAMMED, True, "Programmed", "Listener is programmed")


def is_programmed(state: ListenerState) -> bool:
    return state.conditions.is_ok(PROGRAMMED) and state.conditions.get(PROGRAMMED) is not None
