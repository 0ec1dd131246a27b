"""BackendTrafficPolicy local rate limits: Envoy's token buckets, per rule and per client.

Theory of operation
-------------------
Envoy's local rate limit gives each rule a bucket of ``requests`` tokens that
is filled back up once per unit (Second, Minute, Hour, Day); a request takes
one token from every rule whose ``clientSelectors`` all match it, and is
answered 429 when any of those buckets is empty. A selector with
``type: Distinct`` (a header, or ``sourceCIDR``) gives each distinct value its
own bucket: each client address in the CIDR, as Envoy Gateway's e2e test
``local-ratelimit-distinct-cidr`` expects, and as Traefik users know a per-IP
rateLimit. A bucket is only a window start and a count, so a full refill is
just a new window.

Distinct buckets are bounded: at most ``MAX_BUCKETS`` per rule. When the table
is full, buckets whose window has passed are dropped (they would be full
again anyway); if none has, the oldest are, so an attacker with many
addresses can at worst reset someone's count, never grow the gateway's memory.
The clock is passed in: the module is pure and its tests need no sleeping.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from edgegw import ir
from edgegw.policy.clientip import Network, in_networks, parse_ip

MAX_BUCKETS = 10_000
HeaderLookup = Callable[[bytes], str | None]


class _Selector:
    __slots__ = ("distinct", "headers", "invert", "network")

    def __init__(self, spec: ir.RateLimitSelector) -> None:
        self.headers = tuple(
            (
                h.name.encode(),
                h.type,
                h.value,
                re.compile(h.value) if h.type == "RegularExpression" else None,
                h.invert,
            )
            for h in spec.headers
        )
        self.network: Network | None = (
            ipaddress.ip_network(spec.source_cidr, strict=False) if spec.source_cidr else None
        )
        self.distinct = spec.source_distinct
        self.invert = spec.source_invert

    def key(self, client: str, header: HeaderLookup) -> str | None:
        """None when the selector does not match; else the distinct part of the bucket key."""
        parts: list[str] = []
        for name, kind, value, pattern, invert in self.headers:
            actual = header(name)
            if kind == "Distinct":
                if actual is None:
                    return None
                parts.append(actual)
                continue
            if pattern is not None:
                hit = actual is not None and pattern.fullmatch(actual) is not None
            else:
                hit = actual == value
            if hit == invert:
                return None
        if self.network is not None:
            address = parse_ip(client)
            inside = address is not None and in_networks(address, (self.network,))
            if inside == self.invert:
                return None
            if self.distinct:
                parts.append(client)
        return "\x00".join(parts)


class _Rule:
    __slots__ = ("_buckets", "requests", "selectors", "window")

    def __init__(self, spec: ir.RateLimitRule) -> None:
        self.selectors = tuple(_Selector(s) for s in spec.selectors)
        self.requests = spec.requests
        self.window = spec.seconds
        self._buckets: dict[str, list[float]] = {}  # key → [window start, tokens used]

    def key(self, client: str, header: HeaderLookup) -> str | None:
        parts = []
        for selector in self.selectors:
            part = selector.key(client, header)
            if part is None:
                return None
            parts.append(part)
        return "\x01".join(parts)

    def peek(self, key: str, now: float) -> bool:
        """Whether ``take`` would succeed now."""
        bucket = self._buckets.get(key)
        return bucket is None or now - bucket[0] >= self.window or bucket[1] < self.requests

    def take(self, key: str, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None or now - bucket[0] >= self.window:
            if bucket is None and len(self._buckets) >= MAX_BUCKETS:
                self._evict(now)
            bucket = self._buckets[key] = [now, 0.0]
        if bucket[1] >= self.requests:
            return False
        bucket[1] += 1
        return True

    def _evict(self, now: float) -> None:
        stale = [k for k, (start, _) in self._buckets.items() if now - start >= self.window]
        for k in stale:
            del self._buckets[k]
        while len(self._buckets) >= MAX_BUCKETS:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimiter:
    """The local rate limits of one rule on one listener."""

    __slots__ = ("_rules",)

    def __init__(self, rules: tuple[ir.RateLimitRule, ...]) -> None:
        self._rules = tuple(_Rule(r) for r in rules)

    def allow(self, client: str, header: HeaderLookup, now: float) -> bool:
        """Take a token from every matching rule; False when one had none left.

        Tokens are taken only when every matching bucket has one, so a
        refused request costs the client nothing in its other buckets.
        """
        matched = []
        for rule in self._rules:
            key = rule.key(client, header)
            if key is not None:
                matched.append((rule, key))
        for rule, key in matched:
            if not rule.peek(key, now):
                return False
        for rule, key in matched:
            rule.take(key, now)
        return True

    def buckets(self) -> int:
        """How many buckets are held (for tests of the memory bound)."""
        return sum(len(rule) for rule in self._rules)
