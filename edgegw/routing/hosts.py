"""Hostname lookup with Gateway API wildcards, in precedence order, without scanning.

A wildcard ``*.example.com`` stands for one or more labels in front of
``example.com``: it matches ``a.example.com`` and ``a.b.example.com`` but not
``example.com``. Precedence is exact name first, then wildcards from the
longest suffix down, then whatever has no hostname at all. Walking the labels
of the request's host gives every candidate key in that order, so a lookup
costs one dict probe per label whatever the number of entries.

The same index selects listeners (``lookup``: the most specific only) and
groups routes (``matches``: every group, most specific first, so a request
that no rule of the exact-host routes takes can still fall through to the
wildcard ones).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")


def normalize_host(host: str) -> str:
    """Lower-case, without the trailing dot of a fully qualified name."""
    return host.rstrip(".").lower()


def host_matches(pattern: str, host: str) -> bool:
    """True when ``host`` is named by ``pattern`` (exact or ``*.`` wildcard)."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


@dataclass(frozen=True, slots=True)
class HostIndex(Generic[T]):
    """Values keyed by hostname: ``exact`` names, ``wildcard`` suffixes, ``fallback``.

    ``wildcard`` keys are the part after ``*.`` (``example.com`` for
    ``*.example.com``). ``fallback`` is what entries without a hostname map to.
    """

    exact: Mapping[str, T] = field(default_factory=dict)
    wildcard: Mapping[str, T] = field(default_factory=dict)
    fallback: T | None = None

    def matches(self, host: str) -> Iterator[T]:
        """Every value whose hostname takes ``host``, most specific first."""
        found = self.exact.get(host)
        if found is not None:
            yield found
        if self.wildcard:
            dot = host.find(".")
            while dot != -1:
                found = self.wildcard.get(host[dot + 1 :])
                if found is not None:
                    yield found
                dot = host.find(".", dot + 1)
        if self.fallback is not None:
            yield self.fallback

    def lookup(self, host: str) -> T | None:
        """The most specific value for ``host``, or None."""
        found = self.exact.get(host)
        if found is not None:
            return found
        if not self.wildcard:  # the usual case: no generator needed
            return self.fallback
        return next(self.matches(host), None)

    def map(self, fn: Callable[[T], U]) -> HostIndex[U]:
        """The same keys, each value passed through ``fn``."""
        return HostIndex(
            exact={key: fn(value) for key, value in self.exact.items()},
            wildcard={key: fn(value) for key, value in self.wildcard.items()},
            fallback=None if self.fallback is None else fn(self.fallback),
        )


def group_by_host(items: Iterable[tuple[str | None, T]]) -> HostIndex[list[T]]:
    """Index ``(hostname, value)`` pairs; a None or ``*`` hostname means any host.

    Values sharing a key keep their input order, which callers use to keep
    the earliest (listener order) or to sort further (route precedence).
    """
    exact: dict[str, list[T]] = {}
    wildcard: dict[str, list[T]] = {}
    fallback: list[T] = []
    for hostname, value in items:
        if hostname is None or hostname in ("", "*"):
            fallback.append(value)
            continue
        name = normalize_host(hostname)
        if name.startswith("*."):
            wildcard.setdefault(name[2:], []).append(value)
        else:
            exact.setdefault(name, []).append(value)
    return HostIndex(exact=exact, wildcard=wildcard, fallback=fallback or None)
