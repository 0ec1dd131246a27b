"""What a connection speaks, judged from its first bytes: TLS ClientHello, h2c preface, other.

Theory of operation
-------------------
A port that serves TLS passthrough must pick a route from the ClientHello's
SNI before any TLS is terminated, and one port may carry both passthrough and
termination. So the first bytes are read without being consumed by a TLS
library, handed to a ``ClientHelloParser``, and replayed afterwards to
whoever ends up handling the connection.

A ClientHello arrives as TLS records (5-byte header, up to 16 KiB fragment)
which may be split across TCP segments at any byte, and the handshake
message may itself span several records. The parser therefore works in two
layers, both incremental, so feeding the hello one byte at a time costs no
more than feeding it whole:

1. record layer: strip record headers, append each fragment to the
   handshake buffer (each record must be a handshake record, 22);
2. handshake layer: once the 4-byte handshake header is in, the message
   length is known; once that many bytes are in, the body is parsed once.

``feed`` answers with one of ``NeedMore``, ``NotTLS``, ``Malformed`` or
``ClientHello``; the last three are final. The total read is bounded by
``max_size`` so a slow or hostile client cannot make us buffer without end.

``detect`` is the cheap first look used by ports that may carry different
protocols: first byte 0x16 means a TLS handshake record, the HTTP/2 prior
knowledge preface means h2c. This module does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HANDSHAKE = 22
CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
EXT_ALPN = 16
RECORD_HEADER = 5
MAX_RECORD = 1 << 14  # plaintext fragment limit (RFC 8446 §5.1)
DEFAULT_MAX_SIZE = 64 * 1024
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

Detected = Literal["tls", "h2c", "other", "need_more"]


@dataclass(frozen=True, slots=True)
class NeedMore:
    """The bytes so far are a valid beginning; read more and feed again."""


@dataclass(frozen=True, slots=True)
class NotTLS:
    """The connection does not start with a TLS handshake record."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """It started as TLS but broke the rules (or grew past the size bound)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ClientHello:
    """A complete ClientHello. ``server_name`` is lower-case ASCII without a trailing dot."""

    server_name: str | None
    alpn: tuple[str, ...]
    size: int  # bytes of the connection the hello took, record headers included


Result = NeedMore | NotTLS | Malformed | ClientHello


def detect(data: bytes) -> Detected:
    """Classify a connection from its first bytes (``need_more`` when they do not tell yet)."""
    if not data:
        return "need_more"
    if data[0] == HANDSHAKE:
        return "tls"
    probe = data[: len(H2_PREFACE)]
    if H2_PREFACE.startswith(probe):
        return "h2c" if len(probe) == len(H2_PREFACE) else "need_more"
    return "other"


class _Reject(Exception):
    """Internal: carries a ``Malformed`` reason out of the parsing helpers."""


class ClientHelloParser:
    """Incremental ClientHello parser; see the module docstring."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._pending = bytearray()  # record-layer bytes not yet stripped
        self._handshake = bytearray()  # fragments of the handshake message
        self._consumed = 0  # connection bytes taken by complete records
        self._result: Result = NeedMore()

    def feed(self, data: bytes) -> Result:
        """Add the next bytes of the connection and say how things stand."""
        if not isinstance(self._result, NeedMore):
            return self._result
        self._pending += data
        try:
            self._result = self._advance()
        except _Reject as exc:
            self._result = Malformed(str(exc))
        return self._result

    def _advance(self) -> Result:
        while len(self._pending) >= RECORD_HEADER:
            if not self._take_record():
                break
            hello = self._try_hello()
            if hello is not None:
                return hello
        if self._pending and self._consumed == 0 and self._pending[0] != HANDSHAKE:
            return NotTLS()
        if self._consumed + len(self._pending) > self.max_size:
            raise _Reject(f"ClientHello larger than {self.max_size} bytes")
        return NeedMore()

    def _take_record(self) -> bool:
        """Move one complete record's fragment to the handshake buffer; False if incomplete."""
        head = self._pending
        if head[0] != HANDSHAKE:
            if self._consumed == 0:
                return False  # reported as NotTLS by the caller
            raise _Reject(f"record type {head[0]} inside the ClientHello")
        if head[1] != 3:
            raise _Reject(f"record version {head[1]}.{head[2]}")
        length = int.from_bytes(head[3:5], "big")
        if length == 0 or length > MAX_RECORD:
            raise _Reject(f"record length {length}")
        end = RECORD_HEADER + length
        if self._consumed + end > self.max_size:
            raise _Reject(f"ClientHello larger than {self.max_size} bytes")
        if len(head) < end:
            return False
        self._handshake += head[RECORD_HEADER:end]
        del head[:end]
        self._consumed += end
        return True

    def _try_hello(self) -> ClientHello | None:
        buf = self._handshake
        if len(buf) < 4:
            return None
        if buf[0] != CLIENT_HELLO:
            raise _Reject(f"handshake type {buf[0]} is not ClientHello")
        length = int.from_bytes(buf[1:4], "big")
        if 4 + length > self.max_size:
            raise _Reject(f"ClientHello larger than {self.max_size} bytes")
        if len(buf) < 4 + length:
            return None
        if len(buf) > 4 + length:
            raise _Reject("data after the ClientHello in its records")
        server_name, alpn = parse_client_hello_body(bytes(buf[4:]))
        return ClientHello(server_name=server_name, alpn=alpn, size=self._consumed)


