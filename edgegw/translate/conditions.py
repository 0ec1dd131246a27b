"""Status conditions as the Gateway API writes them, and the names of their reasons.

A resource's conditions are built up while the translator walks it: the
first problem found for a condition type is the one reported (it is usually
the root cause), and whatever was not marked false by the end is true. Keeping
that rule here keeps every caller to one line per finding.
"""

from __future__ import annotations

from typing import Any

Condition = dict[str, Any]

# condition types
ACCEPTED = "Accepted"
PROGRAMMED = "Programmed"
RESOLVED_REFS = "ResolvedRefs"
CONFLICTED = "Conflicted"
PARTIALLY_INVALID = "PartiallyInvalid"
INSECURE_FRONTEND = "InsecureFrontendValidationMode"

_ORDER = (ACCEPTED, PROGRAMMED, RESOLVED_REFS, CONFLICTED, PARTIALLY_INVALID)


class Conditions:
    """The conditions of one resource (or listener, or route parent) under construction."""

    def __init__(self, generation: int) -> None:
        self._generation = generation
        self._by_type: dict[str, Condition] = {}

    def set(self, type_: str, ok: bool, reason: str, message: str) -> None:
        """Record a condition, replacing any earlier one of the same type."""
        self._by_type[type_] = {
            "type": type_,
            "status": "True" if ok else "False",
            "reason": reason,
            "message": message,
            "observedGeneration": self._generation,
        }

    def fail(self, type_: str, reason: str, message: str) -> None:
        """Mark ``type_`` false unless an earlier finding already did."""
        if self.is_ok(type_):
            self.set(type_, False, reason, message)

    def default(self, type_: str, ok: bool, reason: str, message: str) -> None:
        """Record a condition only when nothing has been said about ``type_`` yet."""
        if type_ not in self._by_type:
            self.set(type_, ok, reason, message)

    def is_ok(self, type_: str) -> bool:
        """True unless ``type_`` has been marked false (an unset condition is not a failure)."""
        found = self._by_type.get(type_)
        return found is None or found["status"] == "True"

    def get(self, type_: str) -> Condition | None:
        return self._by_type.get(type_)

    def to_list(self) -> list[Condition]:
        """The conditions in a stable order: the well-known types first, the rest as added."""
        known = [self._by_type[t] for t in _ORDER if t in self._by_type]
        rest = [c for t, c in self._by_type.items() if t not in _ORDER]
        return known + rest
