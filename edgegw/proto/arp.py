"""Ethernet + ARP (RFC 826) frames, sans I/O: bytes in, `ArpPacket` out, and back.

Only Ethernet/IPv4 ARP is understood, since that is all an L2 speaker on a LAN answers. A frame
of any other shape parses to None rather than raising, because a raw socket sees whatever the
wire carries and one odd frame must not stop the speaker.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ETH_HEADER = struct.Struct("!6s6sH")
ARP_BODY = struct.Struct("!HHBBH6s4s6s4s")
ARP_FRAME_LEN = ETH_HEADER.size + ARP_BODY.size  # 42; the NIC pads to 60 on the wire
REQUEST = 1
REPLY = 2
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6


@dataclass(frozen=True, slots=True)
class ArpPacket:
    """One ARP message with the Ethernet addresses it travelled between."""

    operation: int
    sender_mac: bytes
    sender_ip: ipaddress.IPv4Address
    target_mac: bytes
    target_ip: ipaddress.IPv4Address
    eth_src: bytes = ZERO_MAC
    eth_dst: bytes = BROADCAST

    @property
    def is_request(self) -> bool:
        return self.operation == REQUEST

    @property
    def is_gratuitous(self) -> bool:
        """An announcement: sender and target IP are the same (RFC 5227 section 3)."""
        return self.sender_ip == self.target_ip


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` (or with dashes) to 6 bytes.

    Raises:
        ValueError: not six hex octets.
    """
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(part, 16) for part in parts)


def format_mac(mac: bytes) -> str:
    return ":".join(f"{octet:02x}" for octet in mac)


def parse_frame(frame: bytes) -> ArpPacket | None:
    """Decode an Ethernet frame carrying Ethernet/IPv4 ARP; anything else gives None."""
    if len(frame) < ARP_FRAME_LEN:
        return None
    eth_dst, eth_src, ethertype = ETH_HEADER.unpack_from(frame)
    if ethertype != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, oper, sha, spa, tha, tpa = ARP_BODY.unpack_from(
        frame, ETH_HEADER.size
    )
    if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4) or oper not in (REQUEST, REPLY):
        return None
    return ArpPacket(
        oper,
        sha,
        ipaddress.IPv4Address(spa),
        tha,
        ipaddress.IPv4Address(tpa),
        eth_src=eth_src,
        eth_dst=eth_dst,
    )


def encode(packet: ArpPacket) -> bytes:
    """The Ethernet frame for ``packet`` (42 bytes, unpadded)."""
    header = ETH_HEADER.pack(packet.eth_dst, packet.eth_src, ETH_P_ARP)
    body = ARP_BODY.pack(
        1,
        ETH_P_IP,
        6,
        4,
        packet.operation,
        packet.sender_mac,
        packet.sender_ip.packed,
        packet.target_mac,
        packet.target_ip.packed,
    )
    return header + body


def build_gratuitous(mac: bytes, ip: ipaddress.IPv4Address, *, operation: int = REQUEST) -> bytes:
    """A broadcast announcement that ``ip`` is at ``mac``.

    A request (the default, as ``arping -U`` sends) is what RFC 5227 calls an ARP announcement
    and what every stack updates its cache from; some older switches only learn from replies,
    so the speaker sends both.
    """
    packet = ArpPacket(operation, mac, ip, ZERO_MAC, ip, eth_src=mac, eth_dst=BROADCAST)
    if operation == REPLY:
        packet = ArpPacket(operation, mac, ip, BROADCAST, ip, eth_src=mac, eth_dst=BROADCAST)
    return encode(packet)


def build_reply(request: ArpPacket, mac: bytes) -> bytes:
    """The unicast answer to ``request``: its target IP is at ``mac``."""
    answer = ArpPacket(
        REPLY,
        mac,
        request.target_ip,
        request.sender_mac,
        request.sender_ip,
        eth_src=mac,
        eth_dst=request.sender_mac,
    )
    return encode(answer)


def build_request(
    mac: bytes, sender_ip: ipaddress.IPv4Address, target_ip: ipaddress.IPv4Address
) -> bytes:
    """A broadcast who-has ``target_ip``, as a client asks (used by tests and probes)."""
    packet = ArpPacket(REQUEST, mac, sender_ip, ZERO_MAC, target_ip, eth_src=mac)
    return encode(packet)
