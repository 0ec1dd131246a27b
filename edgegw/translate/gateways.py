"""GatewayClasses and Gateways: which are ours, where they bind, and their status.

A Gateway binds the addresses a pool gave it (decided by the caller), else its
``spec.addresses`` IPAddress values, else the default addresses. Two Gateways
cannot share a socket: the listener of the later Gateway (namespace/name
order) that wants an address and port already taken is PortUnavailable.
A wildcard address (0.0.0.0, ::) takes the port on every address of its family.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgegw import api
from edgegw.translate.conditions import (
    ACCEPTED,
    INSECURE_FRONTEND,
    PROGRAMMED,
    RESOLVED_REFS,
    Conditions,
)
from edgegw.translate.index import Index, Key, key_of
from edgegw.translate.listeners import ListenerState, build_listeners, finish
from edgegw.translate.staticaddr import announced_pools, unusable
from edgegw.translate.tls import RefProblem, client_certificate

if TYPE_CHECKING:
    from edgegw.certs import KeyPair
    from edgegw.translate.result import TranslateOptions


@dataclass
class GatewayState:
    gateway: api.Gateway
    conditions: Conditions
    listeners: list[ListenerState]
    addresses: tuple[str, ...] = ()
    client_cert: KeyPair | None = None
    unprogrammed: tuple[str, str] | None = None  # (reason, message) keeping it unprogrammed
    # listeners merged in from ListenerSets, in precedence order (listenersets.py)
    set_listeners: list[ListenerState] = field(default_factory=list)
    listener_set_count: int = 0  # ListenerSets naming this Gateway, taken or not
    attached_listener_sets: int = 0  # of those, the accepted ones

    @property
    def all_listeners(self) -> list[ListenerState]:
        """The Gateway's own listeners, then those its ListenerSets add."""
        return self.listeners + self.set_listeners

    @property
    def key(self) -> Key:
        return key_of(self.gateway)

    @property
    def accepted(self) -> bool:
        return self.conditions.is_ok(ACCEPTED)


def class_status(gateway_class: api.GatewayClass) -> dict[str, Any]:
    conds = Conditions(gateway_class.metadata.generation)
    conds.set(ACCEPTED, True, "Accepted", "GatewayClass is accepted by this controller")
    return {"conditions": conds.to_list()}


def our_gateways(index: Index, controller: str) -> list[api.Gateway]:
    """Gateways of a GatewayClass we serve, in namespace/name order."""
    ours = {
        name for name, gc in index.gateway_classes.items() if gc.spec.controller_name == controller
    }
    found = [gw for gw in index.resources.gateways if gw.spec.gateway_class_name in ours]
    return sorted(found, key=key_of)


def build_gateway(index: Index, gateway: api.Gateway, options: TranslateOptions) -> GatewayState:
    state = GatewayState(
        gateway=gateway,
        conditions=Conditions(gateway.metadata.generation),
        listeners=build_listeners(index, gateway, options.now),
    )
    _addresses(state, options)
    _static_addresses(index, state, options)
    _parameters(state)
    _insecure_frontend(state)
    found = client_certificate(index, gateway, options.now)
    if isinstance(found, RefProblem):
        state.conditions.fail(RESOLVED_REFS, found.reason, found.message)
    else:
        state.client_cert = found
    return state


def _addresses(state: GatewayState, options: TranslateOptions) -> None:
    gw = state.gateway
    unsupported = [a.type for a in gw.spec.addresses if a.type != "IPAddress"]
    if unsupported:
        state.conditions.fail(
            ACCEPTED, "UnsupportedAddress", f"address type {unsupported[0]} is not supported"
        )
        return
    pools = options.pool_assignments or {}
    assignment = pools.get((gw.metadata.namespace or "", gw.metadata.name))
    if assignment is not None:
        state.addresses = assignment.addresses
        if assignment.reason:
            state.unprogrammed = (assignment.reason, assignment.message)
        return
    static = tuple(a.value for a in gw.spec.addresses if a.value)
    state.addresses = static or options.default_addresses
    if not state.addresses:
        state.unprogrammed = ("AddressNotAssigned", "no address to bind")


def _static_addresses(index: Index, state: GatewayState, options: TranslateOptions) -> None:
    gw = state.gateway
    if not state.accepted or not gw.spec.addresses:
        return
    assignment = (options.pool_assignments or {}).get(state.key)
    pool_of = assignment.pools if assignment is not None else {}
    bad = unusable(gw, pool_of, announced_pools(index), options.local_addresses)
    if bad and state.unprogrammed is None:
        state.unprogrammed = (
            "AddressNotUsable",
            f"address {', '.join(bad)} is neither on an interface of this host nor in an "
            "IPAddressPool that an L2Advertisement announces: add it to one, or remove it",
        )


