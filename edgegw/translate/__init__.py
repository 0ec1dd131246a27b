"""Resources → IR and statuses: the pure heart of edgegw.

``translate()`` takes every loaded resource and returns what the data plane
serves (``ir.Model``) plus the status each Gateway API resource would carry in
a cluster. It does no I/O and reads no clock (pass ``TranslateOptions.now`` to
check certificate validity), so the same input always gives the same output;
the golden tests under ``tests/golden`` pin that output down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from edgegw import ir
from edgegw.pools import PoolAssignment

__all__ = [
    "PoolAssignment",
    "ResourceStatus",
    "TranslateOptions",
    "TranslateResult",
    "translate",
]


class TranslateOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What the translator needs from outside the config directory."""

    controller_name: str = "edgegw.io/gateway-controller"
    default_addresses: tuple[str, ...] = ("0.0.0.0", "::")
    # (namespace, gateway name) → addresses from a pool; see PoolAssignment
    pool_assignments: Mapping[tuple[str, str], PoolAssignment] | None = None
    generation: int = 0
    # POSIX time to judge certificate validity at; None skips the check
    now: float | None = None


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


from edgegw.translate.translator import translate  # noqa: E402
