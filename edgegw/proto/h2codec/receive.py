"""The receiving half of ``H2Codec``: frames in, events out (see ``connection.py``)."""

from __future__ import annotations

from collections.abc import Callable

from hpack import Decoder
from hpack.exceptions import HPACKError, OversizedHeaderListError

from edgegw.proto.h2codec import events as ev
from edgegw.proto.h2codec import framing as fr
from edgegw.proto.h2codec import hpackfast, validate
from edgegw.proto.h2codec.errors import (
    ErrorCode,
    MalformedMessage,
    ProtocolError,
    StreamClosedError,
    StreamError,
)
from edgegw.proto.h2codec.flow import MAX_WINDOW, InboundWindow, Stream
from edgegw.proto.h2codec.settings import (
    DEFAULT_WINDOW,
    INITIAL_WINDOW_SIZE,
    CodecConfig,
    PeerSettings,
)
from edgegw.proto.h2codec.streams import FLAT, Input, State, is_received

HeaderList = list[tuple[bytes, bytes]]
_WE_RESET, _PEER_RESET, _ENDED = 0, 1, 2  # how a stream closed
_KNOWN_BLOCKS = 32  # repeated request blocks remembered per connection (see _known)
_HEAD = fr.HEAD
_HEADERS = fr.HEADERS
_PLAIN_HEADERS = fr.END_HEADERS | fr.PADDED | fr.PRIORITY_FLAG  # of which only END_HEADERS
_CLOSED = State.CLOSED


