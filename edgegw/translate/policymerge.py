"""``mergeType``: a route's policy merged onto its Gateway's, as Envoy Gateway merges them.

Envoy Gateway (``internal/utils/merge.go``) patches the parent policy's spec
with the route policy's, both as JSON, and translates the result:

- ``JSONMerge`` is RFC 7386: objects merge key by key, ``null`` deletes,
  anything else (lists included) replaces;
- ``StrategicMerge`` is Kubernetes' strategic merge patch: the same, except
  that lists the API marks with a merge key merge item by item
  (BackendTrafficPolicy ``compression`` and ``compressor`` by ``type``).

Only what a user wrote is merged (the spec as written, not the decoded one
with its defaults), as Go's ``omitempty`` JSON of the spec would be. Pure.
"""

from __future__ import annotations

from typing import Any

import msgspec

from edgegw.api.envoypolicies import EnvoyPolicy
from edgegw.api.meta import dec_hook

# (spec kind) → list field → merge key, from the API's patchMergeKey tags
_MERGE_KEYS = {
    "BackendTrafficPolicy": {"compression": "type", "compressor": "type"},
}


def merge_specs(kind: str, parent: dict[str, Any], patch: dict[str, Any], how: str) -> Any:
    """``parent`` patched by ``patch``; neither is changed.

    Args:
        kind: the policy kind, for its merge keys.
        parent: the Gateway-level policy's spec as written.
        patch: the route-level policy's spec as written.
        how: ``StrategicMerge`` or ``JSONMerge``.
    """
    keys = _MERGE_KEYS.get(kind, {}) if how == "StrategicMerge" else {}
    return _merge(parent, patch, keys, top=True)


def _merge(original: Any, patch: Any, keys: dict[str, str], top: bool = False) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(original) if isinstance(original, dict) else {}
    for name, value in patch.items():
        if value is None:
            out.pop(name, None)
        elif top and name in keys and isinstance(value, list):
            out[name] = _merge_list(out.get(name), value, keys[name])
        else:
            out[name] = _merge(out.get(name), value, {})
    return out


def _merge_list(original: Any, patch: list[Any], key: str) -> list[Any]:
    """A keyed list: items with the same key merge, new ones are appended."""
    items = list(original) if isinstance(original, list) else []
    for item in patch:
        at = next(
            (
                i
                for i, old in enumerate(items)
                if isinstance(old, dict)
                and isinstance(item, dict)
                and old.get(key) == item.get(key)
            ),
            None,
        )
        if at is None:
            items.append(item)
        else:
            items[at] = _merge(items[at], item, {})
    return items


_TARGETS = ("targetRef", "targetRefs", "targetSelectors")


def merge_policy(policy: EnvoyPolicy, parent: EnvoyPolicy) -> tuple[EnvoyPolicy | None, str | None]:
    """``policy`` (a route's, with ``mergeType``) merged onto ``parent``, or why it cannot be.

    The parent's targets are left out: the merged policy targets what ``policy`` does.
    """
    how = getattr(policy.spec, "merge_type", None) or "StrategicMerge"
    base = {k: v for k, v in parent.raw_spec.items() if k not in _TARGETS}
    raw = merge_specs(policy.kind, base, policy.raw_spec, how)
    try:
        spec = msgspec.convert(raw, type(policy.spec), dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        return None, f"error merging policies: {exc}"
    unimplemented = tuple(dict.fromkeys((*parent.unimplemented, *policy.unimplemented)))
    return msgspec.structs.replace(policy, spec=spec, unimplemented=unimplemented), None
