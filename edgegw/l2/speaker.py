"""The ARP and NDP speaker for one interface: raw AF_PACKET sockets driven by trio.

Theory of operation
-------------------
`InterfaceSpeaker.serve` opens two packet sockets bound to the interface: one for ARP
(ethertype 0x0806, so the kernel hands us only ARP) and one for IPv6 with a classic BPF filter
that passes only ICMPv6 neighbour solicitations, so ordinary IPv6 traffic never wakes us.
Both read loops consult the sets of held addresses and answer requests for them with the
interface's MAC; everything else is ignored, including our own frames echoed back
(PACKET_OUTGOING).

`take` adds an address and starts a short burst of announcements (gratuitous ARP request and
reply, or unsolicited NA with Override) so that neighbours and switches update their caches at
once; `release` removes it and cancels a burst still running. For IPv6 `take` also joins the
address's solicited-node multicast group on the socket, because a real NIC filters multicast
frames nobody subscribed to. The decisions of what to take come from `announcer`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import trio

from edgegw.pools import IPAddress
from edgegw.proto import arp, ndp

log = logging.getLogger(__name__)

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_MR_MULTICAST = 0
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
BURST_COUNT = 3
BURST_INTERVAL = 1.0

# ldh [12]; jeq #0x86dd; ldb [20]; jeq #58; ldb [54]; jeq #135; ret #65535; ret #0
_NS_FILTER = (
    (0x28, 0, 0, 12),
    (0x15, 0, 5, ndp.ETH_P_IPV6),
    (0x30, 0, 0, 20),
    (0x15, 0, 3, ndp.ICMPV6),
    (0x30, 0, 0, 54),
    (0x15, 0, 1, ndp.NEIGHBOR_SOLICITATION),
    (0x06, 0, 0, 0xFFFF),
    (0x06, 0, 0, 0),
)


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    """What the speaker needs to know about one interface."""

    name: str
    index: int
    mac: bytes
    link_local: ipaddress.IPv6Address | None

    @classmethod
    def lookup(cls, name: str) -> InterfaceInfo:
        """Read the interface's index, MAC and link-local address from the kernel.

        Raises:
            OSError: there is no such interface.
        """
        index = socket.if_nametoindex(name)
        mac = arp.parse_mac(Path(f"/sys/class/net/{name}/address").read_text().strip())
        return cls(name, index, mac, _link_local(index))


def _link_local(index: int) -> ipaddress.IPv6Address | None:
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 4 and int(fields[1], 16) == index and fields[3] == "20":
            return ipaddress.IPv6Address(bytes.fromhex(fields[0]))
    return None


def _attach_ns_filter(sock: trio.socket.SocketType) -> None:
    code = b"".join(struct.pack("HBBI", *insn) for insn in _NS_FILTER)
    buffer = ctypes.create_string_buffer(code, len(code))
    program = struct.pack("HL", len(_NS_FILTER), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)


def _membership(index: int, mac: bytes) -> bytes:
    return struct.pack("iHH8s", index, PACKET_MR_MULTICAST, len(mac), mac)


@dataclass(slots=True)
class InterfaceSpeaker:
    """Announces and answers for the addresses taken on one interface."""

    info: InterfaceInfo
    burst_count: int = BURST_COUNT
    burst_interval: float = BURST_INTERVAL
    held: set[IPAddress] = field(default_factory=set)
    _bursts: dict[IPAddress, trio.CancelScope] = field(default_factory=dict)
    _nursery: trio.Nursery | None = None
    _arp: trio.socket.SocketType | None = None
    _ndp: trio.socket.SocketType | None = None

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Open the sockets and answer until cancelled.

        Raises:
            PermissionError: no CAP_NET_RAW.
            OSError: the interface vanished.
        """
        with self._open(arp.ETH_P_ARP) as arp_sock, self._open(ndp.ETH_P_IPV6) as ndp_sock:
            _attach_ns_filter(ndp_sock)
            self._arp, self._ndp = arp_sock, ndp_sock
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._answer_arp, arp_sock)
                    nursery.start_soon(self._answer_ndp, ndp_sock)
                    task_status.started()
                    await trio.sleep_forever()
            finally:
                self._nursery = self._arp = self._ndp = None
        raise AssertionError("unreachable")

    def _open(self, ethertype: int) -> trio.socket.SocketType:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((self.info.name, ethertype))
        except BaseException:
            sock.close()
            raise
        return trio.socket.from_stdlib_socket(sock)

    def take(self, address: IPAddress) -> None:
        """Start answering for ``address`` and announce it with a burst."""
        if address in self.held:
            return
        self.held.add(address)
        if address.version == 6 and self._ndp is not None:
            group = ndp.multicast_mac(ndp.solicited_node(address))
            membership = _membership(self.info.index, group)
            self._ndp.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, membership)
        scope = trio.CancelScope()
        self._bursts[address] = scope
        if self._nursery is not None:
            self._nursery.start_soon(self._burst, address, scope)

    def release(self, address: IPAddress) -> None:
        """Stop answering for ``address``; nothing is sent (MetalLB does the same)."""
        self.held.discard(address)
        scope = self._bursts.pop(address, None)
        if scope is not None:
            scope.cancel()
        if address.version == 6 and self._ndp is not None:
            group = ndp.multicast_mac(ndp.solicited_node(address))
            membership = _membership(self.info.index, group)
            self._ndp.setsockopt(SOL_PACKET, PACKET_DROP_MEMBERSHIP, membership)

    async def _burst(self, address: IPAddress, scope: trio.CancelScope) -> None:
        with scope:
            for i in range(self.burst_count):
                if i:
                    await trio.sleep(self.burst_interval)
                for frame in self._announcements(address):
                    await self._send(address.version, frame)
        if self._bursts.get(address) is scope:
            del self._bursts[address]

    def _announcements(self, address: IPAddress) -> list[bytes]:
        mac = self.info.mac
        if isinstance(address, ipaddress.IPv4Address):
            return [
                arp.build_gratuitous(mac, address),
                arp.build_gratuitous(mac, address, operation=arp.REPLY),
            ]
        return [ndp.build_unsolicited_na(mac, address, src_ip=self.info.link_local)]

    async def _send(self, version: int, frame: bytes) -> None:
        sock = self._arp if version == 4 else self._ndp
        if sock is None:
            return
        try:
            await sock.send(frame)
        except OSError as exc:  # interface down: answers resume when it comes back
            log.warning("%s: cannot send: %s", self.info.name, exc)

    async def _answer_arp(self, sock: trio.socket.SocketType) -> None:
        while True:
            frame, address = await sock.recvfrom(2048)
            if address[2] == PACKET_OUTGOING:
                continue
            packet = arp.parse_frame(frame)
            if packet is None or not packet.is_request or packet.target_ip not in self.held:
                continue
            if packet.sender_ip == packet.target_ip:
                claimant = arp.format_mac(packet.sender_mac)
                log.warning("%s: %s also claims %s", self.info.name, claimant, packet.target_ip)
                continue
            await self._send(4, arp.build_reply(packet, self.info.mac))

    async def _answer_ndp(self, sock: trio.socket.SocketType) -> None:
        while True:
            frame, address = await sock.recvfrom(2048)
            if address[2] == PACKET_OUTGOING:
                continue
            message = ndp.parse_frame(frame)
            if isinstance(message, ndp.NeighborSolicitation) and message.target in self.held:
                await self._send(6, ndp.build_na_reply(message, self.info.mac))
