"""Where edgegw keeps its state in etcd, and the values' shapes.

Every key lives under ``edgegw/``:

- ``edgegw/members/NODE``: a speaker that is alive, bound to its lease; the value lists the
  addresses it can announce (JSON `MemberValue`).
- ``edgegw/owners/ADDRESS``: the node announcing the address, bound to that node's lease, so it
  vanishes with the node.
- ``edgegw/allocator``: the node whose gateway writes pool allocations, bound to its lease.
- ``edgegw/allocations``: every Gateway's pool addresses (JSON `Allocations`), no lease.
"""

from __future__ import annotations

import msgspec

PREFIX = b"edgegw/"
MEMBERS = PREFIX + b"members/"
OWNERS = PREFIX + b"owners/"
ALLOCATOR = PREFIX + b"allocator"
ALLOCATIONS = PREFIX + b"allocations"


class MemberValue(msgspec.Struct, frozen=True):
    """What a speaker says about itself: the addresses it can announce here."""

    addresses: tuple[str, ...] = ()


class GatewayAllocation(msgspec.Struct, frozen=True):
    """One Gateway's pool addresses."""

    namespace: str
    name: str
    addresses: tuple[str, ...]


class Allocations(msgspec.Struct, frozen=True):
    """The allocations the elected gateway wrote, and which node wrote them."""

    node: str
    gateways: tuple[GatewayAllocation, ...] = ()


def member_key(node: str) -> bytes:
    return MEMBERS + node.encode()


def owner_key(address: str) -> bytes:
    return OWNERS + address.encode()
