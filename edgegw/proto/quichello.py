"""The server name a QUIC client asks for, read from its Initial packets; sans-IO.

Theory of operation
-------------------
A TLS server picks its certificate by SNI. Over TCP that happens in
OpenSSL's ClientHello callback (``net/tls.py``); aioquic's server has no such
callback: its ``QuicConnection`` takes one certificate in its configuration,
and signs with it inside the same ``receive_datagram`` call that reads the
ClientHello. So the name must be known before the connection exists.

RFC 9001 section 5.2 makes that possible without any secret: Initial packets
are protected with keys derived from the client's Destination Connection ID.
``InitialReader`` derives them (aioquic's ``CryptoPair.setup_initial``),
removes the protection of each Initial packet a datagram carries, collects
the CRYPTO frames by offset (a client may split and reorder them, as Chrome
does) and, once the handshake message is whole, parses the ClientHello with
aioquic's own parser. The datagrams are then fed unchanged to the real
connection, which decrypts them again: the cost is one extra AEAD open per
Initial packet, once per connection.

Bounds: a ClientHello larger than ``MAX_HELLO`` or spread over more than
``MAX_DATAGRAMS`` datagrams is not read (the caller then uses the port's
default certificate, which is also what a client without SNI gets). Any
malformed input ends the reading the same way; nothing here raises.
"""

from __future__ import annotations

from aioquic.buffer import Buffer
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import QuicFrameType, QuicPacketType, pull_quic_header
from aioquic.tls import pull_client_hello

MAX_DATAGRAMS = 8
MAX_HELLO = 16 * 1024  # a post-quantum key share makes a ClientHello of ~1.8 KB
_SKIPPED = frozenset({QuicFrameType.PADDING, QuicFrameType.PING})


class InitialReader:
    """Reads the ClientHello of one would-be connection from its Initial datagrams.

    ``feed`` each datagram; once ``done`` is True, ``server_name`` holds the
    SNI (None when the client sent none or the hello could not be read), and
    ``failed`` says that no Initial packet could even be opened: noise, or a
    packet made to look like an Initial, which deserves no connection.
    """

    __slots__ = ("_chunks", "_crypto", "_fed", "_opened", "done", "failed", "server_name")

    def __init__(self, destination_cid: bytes, version: int) -> None:
        self._crypto = CryptoPair()
        self._crypto.setup_initial(destination_cid, is_client=False, version=version)
        self._chunks: dict[int, bytes] = {}
        self._fed = 0
        self._opened = False
        self.done = False
        self.failed = False
        self.server_name: str | None = None

    def feed(self, datagram: bytes) -> bool:
        """Take one datagram from the client; True once reading is over (see ``done``)."""
        if self.done:
            return True
        self._fed += 1
        try:
            self._read_datagram(datagram)
            hello = self._hello_bytes()
        except Exception:  # untrusted bytes: any parse failure ends the reading
            hello, self.done = None, True
            self.failed = not self._opened
        if hello is not None:
            self._parse(hello)
        if self._fed >= MAX_DATAGRAMS:
            self.done = True
        return self.done

    def _read_datagram(self, datagram: bytes) -> None:
        buf = Buffer(data=datagram)
        while not buf.eof():
            start = buf.tell()
            if datagram[start] & 0xC0 != 0xC0:
                return  # zeros padding the datagram after its packets, or a short header
            header = pull_quic_header(buf)
            if header.packet_type != QuicPacketType.INITIAL:
                return  # 0-RTT or Handshake packets coalesced after it: not ours to read
            end = start + header.packet_length
            _, payload, _ = self._crypto.decrypt_packet(datagram[start:end], buf.tell() - start, 0)
            self._opened = True
            self._read_frames(payload)
            buf.seek(end)

    def _read_frames(self, payload: bytes) -> None:
        buf = Buffer(data=payload)
        while not buf.eof():
            kind = buf.pull_uint_var()
            if kind in _SKIPPED:
                continue
            if kind in (QuicFrameType.ACK, QuicFrameType.ACK_ECN):
                _skip_ack(buf, ecn=kind == QuicFrameType.ACK_ECN)
            elif kind == QuicFrameType.CRYPTO:
                offset, length = buf.pull_uint_var(), buf.pull_uint_var()
                if offset + length > MAX_HELLO:
                    raise ValueError("ClientHello too large")
                self._chunks[offset] = buf.pull_bytes(length)
            else:
                raise ValueError(f"frame type {kind} in a client's Initial")

    def _hello_bytes(self) -> bytes | None:
        """The handshake message once its bytes from offset 0 are contiguous and whole."""
        data = b""
        while (chunk := self._chunks.get(len(data))) is not None and chunk:
            data += chunk
        if len(data) < 4:
            return None
        size = 4 + int.from_bytes(data[1:4], "big")
        if size > MAX_HELLO:
            raise ValueError("ClientHello too large")
        return data[:size] if len(data) >= size else None

    def _parse(self, hello: bytes) -> None:
        self.done = True
        try:
            self.server_name = pull_client_hello(Buffer(data=hello)).server_name
        except Exception:  # aioquic's parser raises alerts, buffer and assertion errors
            self.server_name = None


def _skip_ack(buf: Buffer, *, ecn: bool) -> None:
    buf.pull_uint_var()  # largest acknowledged
    buf.pull_uint_var()  # delay
    ranges = buf.pull_uint_var()
    buf.pull_uint_var()  # first range
    for _ in range(ranges):
        buf.pull_uint_var()
        buf.pull_uint_var()
    if ecn:
        for _ in range(3):
            buf.pull_uint_var()
