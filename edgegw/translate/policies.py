"""Envoy Gateway policies: which one applies where, and the status each one earns.

Theory of operation
-------------------
ClientTrafficPolicy, BackendTrafficPolicy and SecurityPolicy attach by
``targetRefs`` (and ``targetSelectors``, by label, in the policy's namespace)
to a Gateway, one of its listeners (``sectionName``), an HTTPRoute or
GRPCRoute, or one rule of it (``sectionName`` = the rule's name). A
ClientTrafficPolicy attaches to Gateways and listeners only.

Each target is a *slot*: ``(scope, kind, namespace, name, section)``. Policies
of one kind claim slots oldest first (creation time, then namespace/name, as
Envoy Gateway's provider sorts them); a later policy naming a taken slot gets
``Accepted=False``, reason ``Conflicted``. A request is then served by the most
specific slot that holds a policy: route rule, route, listener, Gateway, and
a more specific policy *replaces* a less specific one (Envoy Gateway's default
without ``mergeType``). The less specific one gets ``Overridden=True`` naming
the scopes that displace it, as Envoy Gateway words it.

Status ancestors are the Gateways: for a Gateway target the Gateway itself
(with the sectionName it named), for a route target each of the route's
parentRefs to one of our Gateways (with that parentRef's sectionName). A target
that does not exist or is not ours gets no ancestor, so a policy meant for
another controller is left alone.

A policy that has fields edgegw does not implement, or whose Secrets or
backends do not resolve, is ``Accepted=False`` naming the field. It still
holds its slots: for a SecurityPolicy the rules under it answer 500 (an auth
policy that cannot be enforced must fail closed), the traffic policies simply
do not apply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from edgegw import api
from edgegw.api.envoypolicies import EnvoyPolicy, TargetSelector
from edgegw.api.meta import LocalPolicyTargetReferenceWithSectionName as TargetRef
from edgegw.translate.conditions import ACCEPTED, Conditions
from edgegw.translate.index import GATEWAY_GROUP, Index, precedence, selector_matches

OVERRIDDEN = "Overridden"
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute")
# (scope, kind, namespace, name, section); scope orders specificity
Slot = tuple[int, str, str, str, str | None]
RULE, ROUTE, LISTENER, GATEWAY = 0, 1, 2, 3
_T = TypeVar("_T")


@dataclass
class PolicyState(Generic[_T]):
    """One policy during a translation: its converted form, problems and ancestors."""

    policy: EnvoyPolicy
    resolved: _T | None = None
    problem: str | None = None
    slots: list[Slot] = field(default_factory=list)
    ancestors: dict[tuple[str, str, str | None], Conditions] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.policy.metadata.namespace}/{self.policy.metadata.name}"

    def conditions(self, ancestor: tuple[str, str, str | None]) -> Conditions:
        found = self.ancestors.get(ancestor)
        if found is None:
            found = self.ancestors[ancestor] = Conditions(self.policy.metadata.generation)
        return found


@dataclass
class _Route:
    kind: str
    obj: api.HTTPRoute | api.GRPCRoute
    ancestors: list[tuple[str, str, str | None]]  # our parent Gateways, parentRef section


class PolicyAttachments(Generic[_T]):
    """The policies of one kind, attached to their slots, oldest first."""

    def __init__(
        self,
        index: Index,
        policies: tuple[EnvoyPolicy, ...],
        ours: set[tuple[str, str]],
        convert: Callable[[EnvoyPolicy], tuple[_T | None, str | None]],
        routes_too: bool = True,
    ) -> None:
        self._index = index
        self._ours = ours
        self._routes = _routes(index, ours) if routes_too else {}
        self.states: list[PolicyState[_T]] = []
        self.slots: dict[Slot, PolicyState[_T]] = {}
        for policy in sorted(policies, key=precedence):
            state: PolicyState[_T] = PolicyState(policy)
            if policy.unimplemented:
                state.problem = _unimplemented_message(policy.unimplemented)
            else:
                state.resolved, state.problem = convert(policy)
            self.states.append(state)
            for target in _targets(index, policy):
                self._attach(state, target)

    # --- attachment --------------------------------------------------------------------

    def _attach(self, state: PolicyState[_T], ref: TargetRef) -> None:
        ns = state.policy.metadata.namespace or ""
        if ref.group != GATEWAY_GROUP:
            return
        if ref.kind == "Gateway":
            self._attach_gateway(state, ns, ref)
        elif ref.kind in ROUTE_KINDS and self._routes:
            self._attach_route(state, ns, ref)

    def _attach_gateway(self, state: PolicyState[_T], ns: str, ref: TargetRef) -> None:
        gateway = self._index.gateways.get((ns, ref.name))
        if gateway is None or (ns, ref.name) not in self._ours:
            return
        ancestor = (ns, ref.name, ref.section_name)
        conditions = state.conditions(ancestor)
        section = ref.section_name
        if section is not None and section not in {ls.name for ls in gateway.spec.listeners}:
            message = f"No section name {section} found for Gateway {ns}/{ref.name}"
            conditions.fail(ACCEPTED, "TargetNotFound", message)
            return
        slot: Slot = (LISTENER if section else GATEWAY, "Gateway", ns, ref.name, section)
        what = f"Listener {ref.name}/{section}" if section else f"Gateway {ref.name}"
        if section and state.policy.kind == "ClientTrafficPolicy":
            what = f"section of {ref.name}"
        self._claim(state, slot, conditions, what)

    def _attach_route(self, state: PolicyState[_T], ns: str, ref: TargetRef) -> None:
        route = self._routes.get((ref.kind, ns, ref.name))
        if route is None:
            return
        section = ref.section_name
        names = {rule.name for rule in route.obj.spec.rules}
        slot: Slot = (RULE if section else ROUTE, ref.kind, ns, ref.name, section)
        what = f"RouteRule {ref.name}/{section}" if section else f"{ref.kind} {ref.name}"
        for ancestor in route.ancestors:
            conditions = state.conditions(ancestor)
            if section is not None and section not in names:
                message = f"No section name {section} found for {ref.kind} {ns}/{ref.name}"
                conditions.fail(ACCEPTED, "TargetNotFound", message)
            else:
                self._claim(state, slot, conditions, what)

    def _claim(self, state: PolicyState[_T], slot: Slot, conditions: Conditions, what: str) -> None:
        holder = self.slots.setdefault(slot, state)
        if holder is not state:
            kind = state.policy.kind
            message = f"Unable to target {what}, another {kind} has already attached to it"
            conditions.fail(ACCEPTED, "Conflicted", message)
        elif slot not in state.slots:
            state.slots.append(slot)

    # --- lookups -----------------------------------------------------------------------

    def for_listener(self, gateway: tuple[str, str], listener: str) -> PolicyState[_T] | None:
        """The policy of a listener: its own, else its Gateway's."""
        ns, name = gateway
        found = self.slots.get((LISTENER, "Gateway", ns, name, listener))
        return found or self.slots.get((GATEWAY, "Gateway", ns, name, None))

    def for_rule(
        self,
        route: tuple[str, str, str],
        rule: str | None,
        gateway: tuple[str, str],
        listener: str,
    ) -> PolicyState[_T] | None:
        """The policy serving one rule of ``route`` (kind, ns, name) on one listener."""
        kind, ns, name = route
        if rule is not None:
            found = self.slots.get((RULE, kind, ns, name, rule))
            if found is not None:
                return found
        found = self.slots.get((ROUTE, kind, ns, name, None))
        return found or self.for_listener(gateway, listener)

    # --- status ------------------------------------------------------------------------

    def statuses(self, controller: str) -> Iterator[tuple[EnvoyPolicy, dict[str, Any]]]:
        """PolicyStatus of every policy that has at least one ancestor."""
        for state in self.states:
            if not state.ancestors:
                continue
            overridden = self._overridden_message(state)
            ancestors = []
            for (ns, name, section), conditions in state.ancestors.items():
                if state.problem is not None:
                    conditions.fail(ACCEPTED, "Invalid", state.problem)
                conditions.default(ACCEPTED, True, "Accepted", "Policy has been accepted.")
                if overridden and conditions.is_ok(ACCEPTED):
                    conditions.set(OVERRIDDEN, True, "Overridden", overridden)
                ref: dict[str, Any] = {
                    "group": GATEWAY_GROUP,
                    "kind": "Gateway",
                    "namespace": ns,
                    "name": name,
                }
                if section is not None:
                    ref["sectionName"] = section
                ancestors.append(
                    {
                        "ancestorRef": ref,
                        "controllerName": controller,
                        "conditions": conditions.to_list(),
                    }
                )
            yield state.policy, {"ancestors": ancestors}

    def _overridden_message(self, state: PolicyState[_T]) -> str:
        """Envoy Gateway's words for the more specific slots that displace this policy."""
        kind = state.policy.kind
        listeners: list[str] = []
        routes: list[str] = []
        rules: list[str] = []
        for scope, skind, ns, name, section in state.slots:
            for other, holder in self.slots.items():
                if holder is state:
                    continue
                if scope == GATEWAY and other[0] == LISTENER and other[2:4] == (ns, name):
                    listeners.append(
                        f"{ns}/{name}/{other[4]}"
                        if kind != "ClientTrafficPolicy"
                        else str(other[4])
                    )
                elif scope in (GATEWAY, LISTENER) and other[0] == ROUTE:
                    route = self._routes.get((other[1], other[2], other[3]))
                    if route and any(
                        a[:2] == (ns, name) and (scope == GATEWAY or a[2] in (None, section))
                        for a in route.ancestors
                    ):
                        routes.append(f"{other[2]}/{other[3]}")
                elif scope == ROUTE and other[0] == RULE and other[1:4] == (skind, ns, name):
                    rules.append(str(other[4]))
        return _override_words(kind, sorted(set(listeners)), sorted(set(routes)), rules)


