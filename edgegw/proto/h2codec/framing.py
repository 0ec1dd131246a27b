"""HTTP/2 frames on the wire (RFC 9113 section 4 and 6).

The frames of every request (DATA, HEADERS, CONTINUATION, WINDOW_UPDATE) are
read and written here with ``struct``: ``hyperframe``'s frame objects cost
more per request than the rest of the codec. The rarer control frames
(SETTINGS, PING, GOAWAY, RST_STREAM, PRIORITY) are built and parsed by
``hyperframe``, which validates their layout.
"""

from __future__ import annotations

import struct

from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    Frame,
    GoAwayFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

from edgegw.proto.h2codec.errors import ErrorCode, ProtocolError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER_SIZE = 9

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9

END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

HEAD = struct.Struct(">HBBBL")  # length (16 + 8 bits), type, flags, stream id (and R)
_HEAD = HEAD
_L = struct.Struct(">L")


def parse_header(buf: bytes | bytearray | memoryview, at: int) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) of the frame header at ``buf[at:at+9]``."""
    hi, lo, kind, flags, stream_id = _HEAD.unpack_from(buf, at)
    return (hi << 8) | lo, kind, flags, stream_id & 0x7FFFFFFF


def header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """A frame header."""
    return _HEAD.pack(length >> 8, length & 0xFF, kind, flags, stream_id)


def unpad(body: bytes, flags: int) -> bytes:
    """The payload of a DATA or HEADERS frame without its padding.

    Raises:
        ProtocolError: the padding is as long as the frame or longer.
    """
    if not flags & PADDED:
        return body
    if not body or body[0] >= len(body):
        raise ProtocolError("padding exceeds the frame")
    return body[1 : len(body) - body[0]]


def data_frame(stream_id: int, data: bytes, *, end: bool) -> bytes:
    """One DATA frame (the caller keeps it within the peer's MAX_FRAME_SIZE)."""
    return header(len(data), DATA, END_STREAM if end else 0, stream_id) + data


def header_frames(stream_id: int, block: bytes, max_size: int, *, end: bool) -> bytes:
    """HEADERS plus as many CONTINUATION frames as ``block`` needs."""
    flags = END_STREAM if end else 0
    if len(block) <= max_size:
        return header(len(block), HEADERS, flags | END_HEADERS, stream_id) + block
    out = [header(max_size, HEADERS, flags, stream_id), block[:max_size]]
    for at in range(max_size, len(block), max_size):
        chunk = block[at : at + max_size]
        last = at + max_size >= len(block)
        out += [header(len(chunk), CONTINUATION, END_HEADERS if last else 0, stream_id), chunk]
    return b"".join(out)


def window_update(stream_id: int, increment: int) -> bytes:
    """A WINDOW_UPDATE frame."""
    return header(4, WINDOW_UPDATE, 0, stream_id) + _L.pack(increment)


def window_increment(body: bytes) -> int:
    """The increment a WINDOW_UPDATE body carries (0 is the caller's to refuse).

    Raises:
        ProtocolError: the body is not 4 bytes (FRAME_SIZE_ERROR).
    """
    if len(body) != 4:
        raise ProtocolError("WINDOW_UPDATE of a wrong size", ErrorCode.FRAME_SIZE_ERROR)
    return int(_L.unpack(body)[0]) & 0x7FFFFFFF


def settings_frame(values: dict[int, int]) -> bytes:
    """Our SETTINGS."""
    frame = SettingsFrame(0)
    frame.settings = dict(values)
    return bytes(frame.serialize())


def settings_ack() -> bytes:
    """SETTINGS with ACK."""
    return bytes(SettingsFrame(0, flags=["ACK"]).serialize())


def ping_frame(data: bytes, *, ack: bool) -> bytes:
    """PING, or its answer."""
    frame = PingFrame(0, flags=["ACK"] if ack else [])
    frame.opaque_data = data
    return bytes(frame.serialize())


def goaway_frame(last_stream_id: int, code: int, data: bytes = b"") -> bytes:
    """GOAWAY."""
    frame = GoAwayFrame(0)
    frame.last_stream_id = last_stream_id
    frame.error_code = code
    frame.additional_data = data
    return bytes(frame.serialize())


def rst_stream_frame(stream_id: int, code: int) -> bytes:
    """RST_STREAM."""
    frame = RstStreamFrame(stream_id)
    frame.error_code = code
    return bytes(frame.serialize())


_CONTROL: dict[int, type[Frame]] = {
    SETTINGS: SettingsFrame,
    PING: PingFrame,
    GOAWAY: GoAwayFrame,
    RST_STREAM: RstStreamFrame,
    PRIORITY: PriorityFrame,
}
_SIZES = {PING: 8, RST_STREAM: 4, PRIORITY: 5}


def parse_control(kind: int, flags: int, stream_id: int, body: bytes) -> Frame:
    """A control frame, parsed and checked by hyperframe.

    Raises:
        ProtocolError: FRAME_SIZE_ERROR for a wrong length, PROTOCOL_ERROR otherwise.
    """
    size = _SIZES.get(kind)
    if (size is not None and len(body) != size) or (
        kind == SETTINGS and (len(body) % 6 or (flags & ACK and body))
    ):
        raise ProtocolError(f"frame type {kind} of a wrong size", ErrorCode.FRAME_SIZE_ERROR)
    if kind == GOAWAY and len(body) < 8:
        raise ProtocolError("GOAWAY too short", ErrorCode.FRAME_SIZE_ERROR)
    frame = _CONTROL[kind](stream_id)
    frame.parse_flags(flags)
    try:
        frame.parse_body(memoryview(body))
    except HyperframeError as exc:
        raise ProtocolError(f"bad frame type {kind}: {exc}") from exc
    return frame


__all__ = [
    "PREFACE",
    "data_frame",
    "goaway_frame",
    "header_frames",
    "parse_control",
    "parse_header",
    "ping_frame",
    "rst_stream_frame",
    "settings_ack",
    "settings_frame",
    "unpad",
    "window_increment",
    "window_update",
]
