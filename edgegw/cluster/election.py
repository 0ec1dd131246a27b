"""Who announces which address, decided from a snapshot of etcd without touching anything.

Theory of operation
-------------------
Each live speaker has a member key bound to its lease, listing the addresses it can announce
(its gateway holds them and an L2Advertisement puts them on one of its interfaces). Each
announced address has an owner key naming its node, bound to that node's lease: when the node
dies its lease expires and both keys vanish together.

`decide` gives one node its part:

- *announce* the addresses whose owner key is this node under its current lease, but only while
  the lease is certainly alive (`healthy`): a node that cannot renew stops answering before etcd
  can expire its lease and let another node take over, so two nodes never answer at once;
- *claim* an address nobody owns when this node ranks first among the members able to announce
  it. Ranking is MetalLB's: candidates sorted by the SHA-256 of ``node#address``, which spreads
  addresses over nodes and needs no coordination. A claim is an etcd transaction that succeeds
  only if the owner key does not exist, so a stale view can delay a takeover but never make two
  owners. A node ranked *r* also claims once the address has been unowned for *r* times `STAGGER`
  seconds, in case the nodes ranked before it cannot;
- *release* (delete) its owner keys for addresses it can no longer announce, so the next node
  takes them at once, and owner keys its own earlier incarnation left under an old lease.

An owned address stays with its owner while the owner lives: a node that returns, even one that
ranks first, takes nothing back (no preemption), so a flapping node does not move addresses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

STAGGER = 0.5


@dataclass(frozen=True, slots=True)
class Owner:
    """The owner key of one address: who announces it, under which lease."""

    node: str
    lease: int


@dataclass(frozen=True, slots=True)
class Plan:
    """One node's part: what to announce now, and what to claim and release in etcd."""

    announce: frozenset[str] = frozenset()
    claim: tuple[str, ...] = ()
    release: tuple[tuple[str, Owner], ...] = ()


def rank(address: str, nodes: Iterable[str]) -> list[str]:
    """The candidates for ``address`` in order of preference (MetalLB's hash rule)."""
    return sorted(set(nodes), key=lambda node: _hash(node, address))


def _hash(node: str, address: str) -> bytes:
    return hashlib.sha256(f"{node}#{address}".encode()).digest()


def decide(
    node: str,
    lease: int,
    *,
    healthy: bool,
    eligible: frozenset[str],
    members: Mapping[str, frozenset[str]],
    owners: Mapping[str, Owner],
    unowned_for: Mapping[str, float],
) -> Plan:
    """Decide this node's part; see the module docstring for the rules.

    Args:
        node: this node's name.
        lease: this node's current lease (0: none).
        healthy: the lease was renewed recently enough that etcd cannot have expired it.
        eligible: the addresses this node can announce now.
        members: every live member and the addresses it can announce (this node included
            or not: it is added).
        owners: the owner key of every owned address.
        unowned_for: for each address without an owner, how many seconds it has been so.

    Returns:
        The `Plan`. Without a lease or health, nothing is announced or claimed.
    """
    if not lease or not healthy:
        return Plan()
    mine = {a for a, o in owners.items() if o.node == node and o.lease == lease}
    announce = frozenset(mine & eligible)
    release = [(a, owners[a]) for a in sorted(mine - eligible)]
    release += [(a, o) for a, o in sorted(owners.items()) if o.node == node and o.lease != lease]
    candidates = {**members, node: eligible}
    claim = []
    for address in sorted(eligible - set(owners)):
        able = [n for n, addresses in candidates.items() if address in addresses]
        position = rank(address, able).index(node)
        if position == 0 or unowned_for.get(address, 0.0) >= position * STAGGER:
            claim.append(address)
    return Plan(announce, tuple(claim), tuple(release))
