"""HTTP/2 error codes and the exceptions the codec raises.

Exception tree::

    H2Error                     anything the codec refuses
    ├── ProtocolError           the peer broke the protocol; the connection is over
    │                           (a GOAWAY with ``error_code`` is queued already)
    ├── StreamClosedError       we tried to send on a stream that can no longer carry it
    └── FlowControlError        we tried to send more than the peer's window allows

Stream-level faults of the peer are not exceptions: the stream is reset and a
``StreamReset`` event (``remote_reset=False``) says so. A malformed message
(RFC 9113 section 8.1.1) is such a fault, unless ``CodecConfig.malformed_ends_connection``
makes it a connection error (Envoy's ``override_stream_error_on_invalid_http_message:
false``): RST_STREAM then GOAWAY, both PROTOCOL_ERROR, and ``ProtocolError`` raised.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """RFC 9113 section 7."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class H2Error(Exception):
    """Base of everything the codec raises."""


class ProtocolError(H2Error):
    """The peer broke the protocol: a GOAWAY carrying ``error_code`` is queued to send."""

    def __init__(self, message: str, error_code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.error_code = error_code


class StreamClosedError(H2Error):
    """Our own misuse: sending on a stream that is closed (or half-closed) for sending."""

    def __init__(self, stream_id: int) -> None:
        super().__init__(f"stream {stream_id} is closed for sending")
        self.stream_id = stream_id


class FlowControlError(H2Error):
    """Our own misuse: DATA larger than the window or the peer's frame size."""


class StreamError(Exception):
    """Internal: a peer fault that ends one stream (RST_STREAM), not the connection."""

    def __init__(self, stream_id: int, error_code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.error_code = error_code


class MalformedMessage(StreamError):
    """Internal: a malformed request or response head or body (RFC 9113 section 8.1.1)."""
