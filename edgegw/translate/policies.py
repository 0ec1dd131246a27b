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
the scopes that displace it, as Envoy Gateway words it. A route or rule
policy with ``mergeType`` is instead merged onto the closest Gateway-level
one (listener, then Gateway; ``translate.policymerge``), converted anew per
pair; it reports ``Merged`` ("Merged with policy ns/name"), the parent
``Merged`` naming the routes merged onto it rather than ``Overridden``.

``targetSelectors`` pick by label in the policy's namespace, or with
``namespaces`` (All, Selector) in others where a ReferenceGrant there lets the
policy kind refer to the target kind.

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
from edgegw.api.envoypolicies import EnvoyPolicy, TargetSelector, TargetSelectorNamespaces
from edgegw.api.meta import LocalPolicyTargetReferenceWithSectionName as TargetRef
from edgegw.translate.conditions import ACCEPTED, Conditions
from edgegw.translate.index import (
    ENVOY_GROUP,
    GATEWAY_GROUP,
    Index,
    precedence,
    selector_matches,
)
from edgegw.translate.policymerge import merge_policy

OVERRIDDEN = "Overridden"
MERGED = "Merged"
_PLURAL = {
    "BackendTrafficPolicy": "backendTrafficPolicies",
    "SecurityPolicy": "securityPolicies",
}
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
        self._convert = convert
        self.states: list[PolicyState[_T]] = []
        self.slots: dict[Slot, PolicyState[_T]] = {}
        self._merged: dict[tuple[str, str], PolicyState[_T]] = {}  # (route's, parent's) names
        self._merged_into: dict[str, list[str]] = {}  # parent name → "ns/route" merged onto it
        for policy in sorted(policies, key=precedence):
            state: PolicyState[_T] = PolicyState(policy)
            if policy.unimplemented:
                state.problem = _unimplemented_message(policy.unimplemented)
            else:
                state.resolved, state.problem = convert(policy)
            self.states.append(state)
            for ns, target in _targets(index, policy):
                self._attach(state, ns, target)
        for state in self.states:
            if getattr(state.policy.spec, "merge_type", None) is not None:
                self._merge_parents(state)

    # --- attachment --------------------------------------------------------------------

    def _attach(self, state: PolicyState[_T], ns: str, ref: TargetRef) -> None:
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
        found = self.slots.get((RULE, kind, ns, name, rule)) if rule is not None else None
        if found is None:
            found = self.slots.get((ROUTE, kind, ns, name, None))
        if found is None:
            return self.for_listener(gateway, listener)
        if getattr(found.policy.spec, "merge_type", None) is None:
            return found
        parent = self.for_listener(gateway, listener)  # mergeType: onto the closest parent
        return found if parent is None else self._merge(found, parent)

    # --- mergeType ---------------------------------------------------------------------

    def _merge_parents(self, state: PolicyState[_T]) -> None:
        """Merge a route policy onto each Gateway-level policy its routes' parents have."""
        for _, kind, ns, name, _section in state.slots:
            route = self._routes.get((kind, ns, name))
            for ancestor in route.ancestors if route else ():
                gateway = (ancestor[0], ancestor[1])
                parent = (
                    self.for_listener(gateway, ancestor[2])
                    if ancestor[2]
                    else self.slots.get((GATEWAY, "Gateway", *gateway, None))
                )
                if parent is None or parent is state:
                    continue
                merged = self._merge(state, parent)
                conditions = state.conditions(ancestor)
                if merged.problem is not None:
                    if state.problem is None:
                        conditions.fail(ACCEPTED, "Invalid", merged.problem)
                    continue
                conditions.set(MERGED, True, MERGED, f"Merged with policy {parent.name}")
                routes = self._merged_into.setdefault(parent.name, [])
                routes.append(f"{ns}/{name}")

    def _merge(self, state: PolicyState[_T], parent: PolicyState[_T]) -> PolicyState[_T]:
        key = (state.name, parent.name)
        if key not in self._merged:
            merged: PolicyState[_T] = PolicyState(state.policy, slots=state.slots)
            policy, merged.problem = merge_policy(state.policy, parent.policy)
            if state.problem is not None:  # not accepted itself: nothing to merge
                merged.problem = state.problem
            elif policy is not None:
                merged.policy = policy
                merged.resolved, merged.problem = self._convert(policy)
            self._merged[key] = merged
        return self._merged[key]

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
                merged_by = sorted(set(self._merged_into.get(state.name, ())))
                if merged_by and conditions.is_ok(ACCEPTED):
                    plural = _PLURAL.get(state.policy.kind, "policies")
                    words = f"these routes: [{', '.join(merged_by)}]"
                    message = f"This policy is being merged by other {plural} for {words}"
                    conditions.set(MERGED, True, MERGED, message)
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
                    if f"{other[2]}/{other[3]}" in self._merged_into.get(state.name, ()):
                        continue  # merged onto this policy, not overriding it
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
    plural = _PLURAL[kind]
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


def _targets(index: Index, policy: EnvoyPolicy) -> Iterator[tuple[str, TargetRef]]:
    """Explicit targetRefs (in the policy's namespace), then what each targetSelector picks."""
    ns = policy.metadata.namespace or ""
    for ref in policy.spec.refs():
        yield ns, ref
    for selector in policy.spec.target_selectors:
        yield from _selected(index, policy.kind, ns, selector)


def _selected(
    index: Index, kind: str, ns: str, selector: TargetSelector
) -> Iterator[tuple[str, TargetRef]]:
    """Targets by label, in ``namespaces`` (the policy's own by default).

    Across namespaces a ReferenceGrant in the target's namespace must allow
    this policy kind to refer to the target kind, as Envoy Gateway requires.
    """
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
    where = selector.namespaces
    for obj in candidates:
        target_ns = obj.metadata.namespace or ""
        if not _in_namespaces(index, where, ns, target_ns):
            continue
        if not selector_matches(wanted, obj.metadata.labels):
            continue
        target = (selector.group, selector.kind, target_ns, obj.metadata.name)
        if index.ref_allowed((ENVOY_GROUP, kind, ns), target):
            yield target_ns, TargetRef(group=selector.group, kind=selector.kind, name=target[3])


def _in_namespaces(
    index: Index, where: TargetSelectorNamespaces | None, ns: str, target_ns: str
) -> bool:
    """``targetSelectors[].namespaces``: Same (the default), All, or Selector."""
    if where is None or where.from_ == "Same":
        return target_ns == ns
    if where.from_ == "Selector":
        return where.selector is not None and index.namespace_matches(where.selector, target_ns)
    return True
