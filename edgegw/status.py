"""The status document served at ``/api/status`` and written to ``status.yaml``.

The translator computes statuses from the resources alone, as if every
socket will bind. Two facts only the running process knows are folded in
here: which binds failed (a listener whose socket could not be bound is not
Programmed, and its Gateway does not hold that address), and when each
condition last changed (``lastTransitionTime``, kept across reloads so that
an unchanged condition keeps its time, as Kubernetes controllers do).
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping
from typing import Any

from edgegw import ir
from edgegw.config.store import LoadResult
from edgegw.net.listeners import BindError, BindKey
from edgegw.translate import ResourceStatus

ConditionKey = tuple[str, ...]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ignorable(key: BindKey, error: BindError) -> bool:
    """IPv6 off on this host: the ``::`` default address failing is not a listener failure."""
    return key[1] == "::" and error.reason == "AddressNotUsable"


ListenerKey = tuple[str, str, str, str]  # owner kind, namespace, name; listener name


def _listener_binds(model: ir.Model) -> dict[ListenerKey, list[BindKey]]:
    binds: dict[ListenerKey, list[BindKey]] = {}
    for port in model.ports:
        for listener in port.listeners:
            if listener.listener_set is not None:
                ns, _, name = listener.listener_set.partition("/")
                key = ("ListenerSet", ns, name, listener.name)
            else:
                key = ("Gateway", listener.gateway_namespace, listener.gateway_name, listener.name)
            binds.setdefault(key, []).append(port.bind_key)
    return binds


class StatusBook:
    """Builds each generation's status document and remembers condition transition times."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"generation": 0, "errors": [], "resources": []}
        self._transitions: dict[ConditionKey, tuple[str, str, str]] = {}
        self.bind_errors: dict[BindKey, BindError] = {}

    def publish(
        self,
        generation: int,
        loaded: LoadResult,
        statuses: tuple[ResourceStatus, ...],
        model: ir.Model,
        bind_errors: Mapping[BindKey, BindError],
    ) -> None:
        binds = _listener_binds(model)
        self.bind_errors = dict(bind_errors)
        failed = {k: e for k, e in bind_errors.items() if not _ignorable(k, e)}
        resources = []
        for rs in statuses:
            status = copy.deepcopy(rs.status)
            if rs.kind in ("Gateway", "ListenerSet"):
                _patch_gateway(rs, status, binds, failed, bind_errors)
            self._stamp(("/".join((rs.kind, rs.namespace or "", rs.name)),), status)
            metadata: dict[str, Any] = {"name": rs.name, "generation": rs.generation}
            if rs.namespace is not None:
                metadata["namespace"] = rs.namespace
            resources.append(
                {
                    "apiVersion": rs.api_version,
                    "kind": rs.kind,
                    "metadata": metadata,
                    "status": status,
                }
            )
        self.document = {
            "generation": generation,
            "errors": [e.as_dict() for e in loaded.errors],
            "warnings": [w.as_dict() for w in loaded.warnings],
            "resources": resources,
        }

    def _stamp(self, path: ConditionKey, node: Any) -> None:
        """Add ``lastTransitionTime`` to every condition under ``node``."""
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "conditions" and isinstance(value, list):
                    for cond in value:
                        self._stamp_condition((*path, "conditions"), cond)
                else:
                    self._stamp((*path, str(key)), value)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                name = item.get("name") if isinstance(item, dict) else None
                ref = item.get("parentRef") if isinstance(item, dict) else None
                self._stamp((*path, str(name or ref or index)), item)

    def _stamp_condition(self, path: ConditionKey, cond: dict[str, Any]) -> None:
        key = (*path, str(cond.get("type")))
        seen = self._transitions.get(key)
        now = (str(cond.get("status")), str(cond.get("reason")))
        if seen is None or seen[:2] != now:
            seen = (*now, _now())
            self._transitions[key] = seen
        cond["lastTransitionTime"] = seen[2]


def _set_condition(conditions: list[dict[str, Any]], new: dict[str, Any]) -> None:
    for index, cond in enumerate(conditions):
        if cond.get("type") == new["type"]:
            conditions[index] = {**cond, **new}
            return
    conditions.append(new)


def _patch_gateway(
    rs: ResourceStatus,
    status: dict[str, Any],
    binds: Mapping[ListenerKey, list[BindKey]],
    failed: Mapping[BindKey, BindError],
    all_errors: Mapping[BindKey, BindError],
) -> None:
    """Fold bind failures into listener conditions (Gateway or ListenerSet) and addresses."""
    held_addresses: set[str] = set()
    for listener in status.get("listeners", ()):
        keys = binds.get((rs.kind, rs.namespace or "", rs.name, listener["name"]), [])
        errors = [failed[k] for k in keys if k in failed]
        held_addresses.update(k[1] for k in keys if k not in all_errors)
        if errors:
            _set_condition(
                listener.setdefault("conditions", []),
                {
                    "type": "Programmed",
                    "status": "False",
                    "reason": errors[0].reason,
                    "message": errors[0].message,
                    "observedGeneration": rs.generation,
                },
            )
    if "addresses" in status and any(
        binds.get((rs.kind, rs.namespace or "", rs.name, ln["name"]))
        for ln in status.get("listeners", ())
    ):
        status["addresses"] = [a for a in status["addresses"] if a.get("value") in held_addresses]
