"""Address allocation from MetalLB IPAddressPools, as a pure function of plain inputs.

Theory of operation
-------------------
`allocate` is called on every reload with the pools, the Gateways that exist now and what each
Gateway held after the previous reload (restored from ``STATE_DIR/allocations.json`` after a
restart). It returns, per Gateway, the addresses it holds from now on. Three passes, each in
namespace/name order so that the outcome never depends on file order:

1. *Keep*: an address a Gateway held before stays with it while it still asks for it: it is
   still in a pool the Gateway may use, and, when the Gateway lists ``spec.addresses``, it is
   still listed. This is what makes allocation stable across reloads and restarts.
2. *Requested*: every ``spec.addresses`` IPAddress inside a pool is honoured unless another
   Gateway holds it (reason AddressNotUsable). Addresses outside every pool are not ours to
   manage; they pass through untouched, and binding them is the listener code's business.
3. *Automatic*: a Gateway without ``spec.addresses`` and nothing kept gets the lowest free
   address of the first pool it may use: the one its ``metallb.io/address-pool`` annotation
   names, else every ``autoAssign`` pool in name order. Nothing free gives AddressNotAssigned.

Pools are parsed once into integer ranges (`Pool.from_spec`) so that the lowest free address of
a /64 is found by skipping only the addresses in use, never by walking the range.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

POOL_ANNOTATION = "metallb.io/address-pool"
ALLOCATIONS_FILE = "allocations.json"
NOT_ASSIGNED = "AddressNotAssigned"
NOT_USABLE = "AddressNotUsable"

GatewayKey = tuple[str, str]
"""A Gateway's (namespace, name)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class AddressRange:
    """An inclusive range of one IP family, kept as integers to compare and step cheaply."""

    version: int
    first: int
    last: int

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return address.version == self.version and self.first <= int(address) <= self.last


