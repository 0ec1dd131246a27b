"""What the codec tells its caller: frozen, slotted events named in the past tense.

The names and fields follow the ``h2`` library's events where edgegw used them,
so the two can be compared frame for frame (``tests/unit/test_h2codec_differential.py``).
Header lists are ``[(name, value), ...]`` of bytes, names lower-case.
"""

from __future__ import annotations

import msgspec

from edgegw.proto.h2codec.errors import ErrorCode

HeaderList = list[tuple[bytes, bytes]]


class Event(msgspec.Struct, frozen=True, gc=False):
    """Base of every event."""


class RequestReceived(Event, frozen=True, gc=False):
    """A client opened a stream with a valid request head; ``ended``: no body follows."""

    stream_id: int
    headers: HeaderList
    ended: bool


class ResponseReceived(Event, frozen=True, gc=False):
    """The final response head on a stream we opened; ``ended``: no body follows."""

    stream_id: int
    headers: HeaderList
    ended: bool


class InformationalResponseReceived(Event, frozen=True, gc=False):
    """A 1xx response head (RFC 9113 section 8.1); the final one is still to come."""

    stream_id: int
    headers: HeaderList


class TrailersReceived(Event, frozen=True, gc=False):
    """Trailing fields; a ``StreamEnded`` follows, since trailers always end a stream."""

    stream_id: int
    headers: HeaderList


class DataReceived(Event, frozen=True, gc=False):
    """Body bytes; acknowledge ``flow_controlled_length`` once they are consumed."""

    stream_id: int
    data: bytes
    flow_controlled_length: int


class StreamEnded(Event, frozen=True, gc=False):
    """The peer will send nothing more on this stream (END_STREAM)."""

    stream_id: int


class StreamReset(Event, frozen=True, gc=False):
    """The stream is gone: the peer sent RST_STREAM, or we did for its fault."""

    stream_id: int
    error_code: ErrorCode | int
    remote_reset: bool


class WindowUpdated(Event, frozen=True, gc=False):
    """The peer opened its window; ``stream_id`` 0 is the connection."""

    stream_id: int
    delta: int


class RemoteSettingsChanged(Event, frozen=True, gc=False):
    """The peer's SETTINGS, applied and acknowledged: setting code → new value."""

    changed: dict[int, int]


class SettingsAcknowledged(Event, frozen=True, gc=False):
    """The peer acknowledged our SETTINGS."""


class PingReceived(Event, frozen=True, gc=False):
    """A PING, already answered."""

    data: bytes


class PingAckReceived(Event, frozen=True, gc=False):
    """The answer to a PING we sent."""

    data: bytes


class ConnectionTerminated(Event, frozen=True, gc=False):
    """GOAWAY: streams above ``last_stream_id`` were not processed and will not be."""

    error_code: ErrorCode | int
    last_stream_id: int
    additional_data: bytes
