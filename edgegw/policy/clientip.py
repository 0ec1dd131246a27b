"""Who the client is: ClientTrafficPolicy ``clientIPDetection``, as Envoy reads it.

- No detection: the peer address of the connection.
- ``xForwardedFor.numTrustedHops: N``: the N-th address from the right of
  ``X-Forwarded-For`` (the proxies in front each appended one); fewer than N
  entries, or a malformed one: the peer address.
- ``xForwardedFor.trustedCIDRs``: only when the peer is trusted, walk
  ``X-Forwarded-For`` from the right past trusted addresses; the first
  untrusted one is the client (all trusted: the leftmost).
- ``customHeader``: the address in that header; absent or malformed, the peer
  address, or with ``failClosed`` no address at all (the caller answers 403).

The answer feeds authorization rules, rate limit buckets and the access log;
``X-Forwarded-For`` itself is passed on with the peer appended, as Envoy does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from edgegw import ir

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Headers = Sequence[tuple[bytes, bytes]]
MAX_HOPS = 64  # a longer X-Forwarded-For is read only this far from the right


def parse_ip(text: str) -> Address | None:
    """An IP literal (IPv4-mapped IPv6 unwrapped, brackets and zone allowed); else None."""
    text = text.strip().strip("[]")
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


class ClientIPDetector:
    """One listener's detection, CIDRs parsed once at reload."""

    __slots__ = ("_config", "_trusted")

    def __init__(self, config: ir.ClientIPDetection) -> None:
        self._config = config
        self._trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(c, strict=False) for c in config.trusted_cidrs
        )

    def client(self, peer: str, headers: Headers) -> str | None:
        """The client's address as text; None only for a failClosed custom header."""
        config = self._config
        if config.custom_header is not None:
            found = _header_ip(headers, config.custom_header.encode())
            if found is None:
                return None if config.fail_closed else peer
            return str(found)
        hops = _forwarded_for(headers)
        if config.num_trusted_hops:
            if len(hops) < config.num_trusted_hops:
                return peer
            found = parse_ip(hops[-config.num_trusted_hops])
            return str(found) if found is not None else peer
        if self._trusted:
            return self._through_trusted(peer, hops)
        return peer

    def _through_trusted(self, peer: str, hops: list[str]) -> str:
        address = parse_ip(peer)
        if address is None or not in_networks(address, self._trusted):
            return peer
        for hop in reversed(hops):
            found = parse_ip(hop)
            if found is None:
                return str(address)
            address = found
            if not in_networks(found, self._trusted):
                return str(found)
        return str(address)


def _forwarded_for(headers: Headers) -> list[str]:
    """Every X-Forwarded-For entry in order, at most ``MAX_HOPS`` from the right."""
    hops: list[str] = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            hops += value.decode("latin-1").split(",")
    return [h.strip() for h in hops[-MAX_HOPS:]]


def _header_ip(headers: Headers, name: bytes) -> Address | None:
    for key, value in headers:
        if key == name:
            return parse_ip(value.decode("latin-1").split(",")[0])
    return None
