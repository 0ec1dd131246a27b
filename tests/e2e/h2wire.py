"""An HTTP/2 client made of hand-built frames, for conformance tests of the server side.

``h2`` as a client refuses to send what a conformance test must send (frames on closed
streams, bad settings, broken HPACK), so the frames are built here: valid ones with
``hyperframe`` and ``hpack``, malformed ones byte by byte with ``raw_frame``. The server's
frames are parsed with ``hyperframe``; every read has a deadline, so a server that stays
silent fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable
from typing import TypeVar

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TIMEOUT = 5.0

# Frame types and flags (RFC 9113 section 6), for frames built byte by byte.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# Error codes (RFC 9113 section 7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x4, 0x5, 0x6, 0x7
CANCEL, COMPRESSION_ERROR = 0x8, 0x9

F = TypeVar("F", bound=Frame)


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame exactly as given: no check of length, flags or stream."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


def setting(identifier: int, value: int) -> bytes:
    """One SETTINGS parameter."""
    return struct.pack(">HI", identifier, value)


def frames_of(data: bytes) -> list[Frame]:
    """The whole frames in ``data``, in order."""
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]), strict=False)
        if len(data) < 9 + length:
            break
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


class ConnectionClosedError(AssertionError):
    """The server closed the connection while the test still expected a frame."""


class Wire:
    """One client connection: send frames, read the server's, with a deadline on each read."""

    def __init__(self, sock: socket.socket, authority: str, scheme: str) -> None:
        self.sock = sock
        self.authority = authority
        self.scheme = scheme
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.server_settings: dict[int, int] = {}
        self.fields: dict[int, dict[str, str]] = {}  # each stream's decoded header fields
        self.bodies: dict[int, bytes] = {}  # each stream's DATA
        self.ended: set[int] = set()  # streams the server ended (END_STREAM)
        self._block = b""  # a header block until END_HEADERS
        self._buffer = b""
        self._pings = 0
        sock.settimeout(TIMEOUT)

    # --- sending ------------------------------------------------------------------------

    def send(self, *frames: Frame | bytes) -> None:
        self.sock.sendall(b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames))

    def flood(self, *frames: bytes) -> None:
        """Send frames the server may close the connection on before it has read them all."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send(*frames)

    def request_fields(
        self, method: str = "GET", path: str = "/", extra: list[tuple[str, str]] | None = None
    ) -> list[tuple[str, str]]:
        return [
            (":method", method),
            (":scheme", self.scheme),
            (":path", path),
            (":authority", self.authority),
            *(extra or []),
        ]

    def block(self, fields: list[tuple[str, str]], *, huffman: bool = True) -> bytes:
        """A header block in this connection's HPACK context."""
        return bytes(self.encoder.encode(fields, huffman=huffman))

    def headers(
        self, stream_id: int, fields: list[tuple[str, str]] | None = None, *, end_stream: bool
    ) -> HeadersFrame:
        """A HEADERS frame with END_HEADERS; the fields default to a GET of /."""
        frame = HeadersFrame(stream_id, self.block(fields or self.request_fields()))
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame

    def handshake(self, settings: bytes = b"") -> None:
        """Preface and SETTINGS both ways, each side's SETTINGS acknowledged."""
        self.send(PREFACE + raw_frame(SETTINGS, 0, 0, settings))
        acked = False
        while not (self.server_settings and acked):
            frame = self.frame()
            if isinstance(frame, SettingsFrame):
                if "ACK" in frame.flags:
                    acked = True
                else:
                    self.server_settings = dict(frame.settings) or {-1: 0}
                    self.send(raw_frame(SETTINGS, ACK, 0))

    # --- reading ------------------------------------------------------------------------

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                raise AssertionError("the server sent nothing within the deadline") from None
            if not chunk:
                raise ConnectionClosedError("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def frame(self) -> Frame:
        """The server's next frame; header blocks are decoded (in order, as HPACK needs)."""
        header = self._read(9)
        frame, length = Frame.parse_frame_header(memoryview(header), strict=False)
        frame.parse_body(memoryview(self._read(length)))
        if isinstance(frame, HeadersFrame | ContinuationFrame):
            self._block += frame.data
            if "END_HEADERS" in frame.flags:
                decoded = self.decoder.decode(self._block, raw=True)
                fields = self.fields.setdefault(frame.stream_id, {})
                fields.update((n.decode(), v.decode()) for n, v in decoded)
                self._block = b""
        if isinstance(frame, DataFrame):
            self.bodies[frame.stream_id] = self.bodies.get(frame.stream_id, b"") + frame.data
        if "END_STREAM" in frame.flags:
            self.ended.add(frame.stream_id)
        return frame

    def until(self, kind: type[F], match: Callable[[F], bool] = lambda _: True) -> F:
        """Read frames until one of ``kind`` that ``match``es; others are passed over."""
        while True:
            frame = self.frame()
            if isinstance(frame, kind) and match(frame):
                return frame

    def closed(self) -> bool:
        """Whether the server closes the connection (frames before the close are passed over)."""
        try:
            while True:
                self.frame()
        except ConnectionClosedError:
            return True

    # --- what a case expects ----------------------------------------------------------------

    def ping(self) -> None:
        """A PING answered in order: everything sent before it was read and accepted."""
        self._pings += 1
        data = struct.pack(">Q", self._pings)
        self.send(raw_frame(PING, 0, 0, data))
        frame = self.until(PingFrame, lambda f: "ACK" in f.flags)
        assert frame.opaque_data == data, "a PING ACK must echo the PING's data"

    def expect_connection_error(self, code: int) -> None:
        """GOAWAY with ``code``, then the connection closes (RFC 9113 section 5.4.1)."""
        frame = self.until(GoAwayFrame)
        assert frame.error_code == code, f"GOAWAY {frame.error_code}, expected {code}"
        assert self.closed()

    def expect_stream_error(self, stream_id: int, code: int) -> None:
        """RST_STREAM with ``code`` on the stream, or the connection error of that code.

        RFC 9113 section 5.4: an endpoint may always treat a stream error as a connection
        error, so h2spec accepts either; so do we.
        """
        while True:
            frame = self.frame()
            if isinstance(frame, GoAwayFrame) or (
                isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id
            ):
                break
        name = type(frame).__name__
        assert frame.error_code == code, f"{name} {frame.error_code}, expected {code}"

    def response(self, stream_id: int) -> tuple[dict[str, str], bytes]:
        """The response on ``stream_id``: its header fields and body."""
        while stream_id not in self.ended:
            frame = self.frame()
            if isinstance(frame, GoAwayFrame) or (
                isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id
            ):
                raise AssertionError(f"{type(frame).__name__} {frame.error_code}, not a response")
        return self.fields.get(stream_id, {}), self.bodies.get(stream_id, b"")

    def raw_until_closed(self) -> bytes:
        """Every byte the server sends until it closes the connection (no framing assumed)."""
        data, self._buffer = self._buffer, b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            except TimeoutError:
                raise AssertionError("the server kept the connection open") from None
            if not chunk:
                return data
            data += chunk
