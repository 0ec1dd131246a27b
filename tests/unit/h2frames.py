"""Frame sequences for the HTTP/2 codec tests, written with hyperframe and hpack."""

from __future__ import annotations

from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HeaderList = list[tuple[bytes, bytes]]

GET: HeaderList = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/"),
]


def post(length: int | None = None) -> HeaderList:
    """A POST head, with a content-length when given."""
    head = [(b":method", b"POST"), *GET[1:]]
    if length is not None:
        head.append((b"content-length", str(length).encode()))
    return head


class Client:
    """Builds what a client sends: one HPACK encoder, frames as bytes."""

    def __init__(self) -> None:
        self.encoder = Encoder()

    def block(self, headers: HeaderList) -> bytes:
        return bytes(self.encoder.encode(headers))

    def headers(
        self, stream_id: int, headers: HeaderList, *, end: bool = False, **kwargs: object
    ) -> bytes:
        flags = ["END_HEADERS"] + (["END_STREAM"] if end else [])
        frame = HeadersFrame(stream_id, self.block(headers), flags=flags, **kwargs)
        return bytes(frame.serialize())


def raw(frame: Frame) -> bytes:
    return bytes(frame.serialize())


def settings(values: dict[int, int] | None = None, *, ack: bool = False) -> bytes:
    return raw(SettingsFrame(0, settings=values or {}, flags=["ACK"] if ack else []))


def data(stream_id: int, payload: bytes, *, end: bool = False, pad: int = 0) -> bytes:
    flags = (["END_STREAM"] if end else []) + (["PADDED"] if pad else [])
    return raw(DataFrame(stream_id, payload, flags=flags, pad_length=pad))


def continuation(stream_id: int, block: bytes, *, end: bool) -> bytes:
    return raw(ContinuationFrame(stream_id, block, flags=["END_HEADERS"] if end else []))


def window_update(stream_id: int, increment: int) -> bytes:
    frame = WindowUpdateFrame(stream_id)
    frame.window_increment = increment
    return raw(frame)


def ping(payload: bytes = b"12345678", *, ack: bool = False) -> bytes:
    return raw(PingFrame(0, opaque_data=payload, flags=["ACK"] if ack else []))


def rst(stream_id: int, code: int = 8) -> bytes:
    return raw(RstStreamFrame(stream_id, error_code=code))


def priority(stream_id: int, depends_on: int) -> bytes:
    return raw(PriorityFrame(stream_id, depends_on=depends_on, stream_weight=15))


def goaway(last: int = 0, code: int = 0) -> bytes:
    return raw(GoAwayFrame(0, last_stream_id=last, error_code=code))


def push_promise(stream_id: int, promised: int, block: bytes) -> bytes:
    return raw(PushPromiseFrame(stream_id, promised, block, flags=["END_HEADERS"]))


def frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return length.to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big")
