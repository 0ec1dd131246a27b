"""Lookups over the loaded resources, built once per translation.

Resources arrive as tuples per kind; the translator follows references by
(namespace, name) many times per route, so this turns them into dicts once,
and answers the two questions every reference raises: does the target exist,
and may the referrer point at it (ReferenceGrant).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from edgegw import api
from edgegw.api.meta import LabelSelector, Object

GATEWAY_GROUP = "gateway.networking.k8s.io"
ENVOY_GROUP = "gateway.envoyproxy.io"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

Key = tuple[str, str]
_T = TypeVar("_T", bound=Object)


def key_of(obj: Object) -> Key:
    """(namespace, name); cluster-scoped objects have namespace ""."""
    return (obj.metadata.namespace or "", obj.metadata.name)


def precedence(obj: Object) -> tuple[float, str, str]:
    """The spec's tie-break order: oldest first, then namespace/name."""
    meta = obj.metadata
    return (float(meta.creation_timestamp or 0.0), meta.namespace or "", meta.name)


def _by_key(items: tuple[_T, ...]) -> dict[Key, _T]:
    return {key_of(item): item for item in items}


class Index:
    """Dict views of ``Resources`` and the ReferenceGrant check."""

    def __init__(self, resources: api.Resources) -> None:
        self.resources = resources
        self.gateway_classes = {gc.metadata.name: gc for gc in resources.gateway_classes}
        self.gateways = _by_key(resources.gateways)
        self.services = _by_key(resources.services)
        self.secrets = _by_key(resources.secrets)
        self.config_maps = _by_key(resources.config_maps)
        self.backends = _by_key(resources.backends)
        self.namespace_labels = {
            ns.metadata.name: ns.metadata.labels for ns in resources.namespaces
        }
        self.slices: dict[Key, list[api.EndpointSlice]] = {}
        for eps in resources.endpoint_slices:
            service = eps.metadata.labels.get(SERVICE_NAME_LABEL)
            if service:
                self.slices.setdefault((eps.metadata.namespace or "", service), []).append(eps)

    def namespace_matches(self, selector: LabelSelector, namespace: str) -> bool:
        """Does ``selector`` pick ``namespace``, by its labels (and its name label)?"""
        labels = {**self.namespace_labels.get(namespace, {}), NAMESPACE_NAME_LABEL: namespace}
        return selector_matches(selector, labels)

    def ref_allowed(self, source: tuple[str, str, str], target: tuple[str, str, str, str]) -> bool:
        """May ``source`` (group, kind, namespace) refer to ``target`` (group, kind, ns, name)?

        References within a namespace are always allowed; across namespaces a
        ReferenceGrant in the target's namespace must name both sides.
        """
        from_group, from_kind, from_ns = source
        to_group, to_kind, to_ns, to_name = target
        if from_ns == to_ns:
            return True
        for grant in self.resources.reference_grants:
            if grant.metadata.namespace != to_ns:
                continue
            froms = grant.spec.from_
            if not any(
                f.group == from_group and f.kind == from_kind and f.namespace == from_ns
                for f in froms
            ):
                continue
            if any(
                t.group == to_group and t.kind == to_kind and t.name in (None, to_name)
                for t in grant.spec.to
            ):
                return True
        return False


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label selector semantics: every label and every expression must hold."""
    for name, wanted in selector.match_labels.items():
        if labels.get(name) != wanted:
            return False
    for expr in selector.match_expressions:
        present = expr.key in labels
        value = labels.get(expr.key)
        if expr.operator == "In" and value not in expr.values:
            return False
        if expr.operator == "NotIn" and present and value in expr.values:
            return False
        if expr.operator == "Exists" and not present:
            return False
        if expr.operator == "DoesNotExist" and present:
            return False
    return True
