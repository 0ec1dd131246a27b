"""Route attachment: which listeners each parentRef of a route lands on, and its parent status.

The same rules hold for every route kind. A parentRef names a Gateway and
optionally one listener (``sectionName``) and/or ``port``; the route attaches
to each such listener whose ``allowedRoutes`` admit the route's kind and
namespace and, for kinds with hostnames, whose hostname intersects the
route's. Attachment does not depend on the listener being valid (the spec
counts attachedRoutes on invalid listeners too); only programmed listeners
reach the IR. When nothing attaches, the reason says what stood in the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from edgegw.api.meta import Object, ParentReference
from edgegw.translate.conditions import ACCEPTED, RESOLVED_REFS, Conditions
from edgegw.translate.gateways import GatewayState
from edgegw.translate.hostnames import intersect
from edgegw.translate.index import GATEWAY_GROUP, Index, Key
from edgegw.translate.listeners import ListenerState
from edgegw.translate.listenersets import ListenerSetState


@dataclass
class RouteProblems:
    """Findings about the route itself, which every parent's conditions repeat."""

    accepted: tuple[str, str] | None = None  # (reason, message)
    resolved_refs: tuple[str, str] | None = None

    def reject(self, reason: str, message: str) -> None:
        self.accepted = self.accepted or (reason, message)

    def unresolved(self, reason: str, message: str) -> None:
        self.resolved_refs = self.resolved_refs or (reason, message)


class Parent(NamedTuple):
    """A parentRef we serve: a Gateway, or a ListenerSet (with its Gateway)."""

    ref: ParentReference
    gateway: GatewayState
    listener_set: ListenerSetState | None = None


@dataclass
class ParentResult:
    ref: ParentReference
    gateway: GatewayState
    conditions: Conditions
    attached: list[tuple[ListenerState, tuple[str, ...]]] = field(default_factory=list)


def our_parents(
    route: Object,
    refs: tuple[ParentReference, ...],
    gateways: dict[Key, GatewayState],
    listener_sets: dict[Key, ListenerSetState],
) -> list[Parent]:
    """The parentRefs that name a Gateway (or ListenerSet of one) we serve; others get no status."""
    found = []
    for ref in refs:
        key = (ref.namespace or route.metadata.namespace or "", ref.name)
        if ref.group != GATEWAY_GROUP:
            continue
        if ref.kind == "Gateway" and key in gateways:
            found.append(Parent(ref, gateways[key]))
        elif ref.kind == "ListenerSet" and key in listener_sets:
            found.append(Parent(ref, listener_sets[key].gateway, listener_sets[key]))
    return found


def attach(
    index: Index,
    route: Object,
    kind: str,
    hostnames: tuple[str, ...] | None,
    parent: Parent,
) -> ParentResult:
    """Attach the route through one parentRef. ``hostnames`` None: the kind has none."""
    ref, gw, listener_set = parent
    result = ParentResult(ref=ref, gateway=gw, conditions=Conditions(route.metadata.generation))
    if not gw.accepted:
        result.conditions.fail(ACCEPTED, "NoMatchingParent", "the Gateway is not accepted")
        return result
    if listener_set is not None and not listener_set.accepted:
        result.conditions.fail(ACCEPTED, "NoMatchingParent", "the ListenerSet is not accepted")
        return result
    listeners = gw.listeners if listener_set is None else listener_set.listeners
    candidates = [
        ls
        for ls in listeners
        if ref.section_name in (None, ls.spec.name) and ref.port in (None, ls.spec.port)
    ]
    if not candidates:
        result.conditions.fail(ACCEPTED, "NoMatchingParent", _no_parent_message(ref))
        return result
    hostname_mismatch = False
    for listener in candidates:
        if not _admits(index, listener, route, kind):
            continue
        common = intersect(listener.spec.hostname, hostnames or ()) if hostnames is not None else ()
        if common is None:
            hostname_mismatch = True
            continue
        result.attached.append((listener, common))
    if not result.attached:
        if hostname_mismatch:
            result.conditions.fail(
                ACCEPTED,
                "NoMatchingListenerHostname",
                "no listener hostname matches the route's hostnames",
            )
        else:
            result.conditions.fail(
                ACCEPTED, "NotAllowedByListeners", f"no listener admits this {kind}"
            )
    return result


def _no_parent_message(ref: ParentReference) -> str:
    wanted = []
    if ref.section_name is not None:
        wanted.append(f"sectionName {ref.section_name}")
    if ref.port is not None:
        wanted.append(f"port {ref.port}")
    return f"the {ref.kind} has no listener with {' and '.join(wanted)}"


def _admits(index: Index, listener: ListenerState, route: Object, kind: str) -> bool:
    if kind not in listener.kinds:
        return False
    allowed = listener.spec.allowed_routes.namespaces
    route_ns = route.metadata.namespace or ""
    if allowed.from_ == "All":
        return True
    if allowed.from_ == "Same":
        return route_ns == (listener.owner.metadata.namespace or "")
    if allowed.selector is None:
        return False
    return index.namespace_matches(allowed.selector, route_ns)


def finish_parent(result: ParentResult, problems: RouteProblems) -> None:
    conds = result.conditions
    if problems.accepted is not None:
        conds.fail(ACCEPTED, *problems.accepted)
    conds.default(ACCEPTED, True, "Accepted", "Route is accepted")
    if problems.resolved_refs is not None:
        conds.fail(RESOLVED_REFS, *problems.resolved_refs)
    conds.default(RESOLVED_REFS, True, "ResolvedRefs", "All references resolved")


def parent_status(route: Object, result: ParentResult, controller: str) -> dict[str, Any]:
    ref = result.ref
    parent_ref: dict[str, Any] = {
        "group": ref.group,
        "kind": ref.kind,
        "namespace": ref.namespace or route.metadata.namespace,
        "name": ref.name,
    }
    if ref.section_name is not None:
        parent_ref["sectionName"] = ref.section_name
    if ref.port is not None:
        parent_ref["port"] = ref.port
    return {
        "parentRef": parent_ref,
        "controllerName": controller,
        "conditions": result.conditions.to_list(),
    }
