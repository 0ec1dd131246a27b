"""One HTTP/2 connection without I/O: bytes in, events out; calls in, bytes out.

Theory of operation
-------------------
``receive_data`` appends to a buffer and handles every complete frame in it:
the 9-byte header is read with ``struct``; a frame longer than our
MAX_FRAME_SIZE ends the connection before its body is buffered, so the buffer
never holds more than one frame. Each frame type has one handler. A header
block (HEADERS plus CONTINUATIONs, never interleaved) is HPACK-decoded as soon
as it is complete, also for a stream we will refuse, since the decoder's table
is shared by the whole connection.

Faults are sorted by their reach (section 5.4): a *connection* error raises
``ProtocolError`` after queueing GOAWAY, and the codec ignores input from then
on; a *stream* error resets that stream (RST_STREAM queued, ``StreamReset``
with ``remote_reset=False`` emitted) and the connection goes on. Stream states
follow the table in ``streams.py``; after a stream closes, how it closed is
remembered for up to ``max_closed_streams`` streams, since the RFC treats late
frames differently after our reset (ignored), the peer's reset (stream error)
and the peer's END_STREAM (connection error).

Flow control runs both ways. Inbound: DATA must fit the connection's and the
stream's window; bytes come back to the peer only when the caller calls
``acknowledge_received_data`` (see ``flow.InboundWindow``). Outbound:
``local_flow_control_window`` says how much the caller may pass to
``send_data`` now; SETTINGS_INITIAL_WINDOW_SIZE changes move every open
stream's window by the difference, which may go negative.

Output accumulates until ``data_to_send``. Answers the peer provokes (PING and
SETTINGS acknowledgements, our resets for its stream faults) count against
``max_pending_control`` until then: a flood from a peer that does not read
ends in GOAWAY ENHANCE_YOUR_CALM instead of an unbounded queue.

The method names and events follow the ``h2`` library's where edgegw used it,
so the two are compared frame for frame in the tests.
"""

from __future__ import annotations

from edgegw.proto.h2codec import framing as fr
from edgegw.proto.h2codec import hpackfast
from edgegw.proto.h2codec.errors import (
    ErrorCode,
    FlowControlError,
    H2Error,
    ProtocolError,
    StreamClosedError,
)
from edgegw.proto.h2codec.flow import Stream
from edgegw.proto.h2codec.receive import _ENDED, _WE_RESET, FrameReceiver
from edgegw.proto.h2codec.streams import FLAT, Input, State

HeaderList = list[tuple[bytes, bytes]]
_HEAD = fr.HEAD


def _after(state: int | None, *inputs: int) -> int | None:
    for event in inputs:
        if state is None:
            return None
        state = FLAT[state * 16 + event]
    return state


# a stream's state after HEADERS, DATA and END_STREAM sent at once (``send_response``)
_WHOLE_RESPONSE = [
    _after(state, Input.SEND_HEADERS, Input.SEND_DATA, Input.SEND_END_STREAM)
    for state in range(State.CLOSED + 1)
]
# ... and with trailers after the DATA (a gRPC answer: HEADERS, DATA, HEADERS + END_STREAM)
_WHOLE_ANSWER = [
    _after(state, Input.SEND_HEADERS, Input.SEND_DATA, Input.SEND_HEADERS, Input.SEND_END_STREAM)
    for state in range(State.CLOSED + 1)
]


