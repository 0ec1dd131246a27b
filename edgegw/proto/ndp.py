"""IPv6 neighbour discovery (RFC 4861) in Ethernet frames, sans I/O.

IPv6 has no ARP: a host asks "who has X" with a Neighbor Solicitation (ICMPv6 type 135) sent to
X's solicited-node multicast group, and the owner answers with a Neighbor Advertisement (type
136). Announcing an address is an unsolicited advertisement to all nodes (ff02::1) with the
Override flag, which replaces whatever link-layer address neighbours had cached.

Frames that are not ND, are malformed, have a hop limit below 255 (so were routed, which RFC
4861 section 7.1.1 says to drop) or carry a wrong checksum parse to None.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETH_P_IPV6 = 0x86DD
ICMPV6 = 58
NEIGHBOR_SOLICITATION = 135
NEIGHBOR_ADVERTISEMENT = 136
OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2
FLAG_ROUTER = 0x80000000
FLAG_SOLICITED = 0x40000000
FLAG_OVERRIDE = 0x20000000
HOP_LIMIT = 255
ALL_NODES = ipaddress.IPv6Address("ff02::1")
UNSPECIFIED = ipaddress.IPv6Address("::")

_ETH = struct.Struct("!6s6sH")
_IPV6 = struct.Struct("!IHBB16s16s")
_ND = struct.Struct("!BBHI16s")  # type, code, checksum, flags/reserved, target
_IP_OFFSET = _ETH.size
_ICMP_OFFSET = _ETH.size + _IPV6.size


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    """A "who has ``target``" question; ``source_mac`` is its link-layer option, if any."""

    src_ip: ipaddress.IPv6Address
    dst_ip: ipaddress.IPv6Address
    target: ipaddress.IPv6Address
    source_mac: bytes | None
    eth_src: bytes

    @property
    def is_dad(self) -> bool:
        """Duplicate address detection: the asker has no address yet (RFC 4862)."""
        return self.src_ip == UNSPECIFIED


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    """ "``target`` is at ``target_mac``", solicited or not."""

    src_ip: ipaddress.IPv6Address
    dst_ip: ipaddress.IPv6Address
    target: ipaddress.IPv6Address
    target_mac: bytes | None
    solicited: bool
    override: bool
    router: bool = False


NdMessage = NeighborSolicitation | NeighborAdvertisement


def solicited_node(address: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """The multicast group ff02::1:ffXX:XXXX where solicitations for ``address`` go."""
    low24 = int(address) & 0xFFFFFF
    return ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | low24)


def multicast_mac(group: ipaddress.IPv6Address) -> bytes:
    """The Ethernet address of an IPv6 multicast group: 33:33 and its low 32 bits (RFC 2464)."""
    return b"\x33\x33" + group.packed[-4:]


def checksum(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, message: bytes) -> int:
    """The ICMPv6 checksum over the IPv6 pseudo-header and ``message`` (RFC 4443 2.3).

    ``message`` must carry zero in its checksum field when computing, or its stored value when
    verifying (then a correct message sums to 0).
    """
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(message), ICMPV6)
    data = pseudo + message
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def parse_frame(frame: bytes) -> NdMessage | None:
    """Decode an Ethernet frame carrying a valid NS or NA; anything else gives None."""
    if len(frame) < _ICMP_OFFSET + _ND.size:
        return None
    _dst_mac, eth_src, ethertype = _ETH.unpack_from(frame)
    head, length, next_header, hops, src_raw, dst_raw = _IPV6.unpack_from(frame, _IP_OFFSET)
    if ethertype != ETH_P_IPV6 or head >> 28 != 6 or next_header != ICMPV6 or hops != HOP_LIMIT:
        return None
    message = frame[_ICMP_OFFSET : _ICMP_OFFSET + length]
    if len(message) != length or length < _ND.size:
        return None
    src, dst = ipaddress.IPv6Address(src_raw), ipaddress.IPv6Address(dst_raw)
    kind, code, _sum, flags, target_raw = _ND.unpack_from(message)
    if code != 0 or checksum(src, dst, message) != 0:
        return None
    target = ipaddress.IPv6Address(target_raw)
    options = _lladdr_options(message[_ND.size :])
    if kind == NEIGHBOR_SOLICITATION:
        return NeighborSolicitation(src, dst, target, options.get(OPT_SOURCE_LLADDR), eth_src)
    if kind == NEIGHBOR_ADVERTISEMENT:
        return NeighborAdvertisement(
            src,
            dst,
            target,
            options.get(OPT_TARGET_LLADDR),
            solicited=bool(flags & FLAG_SOLICITED),
            override=bool(flags & FLAG_OVERRIDE),
            router=bool(flags & FLAG_ROUTER),
        )
    return None


def _lladdr_options(data: bytes) -> dict[int, bytes]:
    """Link-layer address options by type; stops at a malformed (zero-length) option."""
    found: dict[int, bytes] = {}
    while len(data) >= 8:
        kind, units = data[0], data[1]
        if units == 0:
            break
        if kind in (OPT_SOURCE_LLADDR, OPT_TARGET_LLADDR) and units == 1:
            found.setdefault(kind, data[2:8])
        data = data[units * 8 :]
    return found


def _frame(
    eth_src: bytes,
    eth_dst: bytes,
    src: ipaddress.IPv6Address,
    dst: ipaddress.IPv6Address,
    message: bytes,
) -> bytes:
    """Wrap an ICMPv6 message (checksum zero) in IPv6 and Ethernet, filling the checksum."""
    value = checksum(src, dst, message)
    message = message[:2] + struct.pack("!H", value) + message[4:]
    ip = _IPV6.pack(6 << 28, len(message), ICMPV6, HOP_LIMIT, src.packed, dst.packed)
    return _ETH.pack(eth_dst, eth_src, ETH_P_IPV6) + ip + message


def encode_advertisement(
    msg: NeighborAdvertisement, *, eth_src: bytes, eth_dst: bytes | None = None
) -> bytes:
    """The frame for ``msg``; ``eth_dst`` defaults to the multicast MAC of ``msg.dst_ip``."""
    flags = (
        (FLAG_ROUTER if msg.router else 0)
        | (FLAG_SOLICITED if msg.solicited else 0)
        | (FLAG_OVERRIDE if msg.override else 0)
    )
    body = _ND.pack(NEIGHBOR_ADVERTISEMENT, 0, 0, flags, msg.target.packed)
    if msg.target_mac is not None:
        body += bytes([OPT_TARGET_LLADDR, 1]) + msg.target_mac
    dst_mac = eth_dst if eth_dst is not None else multicast_mac(msg.dst_ip)
    return _frame(eth_src, dst_mac, msg.src_ip, msg.dst_ip, body)


def build_unsolicited_na(
    mac: bytes, target: ipaddress.IPv6Address, *, src_ip: ipaddress.IPv6Address | None = None
) -> bytes:
    """Announce to all nodes that ``target`` is at ``mac``, overriding their caches.

    ``src_ip`` should be the interface's link-local address when it has one; the target
    itself is used otherwise, which Linux and the BSDs accept.
    """
    msg = NeighborAdvertisement(src_ip or target, ALL_NODES, target, mac, False, True)
    return encode_advertisement(msg, eth_src=mac)


def build_na_reply(request: NeighborSolicitation, mac: bytes) -> bytes:
    """Answer ``request`` for its target: unicast back, or to all nodes for DAD probes."""
    if request.is_dad:
        msg = NeighborAdvertisement(request.target, ALL_NODES, request.target, mac, False, True)
        return encode_advertisement(msg, eth_src=mac)
    msg = NeighborAdvertisement(request.target, request.src_ip, request.target, mac, True, True)
    return encode_advertisement(msg, eth_src=mac, eth_dst=request.source_mac or request.eth_src)


def build_ns(mac: bytes, src_ip: ipaddress.IPv6Address, target: ipaddress.IPv6Address) -> bytes:
    """A solicitation for ``target`` to its solicited-node group (used by tests and probes)."""
    group = solicited_node(target)
    body = _ND.pack(NEIGHBOR_SOLICITATION, 0, 0, 0, target.packed)
    if src_ip != UNSPECIFIED:
        body += bytes([OPT_SOURCE_LLADDR, 1]) + mac
    return _frame(mac, multicast_mac(group), src_ip, group, body)
