"""BackendTLSPolicy: which Service ports are spoken to over TLS, and the policies' status.

Policies are resolved up front: for every (Service, port name) the winning
policy is chosen (a policy naming the port by ``sectionName`` beats one for the
whole Service; among equals the oldest wins and the rest are Conflicted), and
its CA bundle is loaded. Backends then only look the answer up. A policy's
status lists, as ancestors, the Gateways whose routes actually use it, which
are only known once routes are translated, hence ``use()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgegw import api, ir
from edgegw.api.meta import ObjectReference
from edgegw.translate.conditions import ACCEPTED, RESOLVED_REFS, Conditions
from edgegw.translate.index import GATEWAY_GROUP, Index, Key, precedence
from edgegw.translate.tls import load_ca

_REASONS = {
    "kind": "InvalidKind",
    "grant": "InvalidCACertificateRef",
    "ref": "InvalidCACertificateRef",
}


@dataclass
class PolicyState:
    """One BackendTLSPolicy as resolved; ``tls`` is None when it has no usable CA."""

    policy: api.BackendTLSPolicy
    tls: ir.BackendTLS | None = None
    problem: tuple[str, str] | None = None  # (ResolvedRefs reason, message)
    conflicted_by: str | None = None
    ancestors: set[Key] = field(default_factory=set)
    losers: list[PolicyState] = field(default_factory=list)  # policies this one beat


def _build_tls(index: Index, policy: api.BackendTLSPolicy) -> PolicyState:
    state = PolicyState(policy=policy)
    validation = policy.spec.validation
    sans = tuple(s.hostname or s.uri or "" for s in validation.subject_alt_names)
    if validation.well_known_ca_certificates is not None:
        if validation.well_known_ca_certificates != "System":
            state.problem = (
                "InvalidKind",
                f"wellKnownCACertificates {validation.well_known_ca_certificates!r} "
                "is not supported",
            )
            return state
        state.tls = ir.BackendTLS(hostname=validation.hostname, subject_alt_names=sans)
        return state
    bundles: list[bytes] = []
    ns = policy.metadata.namespace or ""
    for ref in validation.ca_certificate_refs:
        ca_ref = ObjectReference(group=ref.group, kind=ref.kind, name=ref.name)
        found = load_ca(index, ca_ref, ns, allowed=True)
        if isinstance(found, bytes):
            bundles.append(found)
        elif state.problem is None:
            state.problem = (_REASONS[found[0]], found[1])
    if bundles:
        state.tls = ir.BackendTLS(
            hostname=validation.hostname, ca_pem=b"".join(bundles), subject_alt_names=sans
        )
    return state


class BackendTLSPolicies:
    """The resolved policies of one translation, keyed by what they target."""

    def __init__(self, index: Index) -> None:
        self._states: list[PolicyState] = []
        self._winners: dict[tuple[str, str, str | None], PolicyState] = {}
        policies = sorted(index.resources.backend_tls_policies, key=precedence)
        for policy in policies:
            state = _build_tls(index, policy)
            self._states.append(state)
            for target in policy.spec.target_refs:
                if target.group != "" or target.kind != "Service":
                    continue
                slot = (policy.metadata.namespace or "", target.name, target.section_name)
                winner = self._winners.setdefault(slot, state)
                if winner is not state:
                    winner.losers.append(state)
                    state.conflicted_by = f"{winner.policy.metadata.namespace}/" + (
                        winner.policy.metadata.name
                    )

    def for_port(self, ns: str, service: str, port_name: str | None) -> PolicyState | None:
        """The policy that governs TLS to ``service``'s port ``port_name``, if any."""
        if port_name is not None:
            state = self._winners.get((ns, service, port_name))
            if state is not None:
                return state
        return self._winners.get((ns, service, None))

    def use(self, state: PolicyState, gateways: set[Key]) -> None:
        """Record that routes of these Gateways send traffic under ``state``."""
        state.ancestors.update(gateways)
        for loser in state.losers:
            loser.ancestors.update(gateways)

    def statuses(self, controller: str) -> list[tuple[api.BackendTLSPolicy, dict[str, Any]]]:
        """Each used policy's status: one ancestor entry per Gateway that uses it."""
        out = []
        for state in self._states:
            if not state.ancestors:
                continue
            ancestors = [
                {
                    "ancestorRef": {
                        "group": GATEWAY_GROUP,
                        "kind": "Gateway",
                        "namespace": ns,
                        "name": name,
                    },
                    "controllerName": controller,
                    "conditions": _conditions(state).to_list(),
                }
                for ns, name in sorted(state.ancestors)
            ]
            out.append((state.policy, {"ancestors": ancestors}))
        return out


def _conditions(state: PolicyState) -> Conditions:
    conds = Conditions(state.policy.metadata.generation)
    if state.conflicted_by:
        conds.fail(ACCEPTED, "Conflicted", f"conflicts with older policy {state.conflicted_by}")
    if state.problem:
        conds.fail(RESOLVED_REFS, *state.problem)
    if state.tls is None:
        conds.fail(ACCEPTED, "NoValidCACertificate", "no usable CA certificate")
    conds.default(ACCEPTED, True, "Accepted", "Policy has been accepted")
    conds.default(RESOLVED_REFS, True, "ResolvedRefs", "CA certificates resolved")
    return conds
