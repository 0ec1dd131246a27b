"""PROXY protocol v1/v2: the bytes a backend like HAProxy expects, and strict parsing."""

from __future__ import annotations

import pytest

from edgegw.proto import proxyproto as pp


def test_v1_tcp4_line_is_the_spec_example() -> None:
    line = pp.encode_v1(("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert line == b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"


def test_v1_tcp6_and_mapped_ipv4() -> None:
    assert pp.encode_v1(("::1", 5), ("::2", 6)) == b"PROXY TCP6 ::1 ::2 5 6\r\n"
    mapped = pp.encode_v1(("::ffff:10.0.0.1", 5), ("10.0.0.2", 6))
    assert mapped == b"PROXY TCP4 10.0.0.1 10.0.0.2 5 6\r\n"


def test_v1_unknown_when_addresses_are_missing_or_mixed() -> None:
    assert pp.encode_v1(None, ("10.0.0.2", 6)) == b"PROXY UNKNOWN\r\n"
    assert pp.encode_v1(("10.0.0.1", 5), ("::2", 6)) == b"PROXY UNKNOWN\r\n"


def test_v2_tcp4_bytes() -> None:
    header = pp.encode_v2(("10.0.0.1", 1234), ("10.0.0.2", 443))
    expected = (
        b"\r\n\r\n\x00\r\nQUIT\n"  # signature
        + b"\x21\x11\x00\x0c"  # v2 PROXY, TCP over IPv4, 12 bytes
        + bytes([10, 0, 0, 1, 10, 0, 0, 2])
        + (1234).to_bytes(2, "big")
        + (443).to_bytes(2, "big")
    )
    assert header == expected


def test_v2_local_when_addresses_are_missing() -> None:
    assert pp.encode_v2(None, None) == pp.V2_SIGNATURE + b"\x20\x00\x00\x00"


@pytest.mark.parametrize(
    ("source", "destination"),
    [(("10.1.2.3", 40000), ("10.9.8.7", 8443)), (("2001:db8::1", 1), ("2001:db8::2", 65535))],
)
@pytest.mark.parametrize("version", [1, 2])
def test_round_trip(version: int, source: pp.Address, destination: pp.Address) -> None:
    header = pp.encode(version, source, destination)
    parsed = pp.parse(header + b"GET / HTTP/1.1\r\n")
    assert isinstance(parsed, pp.ProxyHeader)
    assert (parsed.version, parsed.source, parsed.destination) == (version, source, destination)
    assert parsed.size == len(header)


@pytest.mark.parametrize("version", [1, 2])
def test_every_prefix_needs_more(version: int) -> None:
    header = pp.encode(version, ("10.1.2.3", 40000), ("10.9.8.7", 8443))
    for end in range(1, len(header)):
        assert pp.parse(header[:end]) == pp.NeedMore(), end


def test_v2_tlvs_are_kept() -> None:
    header = bytearray(pp.encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2)))
    tlv = b"\x02\x00\x0bexample.com"  # PP2_TYPE_AUTHORITY
    header[14:16] = (12 + len(tlv)).to_bytes(2, "big")
    parsed = pp.parse(bytes(header) + tlv)
    assert isinstance(parsed, pp.ProxyHeader)
    assert parsed.tlvs == ((2, b"example.com"),)


def test_v2_local_and_unknown_v1_parse_without_addresses() -> None:
    local = pp.parse(pp.V2_SIGNATURE + b"\x20\x00\x00\x00rest")
    assert local == pp.ProxyHeader(version=2, source=None, destination=None, size=16)
    unknown = pp.parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest")
    assert unknown == pp.ProxyHeader(version=1, source=None, destination=None, size=35)


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"\x16\x03\x01", b"PROXZ"])
def test_not_proxy(data: bytes) -> None:
    assert pp.parse(data) == pp.NotProxy()


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",  # LF only
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",  # missing field
        b"PROXY TCP4 ::1 ::2 1 2\r\n",  # wrong family
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",  # leading zero
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",  # port range
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",  # double space
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",  # not a v1 protocol
        b"PROXY TCP4 " + b"1" * 120,  # no CRLF within 107 bytes
        pp.V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12),  # version 1 in a v2 header
        pp.V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12),  # command 2
        pp.V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),  # address block too short
        pp.V2_SIGNATURE + b"\x21\x41\x00\x0c" + bytes(12),  # unknown family
        pp.V2_SIGNATURE + b"\x21\x11\x00\x0e" + bytes(12) + b"\x02\x00",  # truncated TLV
    ],
)
def test_malformed_headers_are_refused(data: bytes) -> None:
    with pytest.raises(pp.ProxyProtocolError):
        pp.parse(data)
