"""MetalLB's IPAddressPool and L2Advertisement (metallb.io/v1beta1).

edgegw reads them to hand addresses to Gateways and to tell the L2 speaker
what to announce. ``serviceAllocation`` and ``nodeSelectors`` are accepted but
have no effect: there are no Services to allocate for and one node.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import msgspec

from edgegw.api.meta import LabelSelector, Model, Object
from edgegw.errors import FieldError


def _check_address_range(value: str) -> None:
    """A CIDR (``10.0.0.0/24``) or an inclusive range (``10.0.0.10-10.0.0.20``)."""
    if "-" in value:
        first, _, last = (part.strip() for part in value.partition("-"))
        low, high = ipaddress.ip_address(first), ipaddress.ip_address(last)
        if low.version != high.version or int(low) > int(high):
            raise ValueError("range start must not be after its end, in the same IP family")
    else:
        ipaddress.ip_network(value, strict=False)


class ServiceAllocation(Model, kw_only=True, frozen=True):
    priority: int | None = None
    namespaces: tuple[str, ...] = ()
    namespace_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()


class IPAddressPoolSpec(Model, kw_only=True, frozen=True):
    addresses: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)]
    auto_assign: bool = True
    avoid_buggy_ips: bool = msgspec.field(default=False, name="avoidBuggyIPs")
    service_allocation: ServiceAllocation | None = None

    def __post_init__(self) -> None:
        for i, value in enumerate(self.addresses):
            try:
                _check_address_range(value)
            except ValueError as exc:
                raise FieldError(f"addresses[{i}]", f"{value!r}: {exc}") from None


class IPAddressPool(Object, kw_only=True, frozen=True):
    spec: IPAddressPoolSpec


class L2AdvertisementSpec(Model, kw_only=True, frozen=True):
    ip_address_pools: tuple[str, ...] = ()
    ip_address_pool_selectors: tuple[LabelSelector, ...] = ()
    node_selectors: tuple[LabelSelector, ...] = ()
    interfaces: tuple[str, ...] = ()


class L2Advertisement(Object, kw_only=True, frozen=True):
    spec: L2AdvertisementSpec = L2AdvertisementSpec()
