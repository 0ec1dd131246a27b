"""What to announce where, decided without touching the network (the speaker only answers).

Theory of operation
-------------------
The desired state is a map interface → addresses. An address is announced on an interface
when the gateway holds it, it lies in an IPAddressPool, and an L2Advertisement that selects
that pool selects that interface (an advertisement with no ``interfaces`` selects every
interface the speaker was started on, as MetalLB does with every node interface). Addresses
the gateway holds outside every pool are not announced: they are the host's own, or someone
else's. Without any L2Advertisement nothing is announced, as in MetalLB.

`diff` turns the old and new desired states into an ordered plan: first make new addresses
local to the host, then take them on interfaces (so no client learns our MAC before the
kernel accepts the traffic), then release, then drop local addresses nothing announces any
more (so the kernel stops accepting only after nobody is told to send here).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from edgegw.pools import IPAddress, Pool

Announcements = Mapping[str, frozenset[IPAddress]]
"""Interface name → the addresses announced on it."""


@dataclass(frozen=True, slots=True)
class L2Advertisement:
    """One metallb.io L2Advertisement, reduced to its pool and interface selection.

    ``pool_selectors`` are label selectors in Kubernetes form (``matchLabels`` and
    ``matchExpressions``); with neither pools nor selectors, every pool is selected.
    """

    name: str
    namespace: str = "default"
    ip_address_pools: tuple[str, ...] = ()
    pool_selectors: tuple[Mapping[str, object], ...] = ()
    interfaces: tuple[str, ...] = ()

    def selects(self, pool: Pool) -> bool:
        if not self.ip_address_pools and not self.pool_selectors:
            return True
        if pool.name in self.ip_address_pools:
            return True
        return any(label_selector_matches(s, pool.labels) for s in self.pool_selectors)


@dataclass(frozen=True, slots=True)
class AddLocal:
    """Make ``address`` local to this host, so the kernel accepts traffic for it."""

    address: IPAddress


@dataclass(frozen=True, slots=True)
class Take:
    """Start announcing ``address`` on ``interface``: gratuitous burst, then answer."""

    interface: str
    address: IPAddress


@dataclass(frozen=True, slots=True)
class Release:
    """Stop answering for ``address`` on ``interface``."""

    interface: str
    address: IPAddress


@dataclass(frozen=True, slots=True)
class RemoveLocal:
    """The host no longer accepts traffic for ``address``."""

    address: IPAddress


Action = AddLocal | Take | Release | RemoveLocal


@dataclass(frozen=True, slots=True)
class Decision:
    """The desired state and, for logs, what was left out and why."""

    announcements: Announcements
    skipped: Mapping[str, str] = field(default_factory=dict)


def plan(
    held: Iterable[str],
    pools: Sequence[Pool],
    advertisements: Sequence[L2Advertisement],
    interfaces: Sequence[str],
) -> Decision:
    """Decide where each held address is announced.

    Args:
        held: the addresses the gateway holds (its Gateways' ``status.addresses``).
        pools: every IPAddressPool.
        advertisements: every L2Advertisement.
        interfaces: the interfaces this speaker runs on (``--interface``).

    Returns:
        The announcements; addresses not announced anywhere are in ``skipped`` with a reason.
    """
    result: dict[str, set[IPAddress]] = {name: set() for name in interfaces}
    skipped: dict[str, str] = {}
    for text in held:
        address = _parse(text)
        pool = next((p for p in sorted(pools, key=lambda p: p.name) if address in p), None)
        if address is None or pool is None:
            skipped[text] = "not in any IPAddressPool"
            continue
        targets = _interfaces_for(pool, advertisements, interfaces)
        if not targets:
            skipped[text] = f"no L2Advertisement selects IPAddressPool {pool.name} here"
        for name in targets:
            result[name].add(address)
    announcements = {name: frozenset(found) for name, found in result.items() if found}
    return Decision(announcements, skipped)


def _interfaces_for(
    pool: Pool, advertisements: Sequence[L2Advertisement], interfaces: Sequence[str]
) -> set[str]:
    chosen: set[str] = set()
    for ad in advertisements:
        if ad.selects(pool):
            chosen.update(i for i in interfaces if not ad.interfaces or i in ad.interfaces)
    return chosen


def diff(old: Announcements, new: Announcements) -> list[Action]:
    """The ordered actions that turn ``old`` into ``new`` (see the module docstring)."""
    old_local = _local(old)
    new_local = _local(new)
    actions: list[Action] = [AddLocal(a) for a in _ordered(new_local - old_local)]
    for name in sorted(new):
        actions += [Take(name, a) for a in _ordered(new[name] - old.get(name, frozenset()))]
    for name in sorted(old):
        actions += [Release(name, a) for a in _ordered(old[name] - new.get(name, frozenset()))]
    actions += [RemoveLocal(a) for a in _ordered(old_local - new_local)]
    return actions


def withdraw_all(current: Announcements) -> list[Action]:
    """Everything needed to let go of every address, as on shutdown."""
    return diff(current, {})


def label_selector_matches(selector: Mapping[str, object], labels: Mapping[str, str]) -> bool:
    """Kubernetes label selector semantics: all matchLabels and all matchExpressions hold."""
    match_labels = selector.get("matchLabels") or {}
    if isinstance(match_labels, Mapping) and any(
        labels.get(str(k)) != str(v) for k, v in match_labels.items()
    ):
        return False
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        return False
    return all(_expression_holds(e, labels) for e in expressions if isinstance(e, Mapping))


def _expression_holds(expression: Mapping[str, object], labels: Mapping[str, str]) -> bool:
    key = str(expression.get("key", ""))
    operator = expression.get("operator")
    raw_values = expression.get("values") or []
    values = {str(v) for v in raw_values} if isinstance(raw_values, list) else set()
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False


def _local(announcements: Announcements) -> frozenset[IPAddress]:
    return frozenset().union(*announcements.values())


def _ordered(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return sorted(addresses, key=lambda a: (a.version, int(a)))


def _parse(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
