"""Static Gateway addresses: can traffic reach them on this host?

A ``spec.addresses`` IPAddress is usable when the host has it on an interface
(the caller probes that, ``TranslateOptions.local_addresses``) or when it lies
in an IPAddressPool that an L2Advertisement announces, so that ``edgegw l2``
makes it deliverable. Anything else would still bind, thanks to IP_FREEBIND,
and then receive nothing: such a Gateway is Programmed=False/AddressNotUsable
rather than reported ready. Addresses a pool gives a Gateway that asked for
none are not judged here; the pool's own rules hold for them.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgegw import api
from edgegw.translate.index import Index, selector_matches


def announced_pools(index: Index) -> set[str]:
    """Names of the IPAddressPools some L2Advertisement selects (all, when it names none)."""
    found: set[str] = set()
    for pool in index.resources.ip_address_pools:
        for ad in index.resources.l2_advertisements:
            spec = ad.spec
            if (
                (not spec.ip_address_pools and not spec.ip_address_pool_selectors)
                or pool.metadata.name in spec.ip_address_pools
                or any(
                    selector_matches(s, pool.metadata.labels)
                    for s in spec.ip_address_pool_selectors
                )
            ):
                found.add(pool.metadata.name)
    return found


def unusable(
    gateway: api.Gateway,
    pool_of: Mapping[str, str],
    announced: set[str],
    local: frozenset[str] | None,
) -> list[str]:
    """The Gateway's static addresses that are neither local nor in an announced pool.

    Args:
        gateway: the Gateway whose ``spec.addresses`` are judged.
        pool_of: address → the pool it was allocated from, for addresses a pool holds.
        announced: names of the pools an L2Advertisement announces.
        local: the addresses this host has; None when the caller did not look (no check).

    Returns:
        The unusable address values, in spec order.
    """
    if local is None:
        return []
    out = []
    for address in gateway.spec.addresses:
        value = address.value
        if not value or value in local or pool_of.get(value) in announced:
            continue
        out.append(value)
    return out
