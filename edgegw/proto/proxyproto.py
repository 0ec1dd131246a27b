"""PROXY protocol v1 (text) and v2 (binary): tell a backend who the client really is.

Theory of operation
-------------------
A TCP relay hides the client's address from the backend: the backend sees a
connection from the gateway. The PROXY protocol (HAProxy, 2010-2020 spec)
prepends one header to the stream carrying the original source and
destination. We write it towards backends whose ``Backend.proxy_protocol``
is 1 or 2, and read it from a load balancer in front of us on listeners with
``Listener.proxy_protocol_accept``.

Encoding is a pure function of the two addresses. Decoding is strict, as the
spec asks of receivers: the v1 line must fit in 107 bytes and end in CRLF
with exactly the fields it should; v2 must carry the 12-byte signature,
version 2, a known command and family, and an address block long enough for
the family. ``parse`` takes the first bytes of a connection and answers
``NeedMore``, ``NotProxy`` (no header: the caller decides whether that is
allowed) or a ``ProxyHeader`` with how many bytes it took; anything broken
raises ``ProxyProtocolError``. This module does no I/O.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Literal

V1_PREFIX = b"PROXY "
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = 16
V2_CMD_LOCAL = 0x0
V2_CMD_PROXY = 0x1
# address family + transport byte → (family name, transport, address block length)
V2_FAMILIES: dict[int, tuple[str, str, int]] = {
    0x11: ("inet", "tcp", 12),
    0x12: ("inet", "udp", 12),
    0x21: ("inet6", "tcp", 36),
    0x22: ("inet6", "udp", 36),
    0x31: ("unix", "tcp", 216),
    0x32: ("unix", "udp", 216),
}
V2_FAMILY_CODES = {
    (family, transport): code for code, (family, transport, _) in V2_FAMILIES.items()
}

Address = tuple[str, int]


class ProxyProtocolError(ValueError):
    """The bytes claim to be a PROXY header but break the specification."""


@dataclass(frozen=True, slots=True)
class NeedMore:
    """A valid beginning of a header; read more and parse again."""


@dataclass(frozen=True, slots=True)
class NotProxy:
    """The connection does not start with a PROXY header."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header. ``source``/``destination`` are None for LOCAL and UNKNOWN."""

    version: Literal[1, 2]
    source: Address | None
    destination: Address | None
    transport: Literal["tcp", "udp"] = "tcp"
    size: int = 0  # bytes the header took on the wire
    tlvs: tuple[tuple[int, bytes], ...] = ()


Parsed = NeedMore | NotProxy | ProxyHeader


# --- encoding -------------------------------------------------------------------------------


def encode_v1(source: Address | None, destination: Address | None) -> bytes:
    """The v1 text line; ``UNKNOWN`` when either address is missing or families differ."""
    families = {_family(source), _family(destination)}
    if source is None or destination is None or len(families) != 1 or None in families:
        return b"PROXY UNKNOWN\r\n"
    proto = "TCP4" if families == {"inet"} else "TCP6"
    hosts = f"{_plain(source[0])} {_plain(destination[0])}"
    return f"PROXY {proto} {hosts} {source[1]} {destination[1]}\r\n".encode("ascii")


def encode_v2(
    source: Address | None,
    destination: Address | None,
    transport: Literal["tcp", "udp"] = "tcp",
) -> bytes:
    """The v2 binary header; ``LOCAL`` with no addresses when they cannot be expressed."""
    family = _family(source)
    if source is None or destination is None or family is None or family != _family(destination):
        return V2_SIGNATURE + bytes((0x20, 0x00)) + b"\x00\x00"
    ip_src = ipaddress.ip_address(_plain(source[0])).packed
    ip_dst = ipaddress.ip_address(_plain(destination[0])).packed
    body = ip_src + ip_dst + struct.pack("!HH", source[1], destination[1])
    code = V2_FAMILY_CODES[(family, transport)]
    return V2_SIGNATURE + bytes((0x21, code)) + struct.pack("!H", len(body)) + body


def encode(version: int, source: Address | None, destination: Address | None) -> bytes:
    """The header for ``Backend.proxy_protocol`` (1 or 2)."""
    if version == 1:
        return encode_v1(source, destination)
    if version == 2:
        return encode_v2(source, destination)
    raise ValueError(f"PROXY protocol version {version}")


