"""Resources → IR and statuses: the pure heart of edgegw.

``translate()`` takes every loaded resource and returns what the data plane
serves (``ir.Model``) plus the status each Gateway API resource would carry in
a cluster. It does no I/O and reads no clock (pass ``TranslateOptions.now`` to
check certificate validity), so the same input always gives the same output;
the golden tests under ``tests/golden`` pin that output down.
"""

from __future__ import annotations

from edgegw.pools import PoolAssignment
from edgegw.translate.result import ResourceStatus, TranslateOptions, TranslateResult
from edgegw.translate.translator import translate

__all__ = [
    "PoolAssignment",
    "ResourceStatus",
    "TranslateOptions",
    "TranslateResult",
    "translate",
]
