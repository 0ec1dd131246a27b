"""Watching and asking on the client side of the veth: raw ARP/NDP frames, blocking helpers.

Shared by the speaker tests (fake admin API) and the whole-stack tests (real ``edgegw run``).
Every helper is blocking and takes an explicit timeout; async tests call them in a thread.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

from edgegw.proto import arp, ndp

from .conftest import Lan

CLIENT_V4 = IPv4Address("192.0.2.1")
CLIENT_V6 = IPv6Address("fd00::1")


def capture(sock: socket.socket, match: Callable[[bytes], bool], timeout: float) -> bytes | None:
    """The first frame within ``timeout`` that ``match`` accepts."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            return None
        if match(frame):
            return frame
    return None


def packet_socket(lan: Lan, ethertype: int) -> socket.socket:
    """A raw socket on the client's end of the veth, seeing every frame of ``ethertype``."""
    sock = lan.socket(lan.client_ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    sock.bind((lan.client_if, ethertype))
    return sock


def gratuitous_arp(address: IPv4Address) -> Callable[[bytes], bool]:
    def match(frame: bytes) -> bool:
        packet = arp.parse_frame(frame)
        return bool(packet and packet.is_gratuitous and packet.sender_ip == address)

    return match


def arp_answer(address: IPv4Address) -> Callable[[bytes], bool]:
    def match(frame: bytes) -> bool:
        packet = arp.parse_frame(frame)
        return bool(packet and packet.operation == arp.REPLY and packet.sender_ip == address
                    and packet.target_ip == CLIENT_V4)  # fmt: skip

    return match


def ask_arp(
    lan: Lan, sock: socket.socket, address: IPv4Address, timeout: float = 1.0
) -> arp.ArpPacket | None:
    """Send an ARP request for ``address`` from the client; the reply, or None."""
    sock.send(arp.build_request(lan.client_mac, CLIENT_V4, address))
    frame = capture(sock, arp_answer(address), timeout)
    return arp.parse_frame(frame) if frame else None


def ask_ndp(
    lan: Lan, sock: socket.socket, address: IPv6Address, timeout: float = 1.0
) -> ndp.NdMessage | None:
    """Send a neighbour solicitation for ``address``; the solicited advertisement, or None."""
    sock.send(ndp.build_ns(lan.client_mac, CLIENT_V6, address))

    def match(frame: bytes) -> bool:
        msg = ndp.parse_frame(frame)
        return (
            isinstance(msg, ndp.NeighborAdvertisement) and msg.target == address and msg.solicited
        )

    frame = capture(sock, match, timeout)
    return ndp.parse_frame(frame) if frame else None
