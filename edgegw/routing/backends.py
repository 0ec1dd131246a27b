"""Weighted backend choice, with the randomness passed in so tests can pin it."""

from __future__ import annotations

from collections.abc import Sequence

from edgegw import ir


def pick_backend(
    rule_or_backends: ir.HTTPRouteRule | ir.L4Route | Sequence[ir.Backend], rand: float
) -> ir.Backend | None:
    """Choose a backend in proportion to its weight.

    Invalid backends stay in the draw with their weight: the spec wants their
    share of traffic answered with 500, not spread over the valid ones.

    Args:
        rule_or_backends: a rule or L4 route (its ``backends``), or backends.
        rand: a number in [0, 1), e.g. ``random.random()``.

    Returns:
        The chosen backend; None when there is none or every weight is 0.
    """
    if isinstance(rule_or_backends, ir.HTTPRouteRule | ir.L4Route):
        backends: Sequence[ir.Backend] = rule_or_backends.backends
    else:
        backends = rule_or_backends
    if len(backends) == 1:  # the common case, on every request: no draw needed
        only = backends[0]
        return only if only.weight > 0 else None
    total = sum(max(backend.weight, 0) for backend in backends)
    if total <= 0:
        return None
    target = rand * total
    chosen: ir.Backend | None = None
    for backend in backends:
        if backend.weight <= 0:
            continue
        chosen = backend
        target -= backend.weight
        if target < 0:
            break
    return chosen
