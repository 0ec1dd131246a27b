"""ListenerSets: listeners merged into a Gateway from other files, and their status.

Theory of operation. A ListenerSet names one Gateway (``spec.parentRef``);
it is ours when that Gateway is. The Gateway decides whether it takes the set
(``spec.allowedListeners.namespaces``: None, the default, Same, Selector on
the Namespace's labels, or All). Taken sets are merged in the spec's
precedence: the Gateway's own listeners first, then the sets oldest first
(``creationTimestamp``), ties by namespace/name. Each set listener is judged
like a Gateway listener (protocol, route kinds, certificates, the references
checked as coming from the ListenerSet's namespace and kind) and then against
every listener accepted before it: the later of two conflicting listeners is
Conflicted (HostnameConflict or ProtocolConflict) and the earlier keeps its
place. Port claims across Gateways then see set listeners as the parent's.

A set is Accepted when at least one of its listeners is valid, and
Programmed when, besides, its Gateway is; the Gateway's status counts the
accepted sets in ``attachedListenerSets``. Routes attach to a set by a
parentRef of kind ListenerSet (``routes.py``); a parentRef naming the Gateway
reaches only the Gateway's own listeners.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgegw import api
from edgegw.translate.conditions import ACCEPTED, PROGRAMMED, Conditions
from edgegw.translate.gateways import GatewayState
from edgegw.translate.index import GATEWAY_GROUP, Index, Key, key_of, precedence
from edgegw.translate.listeners import (
    ListenerState,
    conflict_with,
    finish,
    judge,
    mark_conflicted,
)


@dataclass
class ListenerSetState:
    """A ListenerSet being translated: whether its Gateway took it, and its listeners."""

    listener_set: api.ListenerSet
    gateway: GatewayState
    conditions: Conditions
    allowed: bool = True
    listeners: list[ListenerState] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return key_of(self.listener_set)

    @property
    def accepted(self) -> bool:
        return self.conditions.is_ok(ACCEPTED)

    def status(self) -> dict[str, Any]:
        """The ListenerSetStatus: conditions and one entry per listener."""
        return {
            "conditions": self.conditions.to_list(),
            "listeners": [ls.status() for ls in self.listeners],
        }


def merge_listener_sets(
    index: Index, gateways: dict[Key, GatewayState], now: float | None
) -> list[ListenerSetState]:
    """Every ListenerSet whose parent is one of our Gateways, merged in precedence order."""
    found = []
    for listener_set in sorted(index.resources.listener_sets, key=precedence):
        ref = listener_set.spec.parent_ref
        if ref.group != GATEWAY_GROUP or ref.kind != "Gateway":
            continue
        gateway = gateways.get((ref.namespace or listener_set.metadata.namespace or "", ref.name))
        if gateway is not None:
            found.append(_merge(index, gateway, listener_set, now))
    return found


def _merge(
    index: Index, gateway: GatewayState, listener_set: api.ListenerSet, now: float | None
) -> ListenerSetState:
    state = ListenerSetState(
        listener_set=listener_set,
        gateway=gateway,
        conditions=Conditions(listener_set.metadata.generation),
    )
    gateway.listener_set_count += 1
    why_not = _not_allowed(index, gateway.gateway, listener_set)
    if why_not is not None:
        state.allowed = False
        state.conditions.fail(ACCEPTED, "NotAllowed", why_not)
        state.conditions.fail(PROGRAMMED, "NotAllowed", why_not)
        return state
    for spec in listener_set.spec.listeners:
        listener = judge(index, gateway.gateway, spec, now, listener_set)
        if listener.accepted:
            earlier = [ls for ls in gateway.all_listeners if ls.accepted]
            conflict = conflict_with(earlier, listener)
            if conflict is not None:
                mark_conflicted(listener, *conflict)
        state.listeners.append(listener)
        gateway.set_listeners.append(listener)
    return state


def _not_allowed(index: Index, gateway: api.Gateway, listener_set: api.ListenerSet) -> str | None:
    allowed = gateway.spec.allowed_listeners
    namespaces = allowed.namespaces if allowed is not None else None
    rule = namespaces.from_ if namespaces is not None else "None"
    name = f"Gateway {gateway.metadata.namespace}/{gateway.metadata.name}"
    ns = listener_set.metadata.namespace or ""
    if rule == "All":
        return None
    if rule == "Same":
        if ns == gateway.metadata.namespace:
            return None
        return f"{name} takes ListenerSets from its own namespace only"
    if rule == "Selector" and namespaces is not None and namespaces.selector is not None:
        if index.namespace_matches(namespaces.selector, ns):
            return None
        return f"{name} does not select namespace {ns}"
    return f"{name} does not allow ListenerSets (spec.allowedListeners)"


def finish_listener_set(state: ListenerSetState) -> None:
    """Settle the set's conditions and its listeners' once the Gateway's are settled."""
    conds, gateway = state.conditions, state.gateway
    if not state.allowed:
        return
    valid = [ls for ls in state.listeners if ls.accepted and ls.usable]
    if not gateway.accepted:
        conds.fail(ACCEPTED, "ParentNotAccepted", "the parent Gateway is not accepted")
        conds.fail(PROGRAMMED, "ParentNotAccepted", "the parent Gateway is not accepted")
    elif not valid:
        message = "no listener of the ListenerSet is valid"
        conds.fail(ACCEPTED, "ListenersNotValid", message)
        conds.fail(PROGRAMMED, "ListenersNotValid", message)
    elif len(valid) < len(state.listeners):
        bad = ", ".join(ls.spec.name for ls in state.listeners if ls not in valid)
        conds.set(ACCEPTED, True, "ListenersNotValid", f"invalid listeners: {bad}")
    conds.default(ACCEPTED, True, "Accepted", "ListenerSet is accepted")
    if conds.is_ok(ACCEPTED) and not gateway.conditions.is_ok(PROGRAMMED):
        conds.fail(PROGRAMMED, "ParentNotProgrammed", "the parent Gateway is not programmed")
    conds.default(PROGRAMMED, True, "Programmed", "ListenerSet is programmed")
    programmable = conds.is_ok(PROGRAMMED)
    for listener in state.listeners:
        finish(listener, programmable, "the ListenerSet is not programmed")
    if state.accepted:
        gateway.attached_listener_sets += 1
