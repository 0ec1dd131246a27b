"""Hostname matching between listeners and routes, with Gateway API wildcards.

A wildcard ``*.example.com`` stands for one or more labels in front of
``example.com`` (so ``a.b.example.com`` matches, ``example.com`` does not).
When a listener and a route both name hosts, a route serves only where the two
overlap, and the more specific side of each overlapping pair is what the data
plane matches on.
"""

from __future__ import annotations

from collections.abc import Iterable


def is_wildcard(host: str) -> bool:
    return host.startswith("*.")


def matches(pattern: str, host: str) -> bool:
    """True when ``host`` (itself possibly a wildcard) lies within ``pattern``."""
    if pattern == host:
        return True
    return is_wildcard(pattern) and host.endswith(pattern[1:])


def _overlap(listener: str, route: str) -> str | None:
    if matches(listener, route):
        return route
    if matches(route, listener):
        return listener
    return None


def intersect(listener: str | None, route: Iterable[str]) -> tuple[str, ...] | None:
    """The hostnames a route serves on a listener; None when they share none.

    An empty result means "every host the listener accepts" (neither side
    restricts hosts).
    """
    route_hosts = tuple(route)
    if not listener:
        return route_hosts
    if not route_hosts:
        return (listener,)
    found: list[str] = []
    for host in route_hosts:
        common = _overlap(listener, host)
        if common is not None and common not in found:
            found.append(common)
    return tuple(found) or None
