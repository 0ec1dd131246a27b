"""Name resolution for ``fqdn`` backend endpoints and ExternalName Services.

``getaddrinfo`` reports no TTL, so answers are kept for a fixed ``ttl``
(30 s by default: short enough that a moved backend is found within a minute,
long enough that resolution stays off the hot path) and failures for
``negative_ttl`` (5 s). When a refresh fails and an older answer exists, the
older answer is served on ("stale on error"): a DNS hiccup should not turn
into 503s for a backend whose address has not changed.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

import trio

DEFAULT_TTL = 30.0
NEGATIVE_TTL = 5.0


class ResolveError(Exception):
    """The name did not resolve to any address."""


@dataclass(slots=True)
class _Entry:
    expires: float
    addresses: tuple[str, ...]
    error: str | None = None


class DNSCache:
    """A small TTL cache in front of trio's ``getaddrinfo``."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        negative_ttl: float = NEGATIVE_TTL,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    async def resolve(self, host: str) -> tuple[str, ...]:
        """Addresses for ``host``, IPv4 and IPv6, in resolver order.

        Raises:
            ResolveError: the name does not resolve (now, or within ``negative_ttl``).
        """
        now = self._clock()
        entry = self._entries.get(host)
        if entry is not None and entry.expires > now:
            if entry.error is not None:
                raise ResolveError(entry.error)
            return entry.addresses
        try:
            addresses = await self._lookup(host)
        except (OSError, ResolveError) as exc:
            if entry is not None and entry.addresses:
                entry.expires = now + self._negative_ttl
                return entry.addresses
            self._entries[host] = _Entry(now + self._negative_ttl, (), str(exc) or host)
            raise ResolveError(f"{host}: {exc}") from exc
        self._entries[host] = _Entry(now + self._ttl, addresses)
        return addresses

    async def _lookup(self, host: str) -> tuple[str, ...]:
        infos = await trio.socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        seen: dict[str, None] = {}
        for _family, _type, _proto, _canon, sockaddr in infos:
            seen.setdefault(str(sockaddr[0]), None)
        if not seen:
            raise ResolveError(f"{host}: no addresses")
        return tuple(seen)