class H2Codec(FrameReceiver):
    """An HTTP/2 connection's state machine, client or server side; see the module docstring."""

    # --- sending -------------------------------------------------------------------------------

    def _sendable(self, stream_id: int) -> Stream:
        if self._terminated:
            raise ProtocolError("the connection is closed")
        stream = self.streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(stream_id)
        return stream

    def get_next_available_stream_id(self) -> int:
        """The id our next request may open (client side)."""
        return self.highest_outbound_stream_id + 2 if self.highest_outbound_stream_id else 1

    def send_headers(self, stream_id: int, headers: HeaderList, end_stream: bool = False) -> None:
        """Queue a header block (request, response or trailers) on ``stream_id``.

        The headers are not validated: they come from parsers that did, or from
        validated config, with connection-specific fields already removed.

        Raises:
            StreamClosedError: the stream cannot send any more.
            H2Error: a new stream beyond the peer's limits.
        """
        if self.client_side and stream_id not in self.streams and not self._terminated:
            self._open_outbound(stream_id)
        stream = self._sendable(stream_id)
        self._advance(stream, Input.SEND_HEADERS)
        block = hpackfast.encode(headers)
        if not self._table_off_sent:
            block, self._table_off_sent = hpackfast.TABLE_OFF + block, True
        size = self.remote_settings.max_frame_size
        self._out.append(fr.header_frames(stream_id, block, size, end=end_stream))
        if end_stream:
            self._advance(stream, Input.SEND_END_STREAM)

    def _open_outbound(self, stream_id: int) -> None:
        if stream_id <= self.highest_outbound_stream_id or not stream_id & 1:
            raise H2Error(f"stream {stream_id} cannot be opened now")
        if len(self.streams) >= self.remote_settings.max_concurrent_streams:
            raise H2Error("the peer's MAX_CONCURRENT_STREAMS is reached")
        self.highest_outbound_stream_id = stream_id
        self._open(stream_id)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue one DATA frame.

        Raises:
            FlowControlError: larger than the window or the peer's frame size.
            StreamClosedError: the stream cannot send any more.
        """
        stream = self._sendable(stream_id)
        size = len(data)
        if size > min(stream.send_window, self._send_window):
            raise FlowControlError(f"{size} bytes exceed the flow-control window")
        if size > self.remote_settings.max_frame_size:
            raise FlowControlError(f"{size} bytes exceed the peer's MAX_FRAME_SIZE")
        self._advance(stream, Input.SEND_DATA)
        stream.send_window -= size
        self._send_window -= size
        self._out.append(fr.data_frame(stream_id, data, end=end_stream))
        if end_stream:
            self._advance(stream, Input.SEND_END_STREAM)

    def send_response(
        self,
        stream_id: int,
        headers: HeaderList,
        data: bytes,
        trailers: HeaderList | None = None,
    ) -> bool:
        """A whole response at once: HEADERS, then ``data`` in one DATA frame ending the stream
        (or, with ``trailers``, followed by a HEADERS frame of them that ends it: a gRPC answer).

        The common answer (a head and a small body) as one call, one window check and one
        queued piece; False, with nothing queued, when ``data`` is empty or does not fit the
        flow-control windows or the peer's MAX_FRAME_SIZE (then send it piece by piece).

        Raises:
            StreamClosedError: the stream cannot send any more.
        """
        stream = self._sendable(stream_id)
        size = len(data)
        if (
            not size
            or size > stream.send_window
            or size > self._send_window
            or size > self.remote_settings.max_frame_size
        ):
            return False
        state = (_WHOLE_RESPONSE if trailers is None else _WHOLE_ANSWER)[stream.state]
        if state is None:
            raise StreamClosedError(stream_id)
        block = hpackfast.encode(headers)
        if not self._table_off_sent:
            block, self._table_off_sent = hpackfast.TABLE_OFF + block, True
        length, max_size = len(block), self.remote_settings.max_frame_size
        if length <= max_size:  # one HEADERS frame: fr.header_frames, inlined
            head = _HEAD.pack(length >> 8, length & 0xFF, fr.HEADERS, fr.END_HEADERS, stream_id)
            frames = head + block
        else:
            frames = fr.header_frames(stream_id, block, max_size, end=False)
        stream.send_window -= size
        self._send_window -= size
        if trailers is None:
            end = _HEAD.pack(size >> 8, size & 0xFF, fr.DATA, fr.END_STREAM, stream_id)
            self._out.append(b"".join((frames, end, data)))
        else:
            body = _HEAD.pack(size >> 8, size & 0xFF, fr.DATA, 0, stream_id)
            last = fr.header_frames(stream_id, hpackfast.encode(trailers), max_size, end=True)
            self._out.append(b"".join((frames, body, data, last)))
        stream.state = state
        if state == State.CLOSED:
            self._forget(stream, _ENDED)
        return True

    def end_stream(self, stream_id: int) -> None:
        """END_STREAM on an empty DATA frame.

        Raises:
            StreamClosedError: the stream cannot send any more.
        """
        self.send_data(stream_id, b"", end_stream=True)

    def reset_stream(self, stream_id: int, error_code: int = ErrorCode.NO_ERROR) -> None:
        """RST_STREAM: the stream ends here; frames the peer still sends are ignored.

        Raises:
            StreamClosedError: the stream is not open.
        """
        stream = self._sendable(stream_id)
        self._forget(stream, _WE_RESET)
        self._out.append(fr.rst_stream_frame(stream_id, error_code))

    def ping(self, data: bytes) -> None:
        """Queue a PING carrying 8 bytes of ``data``."""
        self._out.append(fr.ping_frame(data, ack=False))

    # --- flow control ----------------------------------------------------------------------------

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        """The caller consumed ``acknowledged_size`` flow-controlled bytes of ``stream_id``."""
        increment = self._inbound.acknowledge(acknowledged_size)
        if increment:
            self._out.append(fr.window_update(0, increment))
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.peer_ended:
            increment = stream.inbound.acknowledge(acknowledged_size)
            if increment:
                self._out.append(fr.window_update(stream_id, increment))

    def local_flow_control_window(self, stream_id: int) -> int:
        """How many DATA bytes ``stream_id`` may send now (may be 0, never negative).

        Raises:
            StreamClosedError: the stream is not open.
        """
        stream = self.streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(stream_id)
        return max(0, min(stream.send_window, self._send_window))

    @property
    def outbound_flow_control_window(self) -> int:
        """How many DATA bytes the connection may send now, over all streams."""
        return self._send_window

    @property
    def max_outbound_frame_size(self) -> int:
        """The largest frame payload the peer accepts."""
        return self.remote_settings.max_frame_size


__all__ = ["H2Codec"]
