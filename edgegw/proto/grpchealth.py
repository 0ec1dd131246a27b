"""The gRPC health checking protocol's two messages, without I/O (``grpc.health.v1``).

A BackendTrafficPolicy ``healthCheck.active`` of ``type: GRPC`` calls
``/grpc.health.v1.Health/Check`` with a ``HealthCheckRequest`` (field 1:
``service``, a string) and wants a ``HealthCheckResponse`` whose field 1
(``status``, an enum) is ``SERVING`` (1). Both are one field each, so they are
encoded and read here directly rather than through generated protobuf code:
the reader skips any other field, as protobuf requires of unknown fields, and
refuses anything malformed or over ``MAX_MESSAGE`` bytes.

``HealthCall`` is one such call over its own HTTP/2 connection (the codec
in ``proto/h2codec``): bytes in, bytes and at last a verdict out, judged as
Envoy's gRPC health checker does: HTTP status 200, ``content-type``
``application/grpc``, ``grpc-status`` 0 and a ``SERVING`` answer are healthy;
any other answer is ``unhealthy`` (at once); a reset, a GOAWAY before the
answer or a broken connection is ``network`` (counted toward the threshold).
"""

from __future__ import annotations

from typing import Literal

from edgegw.proto import http2
from edgegw.proto.h2codec import events as ev
from edgegw.proto.h2codec.errors import ProtocolError

Verdict = Literal["healthy", "unhealthy", "network"]
PATH = b"/grpc.health.v1.Health/Check"
SERVING = 1
MAX_MESSAGE = 1024  # a health answer is a few bytes; more is not one


class MessageError(ValueError):
    """The response is not a well-formed, framed ``HealthCheckResponse``."""


def request_message(service: str) -> bytes:
    """A framed ``HealthCheckRequest`` (gRPC's 5-byte prefix, then the protobuf)."""
    raw = service.encode()
    body = b"\x0a" + _varint(len(raw)) + raw if raw else b""
    return b"\x00" + len(body).to_bytes(4, "big") + body


def response_status(frame: bytes) -> int:
    """``status`` of one framed ``HealthCheckResponse`` (0, UNKNOWN, when absent).

    Raises:
        MessageError: not one uncompressed gRPC message holding a valid protobuf.
    """
    if len(frame) < 5 or frame[0] != 0:
        raise MessageError("not an uncompressed gRPC message")
    length = int.from_bytes(frame[1:5], "big")
    if length != len(frame) - 5 or length > MAX_MESSAGE:
        raise MessageError("gRPC message length does not match")
    status, pos, end = 0, 5, len(frame)
    while pos < end:
        key, pos = _read_varint(frame, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(frame, pos)
            if field == 1:
                status = value
        elif wire == 2:
            size, pos = _read_varint(frame, pos)
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise MessageError(f"wire type {wire}")
        if field == 0 or pos > end:
            raise MessageError("truncated or invalid field")
    return status


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise MessageError("truncated varint")


_LIMITS = http2.H2Limits(max_concurrent_streams=1, initial_window_size=65535)


class HealthCall:
    """One ``Health/Check`` call on a fresh HTTP/2 connection, without I/O."""

    def __init__(self, authority: str, *, tls: bool, service: str) -> None:
        self._h2 = http2.client_connection(_LIMITS)
        self._stream = self._h2.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"https" if tls else b"http"),
            (b":path", PATH),
            (b":authority", authority.encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"user-agent", b"edgegw-health-check"),
        ]
        self._h2.send_headers(self._stream, headers)
        self._h2.send_data(self._stream, request_message(service), end_stream=True)
        self._head: list[tuple[bytes, bytes]] | None = None
        self._body = bytearray()
        self._trailers: list[tuple[bytes, bytes]] = []

    def data_to_send(self) -> bytes:
        """The preface and the request at first; acknowledgements later."""
        return self._h2.data_to_send()

    def receive_data(self, data: bytes) -> Verdict | None:
        """Take bytes from the backend (``b""``: it closed); the verdict once there is one."""
        if not data:
            return "network"
        try:
            events = self._h2.receive_data(data)
        except ProtocolError:
            return "network"
        for event in events:
            verdict = self._on_event(event)
            if verdict is not None:
                return verdict
        return None

    def _on_event(self, event: ev.Event) -> Verdict | None:
        if isinstance(event, ev.ConnectionTerminated | ev.StreamReset):
            return "network"
        if getattr(event, "stream_id", None) != self._stream:
            return None
        if isinstance(event, ev.ResponseReceived):
            self._head = event.headers
        elif isinstance(event, ev.DataReceived):
            self._body += event.data
            self._h2.acknowledge_received_data(event.flow_controlled_length, self._stream)
            if len(self._body) > MAX_MESSAGE + 5:
                return "unhealthy"
        elif isinstance(event, ev.TrailersReceived):
            self._trailers = event.headers
        elif isinstance(event, ev.StreamEnded):
            return self._judge()
        return None

    def _judge(self) -> Verdict:
        head = dict(self._head or ())
        if head.get(b":status") != b"200":
            return "unhealthy"
        if not head.get(b"content-type", b"").startswith(b"application/grpc"):
            return "unhealthy"
        status = dict(self._trailers).get(b"grpc-status", head.get(b"grpc-status"))
        if status != b"0" or not self._body:
            return "unhealthy"
        try:
            return "healthy" if response_status(bytes(self._body)) == SERVING else "unhealthy"
        except MessageError:
            return "unhealthy"
