"""ARP frames, checked against frames the Linux kernel put on a veth (captured once)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from edgegw.proto import arp

CLIENT_MAC = bytes.fromhex("02000000000a")
GW_MAC = bytes.fromhex("02000000000b")
# Linux 6.x asking who has 192.0.2.2, tell 192.0.2.1 ...
KERNEL_REQUEST = bytes.fromhex(
    "ffffffffffff02000000000a0806000108000604000102000000000ac0000201000000000000c0000202"
)
# ... and the kernel of 192.0.2.2 answering it.
KERNEL_REPLY = bytes.fromhex(
    "02000000000a02000000000b0806000108000604000202000000000bc000020202000000000ac0000201"
)


def test_parse_kernel_request() -> None:
    packet = arp.parse_frame(KERNEL_REQUEST)
    assert packet is not None
    assert packet.is_request
    assert packet.sender_mac == CLIENT_MAC
    assert packet.sender_ip == IPv4Address("192.0.2.1")
    assert packet.target_ip == IPv4Address("192.0.2.2")
    assert packet.eth_dst == arp.BROADCAST
    assert not packet.is_gratuitous


def test_reply_is_byte_for_byte_what_the_kernel_sends() -> None:
    request = arp.parse_frame(KERNEL_REQUEST)
    assert request is not None
    assert arp.build_reply(request, GW_MAC) == KERNEL_REPLY


def test_request_is_byte_for_byte_what_the_kernel_sends() -> None:
    frame = arp.build_request(CLIENT_MAC, IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"))
    assert frame == KERNEL_REQUEST


def test_padded_frame_from_the_wire_still_parses() -> None:
    packet = arp.parse_frame(KERNEL_REPLY + b"\x00" * 18)
    assert packet is not None
    assert packet.operation == arp.REPLY
    assert packet.sender_mac == GW_MAC


def test_gratuitous_request_announces_the_address() -> None:
    frame = arp.build_gratuitous(GW_MAC, IPv4Address("192.0.2.100"))
    # Broadcast, from us, ARP request, sender = target = 192.0.2.100, target MAC zero.
    assert frame.hex() == (
        "ffffffffffff02000000000b0806"
        "0001080006040001" + "02000000000b" + "c0000264" + "000000000000" + "c0000264"
    )
    packet = arp.parse_frame(frame)
    assert packet is not None
    assert packet.is_gratuitous


def test_gratuitous_reply_variant() -> None:
    packet = arp.parse_frame(
        arp.build_gratuitous(GW_MAC, IPv4Address("192.0.2.100"), operation=arp.REPLY)
    )
    assert packet is not None
    assert packet.operation == arp.REPLY
    assert packet.is_gratuitous
    assert packet.eth_dst == arp.BROADCAST


@pytest.mark.parametrize(
    "frame",
    [
        KERNEL_REQUEST[:41],  # truncated
        KERNEL_REQUEST[:12] + b"\x08\x00" + KERNEL_REQUEST[14:],  # IPv4, not ARP
        KERNEL_REQUEST[:14] + b"\x00\x06" + KERNEL_REQUEST[16:],  # token ring hardware
        KERNEL_REQUEST[:20] + b"\x00\x09" + KERNEL_REQUEST[22:],  # unknown operation
    ],
)
def test_other_frames_are_ignored(frame: bytes) -> None:
    assert arp.parse_frame(frame) is None


def test_mac_text_round_trip() -> None:
    assert arp.parse_mac("02:00:00:00:00:0B") == GW_MAC
    assert arp.format_mac(GW_MAC) == "02:00:00:00:00:0b"
    with pytest.raises(ValueError, match="not a MAC"):
        arp.parse_mac("02:00:00")