def parse_client_hello(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Result:
    """One-shot form of ``ClientHelloParser``: the connection's first ``data`` bytes."""
    return ClientHelloParser(max_size).feed(data)


class _Reader:
    """Bounds-checked reads over a byte string; any overrun is a ``_Reject``."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise _Reject(f"truncated {what}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def vector(self, length_bytes: int, what: str) -> bytes:
        return self.take(self.uint(length_bytes, what), what)

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def parse_client_hello_body(body: bytes) -> tuple[str | None, tuple[str, ...]]:
    """SNI and ALPN from a ClientHello body (after the 4-byte handshake header)."""
    r = _Reader(body)
    if r.uint(1, "version") != 3:
        raise _Reject("client version")
    r.take(1 + 32, "random")
    if len(r.vector(1, "session id")) > 32:
        raise _Reject("session id longer than 32 bytes")
    suites = r.vector(2, "cipher suites")
    if not suites or len(suites) % 2:
        raise _Reject("cipher suites")
    if not r.vector(1, "compression methods"):
        raise _Reject("no compression methods")
    if r.left == 0:
        return None, ()  # no extensions at all (SSLv3/TLS 1.0 style)
    extensions = _Reader(r.vector(2, "extensions"))
    if r.left:
        raise _Reject("bytes after the extensions")
    return _parse_extensions(extensions)


def _parse_extensions(r: _Reader) -> tuple[str | None, tuple[str, ...]]:
    seen: set[int] = set()
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    while r.left:
        kind = r.uint(2, "extension type")
        data = r.vector(2, "extension")
        if kind in seen:
            raise _Reject(f"duplicate extension {kind}")
        seen.add(kind)
        if kind == EXT_SERVER_NAME:
            server_name = _parse_server_name(data)
        elif kind == EXT_ALPN:
            alpn = _parse_alpn(data)
    return server_name, alpn


def _parse_server_name(data: bytes) -> str | None:
    outer = _Reader(data)
    names = _Reader(outer.vector(2, "server name list"))
    if outer.left:
        raise _Reject("bytes after the server name list")
    found: str | None = None
    while names.left:
        kind = names.uint(1, "server name type")
        name = names.vector(2, "server name")
        if kind == 0 and found is None:
            found = _host_name(name)
    return found


def _host_name(raw: bytes) -> str:
    if not raw or len(raw) > 255:
        raise _Reject("server name length")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _Reject("server name is not ASCII") from None
    if not all(c.isalnum() or c in "-._*" for c in text):
        raise _Reject("server name has characters a host name cannot have")
    return text.rstrip(".").lower()


def _parse_alpn(data: bytes) -> tuple[str, ...]:
    outer = _Reader(data)
    protocols = _Reader(outer.vector(2, "ALPN list"))
    if outer.left:
        raise _Reject("bytes after the ALPN list")
    found: list[str] = []
    while protocols.left:
        proto = protocols.vector(1, "ALPN protocol")
        if not proto:
            raise _Reject("empty ALPN protocol")
        found.append(proto.decode("latin-1"))
    if not found:
        raise _Reject("empty ALPN list")
    return tuple(found)