class FrameReceiver:
    """The receiving half of ``H2Codec``: state, frame handlers, stream bookkeeping."""

    def __init__(self, config: CodecConfig) -> None:
        self.config = config
        self.client_side = config.client_side
        self.remote_settings = PeerSettings()
        self.streams: dict[int, Stream] = {}
        self.highest_inbound_stream_id = 0
        self.highest_outbound_stream_id = 0
        self._closed: dict[int, int] = {}  # how the last streams closed, oldest first
        self._out: list[bytes] = []
        self._pending_control = 0
        self._buffer = bytearray()
        self._awaiting_preface = not config.client_side
        self._awaiting_settings = True
        self._terminated = False
        self._block: list[bytes] | None = None  # a header block waiting for CONTINUATION
        self._block_stream = 0
        self._block_end = False
        self._decoder = Decoder(max_header_list_size=config.max_header_list_size)
        # Request header blocks (server side) or final response heads (client side) made
        # only of indexed fields (a peer repeating itself), already decoded and valid,
        # with their content-length: such a block changes no HPACK table, so the same
        # bytes mean the same head until a block goes through the library decoder, which
        # drops them all. None until there is one (an idle connection keeps no dict).
        self._known: dict[bytes, tuple[tuple[tuple[bytes, bytes], ...], int | None]] | None = None
        self._table_off_sent = False  # see hpackfast
        self._send_window = DEFAULT_WINDOW
        self._inbound = InboundWindow(DEFAULT_WINDOW)
        self._handlers: dict[int, Callable[[int, int, bytes, list[ev.Event]], None]] = {
            fr.DATA: self._on_data,
            fr.HEADERS: self._on_headers,
            fr.PRIORITY: self._on_priority,
            fr.RST_STREAM: self._on_rst_stream,
            fr.SETTINGS: self._on_settings,
            fr.PUSH_PROMISE: self._on_push_promise,
            fr.PING: self._on_ping,
            fr.GOAWAY: self._on_goaway,
            fr.WINDOW_UPDATE: self._on_window_update,
            fr.CONTINUATION: self._on_stray_continuation,
        }

    def increment_flow_control_window(self, increment: int, stream_id: int | None = None) -> None:
        """Let the peer send ``increment`` more bytes (on the connection when no stream)."""
        if stream_id:
            self.streams[stream_id].inbound.grow(increment)
        else:
            self._inbound.grow(increment)
        self._out.append(fr.window_update(stream_id or 0, increment))

    # --- starting and ending ------------------------------------------------------------------

    def initiate_connection(self) -> None:
        """Queue our preface: the client magic (client side), SETTINGS, the connection window."""
        if self.client_side:
            self._out.append(fr.PREFACE)
        self._out.append(fr.settings_frame(self.config.local_settings()))
        extra = self.config.connection_window_size - DEFAULT_WINDOW
        if extra > 0:
            self.increment_flow_control_window(extra)

    def close_connection(
        self, error_code: int = ErrorCode.NO_ERROR, last_stream_id: int | None = None
    ) -> None:
        """Queue GOAWAY and stop: later input is ignored, later sends raise ``ProtocolError``."""
        if self._terminated:
            return
        last = self.highest_inbound_stream_id if last_stream_id is None else last_stream_id
        self._out.append(fr.goaway_frame(last, error_code))
        self._terminated = True

    def has_data_to_send(self) -> bool:
        """Whether ``data_to_send`` would return anything."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call."""
        self._pending_control = 0
        out, self._out = self._out, []
        return b"".join(out)

    # --- receiving ----------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[ev.Event]:
        """Handle the frames ``data`` completes; returns what they mean.

        Raises:
            ProtocolError: a connection error; GOAWAY is queued.
        """
        if self._terminated:
            return []
        buf = self._buffer
        buf += data
        events: list[ev.Event] = []
        try:
            at = 0
            if self._awaiting_preface:
                at = self._take_preface(buf)
                if at < 0:
                    return events
            limit = self.config.max_frame_size
            size = len(buf)
            while size - at >= 9:  # a frame header (fr.parse_header, inlined)
                hi, lo, kind, flags, stream_id = _HEAD.unpack_from(buf, at)
                length = (hi << 8) | lo
                if length > limit:
                    raise ProtocolError("frame too large", ErrorCode.FRAME_SIZE_ERROR)
                end = at + 9 + length
                if end > size:
                    break
                body = bytes(buf[at + 9 : end])
                at = end
                stream_id &= 0x7FFFFFFF
                if (
                    kind != _HEADERS
                    or flags & _PLAIN_HEADERS != fr.END_HEADERS
                    or not self._known_request(flags, stream_id, body, events)
                ):
                    self._frame(kind, flags, stream_id, body, events)
                size = len(buf)
            del buf[:at]
        except ProtocolError as exc:
            self._fail(exc)
            raise
        return events

    def _take_preface(self, buf: bytearray) -> int:
        """The preface's length once it is all here, -1 while it is still coming."""
        if len(buf) < len(fr.PREFACE):
            if not fr.PREFACE.startswith(bytes(buf)):
                raise ProtocolError("not the HTTP/2 connection preface")
            return -1
        if buf[: len(fr.PREFACE)] != fr.PREFACE:
            raise ProtocolError("not the HTTP/2 connection preface")
        self._awaiting_preface = False
        return len(fr.PREFACE)

    def _fail(self, exc: ProtocolError) -> None:
        self._buffer.clear()
        self.close_connection(exc.error_code)

    def _frame(
        self, kind: int, flags: int, stream_id: int, body: bytes, events: list[ev.Event]
    ) -> None:
        if self._block is not None:
            return self._on_continuation(kind, flags, stream_id, body, events)
        if self._awaiting_settings:
            if kind != fr.SETTINGS or flags & fr.ACK:
                raise ProtocolError("the first frame must be SETTINGS")
            self._awaiting_settings = False
        handler = self._handlers.get(kind)
        if handler is None:
            return None  # unknown frame types are ignored (section 5.5)
        try:
            handler(flags, stream_id, body, events)
        except StreamError as exc:
            self._stream_fault(exc, events)
        return None

    # --- HEADERS and CONTINUATION ---------------------------------------------------------------

    def _on_headers(self, flags: int, stream_id: int, body: bytes, events: list[ev.Event]) -> None:
        if stream_id == 0:
            raise ProtocolError("HEADERS on stream 0")
        payload = fr.unpad(body, flags)
        if flags & fr.PRIORITY_FLAG:
            if len(payload) < 5:
                raise ProtocolError("HEADERS priority block cut short", ErrorCode.FRAME_SIZE_ERROR)
            depends_on = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            payload = payload[5:]
            if depends_on == stream_id:
                self._block_done(stream_id, flags & fr.END_STREAM, payload, events, check=False)
                raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "stream depends on itself")
        if flags & fr.END_HEADERS:
            return self._block_done(stream_id, flags & fr.END_STREAM, payload, events)
        self._block, self._block_stream, self._block_end = (
            [payload],
            stream_id,
            bool(flags & fr.END_STREAM),
        )
        return None

    def _on_continuation(
        self, kind: int, flags: int, stream_id: int, body: bytes, events: list[ev.Event]
    ) -> None:
        block = self._block
        assert block is not None
        if kind != fr.CONTINUATION or stream_id != self._block_stream:
            raise ProtocolError("a header block was interrupted")
        block.append(body)
        if len(block) > self.config.max_continuation:
            raise ProtocolError("too many CONTINUATION frames", ErrorCode.ENHANCE_YOUR_CALM)
        if flags & fr.END_HEADERS:
            self._block = None
            try:
                self._block_done(stream_id, self._block_end, b"".join(block), events)
            except StreamError as exc:
                self._stream_fault(exc, events)

    def _on_stray_continuation(
        self, flags: int, stream_id: int, body: bytes, events: list[ev.Event]
    ) -> None:
        raise ProtocolError("CONTINUATION outside a header block")

    def _decode(self, block: bytes) -> HeaderList:
        fast = hpackfast.decode_indexed(self._decoder, block)
        if fast is not None:
            return fast
        self._known = None  # the dynamic table may change: remembered blocks may not hold
        try:
            return hpackfast.decode_library(self._decoder, block)
        except OversizedHeaderListError as exc:
            raise ProtocolError(
                f"header list too large: {exc}", ErrorCode.ENHANCE_YOUR_CALM
            ) from exc
        except (HPACKError, ValueError, IndexError) as exc:
            raise ProtocolError(f"HPACK: {exc}", ErrorCode.COMPRESSION_ERROR) from exc

    def _block_done(
        self, stream_id: int, end: int | bool, block: bytes, events: list[ev.Event], *,
        check: bool = True,
    ) -> None:  # fmt: skip
        stream = self.streams.get(stream_id)
        known = self._known.get(block) if check and self._known is not None else None
        if known is not None:
            if stream is None:
                return self._new_stream(stream_id, list(known[0]), bool(end), events, known[1])
            if self.client_side and not stream.response_seen:
                return self._final_response(stream, list(known[0]), bool(end), events, known[1])
        headers = self._decode(block)
        if not check:
            return None
        if stream is None:
            return self._new_stream(stream_id, headers, bool(end), events, block=block)
        if self.client_side and not stream.response_seen:
            return self._response(stream, headers, bool(end), events, block)
        return self._trailers(stream, headers, bool(end), events)

    def _known_request(
        self, flags: int, stream_id: int, block: bytes, events: list[ev.Event]
    ) -> bool:
        """A new request in one HEADERS frame whose block is a known valid one (``_known``):
        what ``_frame`` would make of it, in one step. False, and nothing done, for anything
        else (the frame then takes the full path, with every check and error)."""
        known = self._known
        if known is None or self._block is not None or self._awaiting_settings:
            return False
        entry = known.get(block)
        if entry is None or self.client_side:
            return False
        headers, expected = entry
        end = flags & fr.END_STREAM
        if (
            stream_id <= self.highest_inbound_stream_id
            or not stream_id & 1
            or stream_id in self._closed
            or len(self.streams) >= self.config.max_concurrent_streams
            or (end and expected)  # a body announced and none sent: malformed
        ):
            return False
        self.highest_inbound_stream_id = stream_id
        stream = self._open(stream_id)
        stream.expected = expected
        if end:
            stream.state = State.HALF_CLOSED_REMOTE  # IDLE, RECV_HEADERS, RECV_END_STREAM
            stream.peer_ended = True
            events.append(ev.RequestReceived(stream_id, list(headers), True))
            events.append(ev.StreamEnded(stream_id))
        else:
            stream.state = State.OPEN  # IDLE, RECV_HEADERS
            events.append(ev.RequestReceived(stream_id, list(headers), False))
        return True

    def _new_stream(
        self, stream_id: int, headers: HeaderList, end: bool, events: list[ev.Event],
        expected: int | bool | None = False, block: bytes = b"",
    ) -> None:  # fmt: skip
        """A request opens ``stream_id``; ``expected`` is its content-length when the block
        is a known valid one (``_known``), False when it must be validated here."""
        if stream_id in self._closed or stream_id <= self.highest_inbound_stream_id:
            return self._late_frame(stream_id, headers_frame=True)
        if self.client_side or not stream_id & 1:
            raise ProtocolError(f"the peer may not open stream {stream_id}")
        self.highest_inbound_stream_id = stream_id
        if len(self.streams) >= self.config.max_concurrent_streams:
            raise StreamError(stream_id, ErrorCode.REFUSED_STREAM, "too many streams")
        if expected is False:
            expected = validate.check_request(
                stream_id, headers, connect_protocol=self.config.enable_connect_protocol
            )
            self._remember(block, headers, expected)
        stream = self._open(stream_id)
        stream.expected = expected
        self._advance(stream, Input.RECV_HEADERS)
        events.append(ev.RequestReceived(stream_id, headers, end))
        if end:
            self._peer_ended(stream, events)

    def _remember(self, block: bytes, headers: HeaderList, expected: int | None) -> None:
        """Keep a valid request (server side) or final response (client side) block that is
        all indexed fields, with its content-length (see ``_known``)."""
        if block and hpackfast.all_indexed(block):
            known = self._known
            if known is None or len(known) >= _KNOWN_BLOCKS:
                known = self._known = {}
            known[block] = (tuple(headers), expected)

    def _response(
        self, stream: Stream, headers: HeaderList, end: bool, events: list[ev.Event], block: bytes
    ) -> None:
        sid = stream.stream_id
        status = validate.check_response(sid, headers)
        if status < 200:
            if end:
                raise MalformedMessage(
                    sid, ErrorCode.PROTOCOL_ERROR, "1xx response ends the stream"
                )
            events.append(ev.InformationalResponseReceived(sid, headers))
            return
        expected = _content_length(headers)
        self._remember(block, headers, expected)
        self._final_response(stream, headers, end, events, expected)

    def _final_response(
        self, stream: Stream, headers: HeaderList, end: bool, events: list[ev.Event],
        expected: int | None,
    ) -> None:  # fmt: skip
        sid = stream.stream_id
        stream.response_seen = True
        stream.expected = expected
        self._advance(stream, Input.RECV_HEADERS)
        events.append(ev.ResponseReceived(sid, headers, end))
        if end:
            self._peer_ended(stream, events)

    def _trailers(
        self, stream: Stream, headers: HeaderList, end: bool, events: list[ev.Event]
    ) -> None:
        sid = stream.stream_id
        self._advance(stream, Input.RECV_HEADERS)
        if not end:
            raise MalformedMessage(sid, ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM")
        validate.check_trailers(sid, headers)
        events.append(ev.TrailersReceived(sid, headers))
        self._peer_ended(stream, events)

    # --- DATA ----------------------------------------------------------------------------------

    def _on_data(self, flags: int, stream_id: int, body: bytes, events: list[ev.Event]) -> None:
        if stream_id == 0:
            raise ProtocolError("DATA on stream 0")
        length = len(body)
        if not self._inbound.receive(length):
            raise ProtocolError("DATA beyond the connection window", ErrorCode.FLOW_CONTROL_ERROR)
        data = fr.unpad(body, flags)
        stream = self.streams.get(stream_id)
        if stream is None or FLAT[stream.state * 16 + Input.RECV_DATA] is None:
            self._give_back(length)
            if stream is not None:
                raise StreamError(stream_id, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM")
            return self._late_frame(stream_id, headers_frame=False)
        if self.client_side and not stream.response_seen:
            self._give_back(length)
            raise MalformedMessage(stream_id, ErrorCode.PROTOCOL_ERROR, "DATA before the response")
        if not stream.inbound.receive(length):
            self._give_back(length)
            raise StreamError(stream_id, ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the window")
        stream.received += len(data)
        if stream.expected is not None and stream.received > stream.expected:
            raise MalformedMessage(
                stream_id, ErrorCode.PROTOCOL_ERROR, "body exceeds content-length"
            )
        if length:
            events.append(ev.DataReceived(stream_id, data, length))
        if flags & fr.END_STREAM:
            self._peer_ended(stream, events)
        return None

    def _peer_ended(self, stream: Stream, events: list[ev.Event]) -> None:
        sid = stream.stream_id
        if stream.expected is not None and stream.received != stream.expected:
            raise MalformedMessage(
                sid, ErrorCode.PROTOCOL_ERROR, "body shorter than content-length"
            )
        stream.peer_ended = True
        self._advance(stream, Input.RECV_END_STREAM)
        events.append(ev.StreamEnded(sid))

    def _give_back(self, length: int) -> None:
        """Return flow-controlled bytes of a frame nobody will consume."""
        increment = self._inbound.acknowledge(length)
        if increment:
            self._out.append(fr.window_update(0, increment))

    # --- control frames ------------------------------------------------------------------------

    def _on_rst_stream(
        self, flags: int, stream_id: int, body: bytes, events: list[ev.Event]
    ) -> None:
        if stream_id == 0:
            raise ProtocolError("RST_STREAM on stream 0")
        frame = fr.parse_control(fr.RST_STREAM, flags, stream_id, body)
        stream = self.streams.get(stream_id)
        if stream is None:
            if self._is_idle(stream_id):
                raise ProtocolError(f"RST_STREAM on idle stream {stream_id}")
            return
        self._forget(stream, _PEER_RESET)
        code = _code(frame.error_code)  # type: ignore[attr-defined]
        events.append(ev.StreamReset(stream_id, code, remote_reset=True))

    def _on_settings(self, flags: int, stream_id: int, body: bytes, events: list[ev.Event]) -> None:
        if stream_id != 0:
            raise ProtocolError("SETTINGS on a stream")
        frame = fr.parse_control(fr.SETTINGS, flags, stream_id, body)
        if flags & fr.ACK:
            events.append(ev.SettingsAcknowledged())
            return
        before = self.remote_settings.initial_window_size
        changed = self.remote_settings.apply(frame.settings)  # type: ignore[attr-defined]
        if INITIAL_WINDOW_SIZE in changed:
            self._shift_windows(changed[INITIAL_WINDOW_SIZE] - before)
        self._answer(fr.settings_ack())
        events.append(ev.RemoteSettingsChanged(changed))

    def _shift_windows(self, delta: int) -> None:
        for stream in self.streams.values():
            stream.send_window += delta
            if stream.send_window > MAX_WINDOW:
                raise ProtocolError("a stream window overflowed", ErrorCode.FLOW_CONTROL_ERROR)

    def _on_ping(self, flags: int, stream_id: int, body: bytes, events: list[ev.Event]) -> None:
        if stream_id != 0:
            raise ProtocolError("PING on a stream")
        fr.parse_control(fr.PING, flags, stream_id, body)
        if flags & fr.ACK:
            events.append(ev.PingAckReceived(body))
            return
        self._answer(fr.ping_frame(body, ack=True))
        events.append(ev.PingReceived(body))

    def _on_goaway(self, flags: int, stream_id: int, body: bytes, events: list[ev.Event]) -> None:
        if stream_id != 0:
            raise ProtocolError("GOAWAY on a stream")
        frame = fr.parse_control(fr.GOAWAY, flags, stream_id, body)
        code = _code(frame.error_code)  # type: ignore[attr-defined]
        last = frame.last_stream_id  # type: ignore[attr-defined]
        events.append(ev.ConnectionTerminated(code, last, frame.additional_data))  # type: ignore[attr-defined]

    def _on_priority(self, flags: int, stream_id: int, body: bytes, events: list[ev.Event]) -> None:
        if stream_id == 0:
            raise ProtocolError("PRIORITY on stream 0")
        frame = fr.parse_control(fr.PRIORITY, flags, stream_id, body)
        if frame.depends_on == stream_id:  # type: ignore[attr-defined]
            raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "stream depends on itself")

    def _on_push_promise(
        self, flags: int, stream_id: int, body: bytes, events: list[ev.Event]
    ) -> None:
        raise ProtocolError("PUSH_PROMISE: push is disabled")

    def _on_window_update(
        self, flags: int, stream_id: int, body: bytes, events: list[ev.Event]
    ) -> None:
        increment = fr.window_increment(body)
        if stream_id == 0:
            if increment == 0:
                raise ProtocolError("WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise ProtocolError("connection window overflow", ErrorCode.FLOW_CONTROL_ERROR)
            events.append(ev.WindowUpdated(0, increment))
            return
        stream = self.streams.get(stream_id)
        if stream is None:
            if self._is_idle(stream_id):
                raise ProtocolError(f"WINDOW_UPDATE on idle stream {stream_id}")
            return
        if increment == 0:
            raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            raise StreamError(stream_id, ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow")
        events.append(ev.WindowUpdated(stream_id, increment))

    # --- stream bookkeeping ----------------------------------------------------------------------

    def _is_local(self, stream_id: int) -> bool:
        return bool(stream_id & 1) == self.client_side

    def _is_idle(self, stream_id: int) -> bool:
        if self._is_local(stream_id):
            return stream_id > self.highest_outbound_stream_id
        return stream_id > self.highest_inbound_stream_id

    def _late_frame(self, stream_id: int, *, headers_frame: bool) -> None:
        """A frame for a stream that is not open: ignore it, or whose fault is it?"""
        how = self._closed.get(stream_id)
        if how == _WE_RESET:
            return
        if how == _ENDED:
            raise ProtocolError(f"frame after END_STREAM on {stream_id}", ErrorCode.STREAM_CLOSED)
        if how is None and (self._is_idle(stream_id) or headers_frame):
            raise ProtocolError(f"frame on idle or reused stream {stream_id}")
        raise StreamError(stream_id, ErrorCode.STREAM_CLOSED, "stream is closed")

    def _open(self, stream_id: int) -> Stream:
        stream = Stream(
            stream_id, self.remote_settings.initial_window_size, self.config.initial_window_size
        )
        self.streams[stream_id] = stream
        return stream

    def _advance(self, stream: Stream, event: int) -> None:
        state = FLAT[stream.state * 16 + event]  # streams.next_state, inlined
        if state is None:
            if is_received(event):
                raise StreamError(stream.stream_id, ErrorCode.STREAM_CLOSED, "stream is closed")
            raise StreamClosedError(stream.stream_id)
        stream.state = state
        if state == _CLOSED:
            self._forget(stream, _ENDED)

    def _forget(self, stream: Stream, how: int) -> None:
        stream.state = State.CLOSED
        self.streams.pop(stream.stream_id, None)
        closed = self._closed
        closed[stream.stream_id] = how
        if len(closed) > self.config.max_closed_streams:
            # The oldest eighth goes at once, into a new dict: evicting one key at a time
            # (next(iter(closed))) walks every slot deleted before it, 1-5 us per stream.
            items = list(closed.items())
            self._closed = dict(items[len(items) // 8 :])

    def _stream_fault(self, exc: StreamError, events: list[ev.Event]) -> None:
        """RST_STREAM for the peer's fault on one stream; GOAWAY too, when it was a
        malformed message and ``malformed_ends_connection`` (Envoy's order: RST, GOAWAY).

        Raises:
            ProtocolError: the connection ends (GOAWAY PROTOCOL_ERROR follows the RST).
        """
        sid = exc.stream_id
        stream = self.streams.get(sid)
        if stream is not None:
            self._forget(stream, _WE_RESET)
            events.append(ev.StreamReset(sid, exc.error_code, remote_reset=False))
        else:
            self._closed.setdefault(sid, _WE_RESET)
        self._answer(fr.rst_stream_frame(sid, exc.error_code))
        if self.config.malformed_ends_connection and isinstance(exc, MalformedMessage):
            raise ProtocolError(f"malformed message on stream {sid}: {exc}")

    def _answer(self, frame: bytes) -> None:
        """Queue an answer the peer provoked, within the flood limit."""
        self._pending_control += 1
        if self._pending_control > self.config.max_pending_control:
            raise ProtocolError("control frame flood", ErrorCode.ENHANCE_YOUR_CALM)
        self._out.append(frame)


def _code(value: int) -> ErrorCode | int:
    try:
        return ErrorCode(value)
    except ValueError:
        return value


def _content_length(headers: HeaderList) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None
