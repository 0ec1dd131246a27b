"""What ``translate()`` takes besides the resources, and what it returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from edgegw import ir
from edgegw.pools import PoolAssignment


class TranslateOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What the translator needs from outside the config directory."""

    controller_name: str = "edgegw.io/gateway-controller"
    default_addresses: tuple[str, ...] = ("0.0.0.0", "::")
    # (namespace, gateway name) → addresses from a pool; see PoolAssignment
    pool_assignments: Mapping[tuple[str, str], PoolAssignment] | None = None
    generation: int = 0
    # POSIX time to judge certificate validity at; None skips the check
    now: float | None = None
    # the Gateways' static addresses this host has on an interface; None skips the check
    local_addresses: frozenset[str] | None = None


class ResourceStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One resource's status, in the Gateway API's camelCase JSON shape."""

    api_version: str
    kind: str
    name: str
    namespace: str | None
    generation: int
    status: dict[str, Any]


class TranslateResult(msgspec.Struct, frozen=True, kw_only=True):
    model: ir.Model
    statuses: tuple[ResourceStatus, ...]