def _plain(host: str) -> str:
    """An IPv4-mapped IPv6 address as plain IPv4, so both ends have one family."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _family(address: Address | None) -> str | None:
    if address is None:
        return None
    try:
        plain = ipaddress.ip_address(_plain(address[0]))
    except ValueError:
        return None
    return "inet" if plain.version == 4 else "inet6"


# --- decoding -------------------------------------------------------------------------------


def parse(data: bytes) -> Parsed:
    """Look for a v1 or v2 header at the start of ``data``.

    Raises:
        ProxyProtocolError: the header is present but malformed.
    """
    if not data:
        return NeedMore()
    if _is_prefix(data, V2_SIGNATURE):
        return _parse_v2(data) if len(data) >= len(V2_SIGNATURE) else NeedMore()
    if _is_prefix(data, V1_PREFIX):
        return _parse_v1(data) if len(data) >= len(V1_PREFIX) else NeedMore()
    return NotProxy()


def _is_prefix(data: bytes, signature: bytes) -> bool:
    n = min(len(data), len(signature))
    return data[:n] == signature[:n]


def _parse_v1(data: bytes) -> Parsed:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end == -1:
        if len(data) >= V1_MAX:
            raise ProxyProtocolError("v1 header longer than 107 bytes")
        if b"\n" in data:
            raise ProxyProtocolError("v1 header ends without CRLF")
        return NeedMore()
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("v1 header is not ASCII") from None
    fields = line.split(" ")
    size = end + 2
    if fields[1:2] == ["UNKNOWN"]:
        return ProxyHeader(version=1, source=None, destination=None, size=size)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"v1 header {line!r}")
    version = 4 if fields[1] == "TCP4" else 6
    source = (_v1_address(fields[2], version), _v1_port(fields[4]))
    destination = (_v1_address(fields[3], version), _v1_port(fields[5]))
    return ProxyHeader(version=1, source=source, destination=destination, size=size)


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"v1 address {text!r}") from None
    if address.version != version:
        raise ProxyProtocolError(f"v1 address {text!r} is not IPv{version}")
    return str(address)


def _v1_port(text: str) -> int:
    if not text.isdigit() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyProtocolError(f"v1 port {text!r}")
    return int(text)


def _parse_v2(data: bytes) -> Parsed:
    if len(data) < V2_HEADER:
        return NeedMore()
    ver_cmd, fam = data[12], data[13]
    (length,) = struct.unpack_from("!H", data, 14)
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"v2 version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command not in (V2_CMD_LOCAL, V2_CMD_PROXY):
        raise ProxyProtocolError(f"v2 command {command}")
    size = V2_HEADER + length
    if len(data) < size:
        return NeedMore()
    block = data[V2_HEADER:size]
    if command == V2_CMD_LOCAL or fam == 0x00:
        return ProxyHeader(version=2, source=None, destination=None, size=size)
    if fam not in V2_FAMILIES:
        raise ProxyProtocolError(f"v2 address family {fam:#04x}")
    return _v2_addresses(fam, block, size)


def _v2_addresses(fam: int, block: bytes, size: int) -> ProxyHeader:
    family, transport, need = V2_FAMILIES[fam]
    if len(block) < need:
        raise ProxyProtocolError(f"v2 address block of {len(block)} bytes for {family}")
    if family == "unix":
        source, destination = None, None
    else:
        width = 4 if family == "inet" else 16
        src = str(ipaddress.ip_address(block[:width]))
        dst = str(ipaddress.ip_address(block[width : 2 * width]))
        sport, dport = struct.unpack_from("!HH", block, 2 * width)
        source, destination = (src, sport), (dst, dport)
    return ProxyHeader(
        version=2,
        source=source,
        destination=destination,
        transport="udp" if transport == "udp" else "tcp",
        size=size,
        tlvs=_v2_tlvs(block[need:]),
    )


def _v2_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 3 > len(data):
            raise ProxyProtocolError("v2 TLV header truncated")
        kind, length = data[pos], struct.unpack_from("!H", data, pos + 1)[0]
        value = data[pos + 3 : pos + 3 + length]
        if len(value) != length:
            raise ProxyProtocolError("v2 TLV value truncated")
        found.append((kind, value))
        pos += 3 + length
    return tuple(found)
