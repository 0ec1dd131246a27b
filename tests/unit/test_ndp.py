"""Neighbour discovery frames, checked against frames the Linux kernel put on a veth."""

from __future__ import annotations

from ipaddress import IPv6Address

from edgegw.proto import ndp

CLIENT_MAC = bytes.fromhex("02000000000a")
GW_MAC = bytes.fromhex("02000000000b")
# fd00::1 asking who has fd00::2, to ff02::1:ff00:2, with its source link-layer address ...
KERNEL_NS = bytes.fromhex(
    "3333ff00000202000000000a86dd6000000000203afffd000000000000000000000000000001"
    "ff0200000000000000000001ff00000287007d8e00000000fd000000000000000000000000000002"
    "010102000000000a"
)
# ... and the kernel owning fd00::2 answering: solicited + override, unicast.
KERNEL_NA = bytes.fromhex(
    "02000000000a02000000000b86dd6000000000203afffd000000000000000000000000000002"
    "fd00000000000000000000000000000188001c9160000000fd000000000000000000000000000002"
    "020102000000000b"
)
# A duplicate address detection probe for fe80::ff:fe00:b (source ::, nonce option).
KERNEL_DAD = bytes.fromhex(
    "3333ff00000b02000000000b86dd6000000000203aff00000000000000000000000000000000"
    "ff0200000000000000000001ff00000b87007afe00000000fe80000000000000000000fffe00000b"
    "0e01a21663ddee15"
)


def test_parse_kernel_solicitation() -> None:
    msg = ndp.parse_frame(KERNEL_NS)
    assert isinstance(msg, ndp.NeighborSolicitation)
    assert msg.target == IPv6Address("fd00::2")
    assert msg.src_ip == IPv6Address("fd00::1")
    assert msg.dst_ip == ndp.solicited_node(IPv6Address("fd00::2"))
    assert msg.source_mac == CLIENT_MAC
    assert not msg.is_dad


def test_answer_is_byte_for_byte_what_the_kernel_sends() -> None:
    msg = ndp.parse_frame(KERNEL_NS)
    assert isinstance(msg, ndp.NeighborSolicitation)
    assert ndp.build_na_reply(msg, GW_MAC) == KERNEL_NA


def test_solicitation_is_byte_for_byte_what_the_kernel_sends() -> None:
    frame = ndp.build_ns(CLIENT_MAC, IPv6Address("fd00::1"), IPv6Address("fd00::2"))
    assert frame == KERNEL_NS


def test_parse_kernel_advertisement() -> None:
    msg = ndp.parse_frame(KERNEL_NA)
    assert isinstance(msg, ndp.NeighborAdvertisement)
    assert msg.solicited
    assert msg.override
    assert not msg.router
    assert msg.target_mac == GW_MAC


def test_dad_probe_with_nonce_option_parses_and_is_answered_to_all_nodes() -> None:
    msg = ndp.parse_frame(KERNEL_DAD)
    assert isinstance(msg, ndp.NeighborSolicitation)
    assert msg.is_dad
    assert msg.source_mac is None
    answer = ndp.parse_frame(ndp.build_na_reply(msg, GW_MAC))
    assert isinstance(answer, ndp.NeighborAdvertisement)
    assert answer.dst_ip == ndp.ALL_NODES
    assert not answer.solicited


def test_unsolicited_advertisement_goes_to_all_nodes() -> None:
    frame = ndp.build_unsolicited_na(GW_MAC, IPv6Address("fd00::100"))
    assert frame[:6] == bytes.fromhex("333300000001")
    assert frame[6:12] == GW_MAC
    msg = ndp.parse_frame(frame)
    assert isinstance(msg, ndp.NeighborAdvertisement)
    assert msg.dst_ip == IPv6Address("ff02::1")
    assert msg.target == IPv6Address("fd00::100")
    assert msg.override
    assert not msg.solicited
    assert msg.target_mac == GW_MAC


def test_solicited_node_group_and_its_mac() -> None:
    group = ndp.solicited_node(IPv6Address("2001:db8::12:3456"))
    assert group == IPv6Address("ff02::1:ff12:3456")
    assert ndp.multicast_mac(group) == bytes.fromhex("3333ff123456")


def test_corrupted_checksum_is_dropped() -> None:
    broken = bytearray(KERNEL_NS)
    broken[-1] ^= 0x01
    assert ndp.parse_frame(bytes(broken)) is None


def test_routed_solicitation_is_dropped() -> None:
    routed = bytearray(KERNEL_NS)
    routed[21] = 254  # hop limit
    assert ndp.parse_frame(bytes(routed)) is None


def test_other_ipv6_traffic_is_ignored() -> None:
    echo = bytearray(KERNEL_NS)
    echo[20] = 17  # next header UDP
    assert ndp.parse_frame(bytes(echo)) is None
    assert ndp.parse_frame(KERNEL_NS[:60]) is None