@dataclass(frozen=True, slots=True)
class Pool:
    """One IPAddressPool, reduced to what allocation needs."""

    name: str
    ranges: tuple[AddressRange, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_spec(
        cls,
        name: str,
        addresses: Iterable[str],
        *,
        auto_assign: bool = True,
        avoid_buggy_ips: bool = False,
        labels: Mapping[str, str] | None = None,
    ) -> Pool:
        """Parse ``spec.addresses`` entries: CIDRs, ``a-b`` ranges or single addresses.

        Raises:
            ValueError: an entry is not an address, CIDR or same-family ascending range;
                the message names the entry.
        """
        ranges = tuple(parse_range(text) for text in addresses)
        return cls(name, ranges, auto_assign, avoid_buggy_ips, dict(labels or {}))

    def __contains__(self, address: object) -> bool:
        return any(address in r for r in self.ranges)

    def usable(self, address: IPAddress) -> bool:
        """Whether the pool may hand out ``address`` (avoidBuggyIPs skips IPv4 .0 and .255)."""
        if address not in self:
            return False
        return not (self.avoid_buggy_ips and _is_buggy(address))

    def lowest_free(self, taken: Iterable[IPAddress]) -> IPAddress | None:
        """The lowest usable address not in ``taken``, or None when the pool is exhausted.

        Steps over used and buggy addresses only, so it is cheap even for an IPv6 /64.
        """
        used = {(a.version, int(a)) for a in taken}
        for r in sorted(self.ranges, key=lambda r: (r.version, r.first)):
            value = r.first
            while value <= r.last:
                address = _make(r.version, value)
                if (r.version, value) not in used and not (
                    self.avoid_buggy_ips and _is_buggy(address)
                ):
                    return address
                value += 1
        return None


@dataclass(frozen=True, slots=True)
class GatewayRequest:
    """What a Gateway asks of the allocator: its annotations and ``spec.addresses`` IPs."""

    annotations: Mapping[str, str] = field(default_factory=dict)
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PoolAssignment:
    """What a Gateway holds after allocation, and why it holds less than it asked for.

    ``reason`` is empty when everything asked for is held, else ``AddressNotAssigned`` (no
    pool could give an address) or ``AddressNotUsable`` (a requested address is held by
    another Gateway); ``message`` says which, for the Gateway's Programmed condition.
    ``pools`` maps each held address that came from a pool to that pool's name.
    """

    addresses: tuple[str, ...] = ()
    pools: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""
    message: str = ""


def parse_range(text: str) -> AddressRange:
    """Parse one pool entry (``10.0.0.0/24``, ``10.0.0.5-10.0.0.9``, ``fd00::1``).

    Raises:
        ValueError: the entry is malformed, mixes families or runs backwards.
    """
    entry = text.strip()
    try:
        if "-" in entry:
            low_text, high_text = (part.strip() for part in entry.split("-", 1))
            low, high = ipaddress.ip_address(low_text), ipaddress.ip_address(high_text)
            if low.version != high.version or int(low) > int(high):
                raise ValueError("the range must run upwards within one IP family")
            return AddressRange(low.version, int(low), int(high))
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError as exc:
        raise ValueError(f"invalid pool address {text!r}: {exc}") from None
    first, last = int(network.network_address), int(network.broadcast_address)
    return AddressRange(network.version, first, last)


def allocate(
    pools: Sequence[Pool],
    gateways: Mapping[GatewayKey, GatewayRequest],
    previous: Mapping[GatewayKey, Sequence[str]],
) -> dict[GatewayKey, PoolAssignment]:
    """Decide which addresses every Gateway holds; see the module docstring for the rules.

    Args:
        pools: every IPAddressPool; order does not matter (they are taken by name).
        gateways: every Gateway that exists now.
        previous: what each Gateway held before; entries for Gateways gone are dropped.

    Returns:
        A `PoolAssignment` for every key of ``gateways``.
    """
    ordered_pools = sorted(pools, key=lambda p: p.name)
    order = sorted(gateways)
    holder: dict[IPAddress, GatewayKey] = {}
    held: dict[GatewayKey, list[tuple[IPAddress, str | None]]] = {key: [] for key in order}
    for key in order:
        before = previous.get(key, ())
        for address, pool in _kept(ordered_pools, gateways[key], before, holder):
            holder[address] = key
            held[key].append((address, pool))
    problems: dict[GatewayKey, tuple[str, str]] = {}
    for key in order:
        problem = _place(key, gateways[key], ordered_pools, holder, held[key])
        if problem:
            problems[key] = problem
    return {key: _assignment(held[key], problems.get(key)) for key in order}


def _place(
    key: GatewayKey,
    request: GatewayRequest,
    pools: Sequence[Pool],
    holder: dict[IPAddress, GatewayKey],
    mine: list[tuple[IPAddress, str | None]],
) -> tuple[str, str] | None:
    """Give one Gateway its requested or automatic addresses; return (reason, message)."""
    if request.addresses:
        return _place_requested(key, request, pools, holder, mine)
    if mine:
        return None
    candidates, problem = _candidate_pools(request, pools)
    for pool in candidates:
        address = pool.lowest_free(a for a in holder if a in pool)
        if address is not None:
            holder[address] = key
            mine.append((address, pool.name))
            return None
    if not candidates:
        return NOT_ASSIGNED, problem
    names = ", ".join(p.name for p in candidates)
    return NOT_ASSIGNED, f"no free address left in IPAddressPool {names}"


def _place_requested(
    key: GatewayKey,
    request: GatewayRequest,
    pools: Sequence[Pool],
    holder: dict[IPAddress, GatewayKey],
    mine: list[tuple[IPAddress, str | None]],
) -> tuple[str, str] | None:
    messages: list[str] = []
    for text in request.addresses:
        address = _parse_ip(text)
        if address is None or any(address == a for a, _ in mine):
            continue
        pool = next((p for p in pools if p.usable(address)), None)
        owner = holder.get(address)
        if pool is None:
            mine.append((address, None))
        elif owner is not None and owner != key:
            messages.append(f"address {address} is in use by Gateway {owner[0]}/{owner[1]}")
        else:
            holder[address] = key
            mine.append((address, pool.name))
    return (NOT_USABLE, "; ".join(messages)) if messages else None


def _kept(
    pools: Sequence[Pool],
    request: GatewayRequest,
    before: Sequence[str],
    holder: Mapping[IPAddress, GatewayKey],
) -> Iterator[tuple[IPAddress, str]]:
    """The previously held pool addresses this Gateway still asks for and may keep."""
    wanted = {_parse_ip(a) for a in request.addresses}
    allowed = pools if request.addresses else _candidate_pools(request, pools)[0]
    for text in before:
        address = _parse_ip(text)
        if address is None or address in holder:
            continue
        if request.addresses and address not in wanted:
            continue
        pool = next((p for p in allowed if p.usable(address)), None)
        if pool is not None:
            yield address, pool.name


def _candidate_pools(request: GatewayRequest, pools: Sequence[Pool]) -> tuple[list[Pool], str]:
    """Pools a Gateway may draw from, with a message when its annotation names none."""
    wanted = request.annotations.get(POOL_ANNOTATION)
    if wanted is None:
        return [p for p in pools if p.auto_assign], "no IPAddressPool with autoAssign"
    named = [p for p in pools if p.name == wanted]
    return named, "" if named else f"IPAddressPool {wanted!r} does not exist"


def _assignment(
    mine: list[tuple[IPAddress, str | None]], problem: tuple[str, str] | None
) -> PoolAssignment:
    ordered = sorted(mine, key=lambda item: (item[0].version, int(item[0])))
    addresses = tuple(str(a) for a, _ in ordered)
    pools = {str(a): p for a, p in ordered if p is not None}
    reason, message = problem or ("", "")
    return PoolAssignment(addresses, pools, reason, message)


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _make(version: int, value: int) -> IPAddress:
    if version == 4:
        return ipaddress.IPv4Address(value)
    return ipaddress.IPv6Address(value)


def _is_buggy(address: IPAddress) -> bool:
    """Addresses ending in .0 or .255 that some old client stacks refuse (MetalLB's rule)."""
    return address.version == 4 and int(address) & 0xFF in (0, 255)


def load_allocations(state_dir: Path) -> dict[GatewayKey, tuple[str, ...]]:
    """Read what every Gateway held before the restart; an absent or broken file is empty.

    A broken file is treated as empty rather than fatal because the worst outcome is a fresh
    allocation, which is what a first start does anyway.
    """
    try:
        data = json.loads((state_dir / ALLOCATIONS_FILE).read_text(encoding="utf-8"))
        entries = data["gateways"]
        return {
            (str(e["namespace"]), str(e["name"])): tuple(str(a) for a in e["addresses"])
            for e in entries
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def save_allocations(
    state_dir: Path, allocations: Mapping[GatewayKey, Sequence[str] | PoolAssignment]
) -> None:
    """Write ``STATE_DIR/allocations.json`` atomically (temp file, fsync, rename).

    Raises:
        OSError: the state directory cannot be written.
    """
    entries = [
        {"namespace": ns, "name": name, "addresses": list(_addresses_of(allocations[(ns, name)]))}
        for ns, name in sorted(allocations)
    ]
    text = json.dumps({"version": 1, "gateways": entries}, indent=2) + "\n"
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".allocations.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, state_dir / ALLOCATIONS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _addresses_of(value: Sequence[str] | PoolAssignment) -> Sequence[str]:
    return value.addresses if isinstance(value, PoolAssignment) else value