def _override_words(kind: str, listeners: list[str], routes: list[str], rules: list[str]) -> str:
    if kind == "ClientTrafficPolicy":
        if not listeners:
            return ""
        sections = " ".join(listeners)
        return (
            "There are existing ClientTrafficPolicies that are overriding these "
            f"sections [{sections}]"
        )
    plural = {
        "BackendTrafficPolicy": "backendTrafficPolicies",
        "SecurityPolicy": "securityPolicies",
    }[kind]
    if rules:
        singular = "backendTrafficPolicy" if kind == "BackendTrafficPolicy" else plural
        names = ", ".join(rules)
        return (
            f"This policy is being overridden by other {singular} for these route rules: [{names}]"
        )
    parts = []
    if listeners:
        parts.append(f"these gateway listeners: [{', '.join(listeners)}]")
    if routes:
        parts.append(f"these routes: [{', '.join(routes)}]")
    if not parts:
        return ""
    return f"This policy is being overridden by other {plural} for " + " and ".join(parts)


def _unimplemented_message(paths: tuple[str, ...]) -> str:
    what = ", ".join(paths)
    return f"{what}: not implemented by edgegw (see README, Policies)"


def _routes(index: Index, ours: set[tuple[str, str]]) -> dict[tuple[str, str, str], _Route]:
    """HTTPRoutes and GRPCRoutes with at least one parentRef to one of our Gateways."""
    out: dict[tuple[str, str, str], _Route] = {}
    routes: list[tuple[str, api.HTTPRoute | api.GRPCRoute]] = [
        ("HTTPRoute", r) for r in index.resources.http_routes
    ]
    routes += [("GRPCRoute", r) for r in index.resources.grpc_routes]
    for kind, route in routes:
        ns = route.metadata.namespace or ""
        ancestors = []
        for ref in route.spec.parent_refs:
            if ref.group != GATEWAY_GROUP or ref.kind != "Gateway":
                continue
            key = (ref.namespace or ns, ref.name)
            if key in ours and (*key, ref.section_name) not in ancestors:
                ancestors.append((*key, ref.section_name))
        if ancestors:
            out[(kind, ns, route.metadata.name)] = _Route(kind, route, ancestors)
    return out


def _targets(index: Index, policy: EnvoyPolicy) -> Iterator[TargetRef]:
    """Explicit targetRefs, then whatever each targetSelector picks (by name order)."""
    yield from policy.spec.refs()
    ns = policy.metadata.namespace or ""
    for selector in policy.spec.target_selectors:
        yield from _selected(index, ns, selector)


def _selected(index: Index, ns: str, selector: TargetSelector) -> Iterator[TargetRef]:
    candidates: tuple[api.Object, ...] = ()
    if selector.group == GATEWAY_GROUP:
        candidates = {
            "Gateway": index.resources.gateways,
            "HTTPRoute": index.resources.http_routes,
            "GRPCRoute": index.resources.grpc_routes,
        }.get(selector.kind, ())
    wanted = api.meta.LabelSelector(
        match_labels=selector.match_labels, match_expressions=selector.match_expressions
    )
    for obj in candidates:
        if obj.metadata.namespace == ns and selector_matches(wanted, obj.metadata.labels):
            yield TargetRef(group=selector.group, kind=selector.kind, name=obj.metadata.name)