def _parameters(state: GatewayState) -> None:
    """edgegw reads no infrastructure parameters: a reference to any is not silently ignored."""
    infra = state.gateway.spec.infrastructure
    ref = infra.parameters_ref if infra is not None else None
    if ref is not None:
        state.conditions.fail(
            ACCEPTED,
            "InvalidParameters",
            f"spec.infrastructure.parametersRef: {ref.group}/{ref.kind} {ref.name} is not a "
            "kind edgegw reads (it takes no infrastructure parameters)",
        )


def _insecure_frontend(state: GatewayState) -> None:
    """Say so when client certificates may be missing or invalid on some port."""
    tls = state.gateway.spec.tls
    frontend = tls.frontend if tls is not None else None
    if frontend is None:
        return
    configs = [frontend.default, *(p.tls for p in frontend.per_port)]
    ports = [
        "default" if i == 0 else str(frontend.per_port[i - 1].port)
        for i, c in enumerate(configs)
        if c.validation is not None and c.validation.mode == "AllowInsecureFallback"
    ]
    if ports:
        state.conditions.set(
            INSECURE_FRONTEND,
            True,
            "ConfigurationChanged",
            f"client certificates are requested, not required ({', '.join(ports)}): "
            "clients without a valid one are let through",
        )


def _overlaps(a: str, b: str) -> bool:
    if a == b:
        return True
    ip_a, ip_b = ipaddress.ip_address(a), ipaddress.ip_address(b)
    return ip_a.version == ip_b.version and (ip_a.is_unspecified or ip_b.is_unspecified)


def claim_ports(gateways: list[GatewayState]) -> None:
    """Mark listeners PortUnavailable where an earlier Gateway already holds the socket."""
    claims: list[tuple[str, str, int, Key]] = []
    for gw in gateways:
        if not gw.accepted or gw.unprogrammed:
            continue
        for listener in gw.all_listeners:
            if not listener.accepted or not listener.usable:
                continue
            taken = _taken_by(claims, gw, listener)
            if taken is not None:
                msg = f"port {listener.spec.port} on {taken[0]} is used by Gateway {taken[1]}"
                listener.conditions.fail(ACCEPTED, "PortUnavailable", msg)
                listener.conditions.fail(PROGRAMMED, "PortUnavailable", msg)
                continue
            for address in gw.addresses:
                claims.append((listener.transport, address, listener.spec.port, gw.key))


def _taken_by(
    claims: list[tuple[str, str, int, Key]], gw: GatewayState, listener: ListenerState
) -> tuple[str, str] | None:
    for transport, address, port, owner in claims:
        if owner == gw.key or transport != listener.transport or port != listener.spec.port:
            continue
        for mine in gw.addresses:
            if _overlaps(mine, address):
                return (address, "/".join(owner))
    return None


def finish_gateway(state: GatewayState) -> None:
    """Settle the Gateway's and its listeners' conditions."""
    conds = state.conditions
    bad = [ls.spec.name for ls in state.listeners if not ls.accepted]
    if conds.is_ok(ACCEPTED) and bad:
        some_ok = len(bad) < len(state.listeners)
        conds.set(ACCEPTED, some_ok, "ListenersNotValid", f"invalid listeners: {', '.join(bad)}")
    conds.default(ACCEPTED, True, "Accepted", "Gateway is accepted")
    if not state.accepted:
        conds.fail(PROGRAMMED, "Invalid", "Gateway is not accepted")
    elif state.unprogrammed is not None:
        conds.fail(PROGRAMMED, *state.unprogrammed)
    conds.default(PROGRAMMED, True, "Programmed", "Gateway is programmed")
    why_not = "the Gateway is not programmed"
    programmable = conds.is_ok(PROGRAMMED)
    for listener in state.listeners:
        finish(listener, programmable, why_not)
    unresolved = [ls.spec.name for ls in state.listeners if not ls.conditions.is_ok(RESOLVED_REFS)]
    if unresolved:
        conds.fail(
            RESOLVED_REFS, "ListenersNotResolved", f"unresolved listeners: {', '.join(unresolved)}"
        )
    conds.default(RESOLVED_REFS, True, "ResolvedRefs", "All references resolved")


def gateway_status(state: GatewayState) -> dict[str, Any]:
    programmed = state.conditions.is_ok(PROGRAMMED)
    addresses = state.addresses if programmed else ()
    status: dict[str, Any] = {
        "addresses": [{"type": "IPAddress", "value": a} for a in addresses],
        "conditions": state.conditions.to_list(),
        "listeners": [ls.status() for ls in state.listeners],
    }
    if state.gateway.spec.allowed_listeners is not None or state.listener_set_count:
        status["attachedListenerSets"] = state.attached_listener_sets
    return status
