"""HTTP/2 server conformance in the manner of h2spec, over real sockets to ``edgegw run``.

h2spec is not packaged where this project installs from, so its cases are written here as a
table: each names the h2spec case it follows (``http2/<RFC 9113 section>/<n>``,
``hpack/<RFC 7541 section>/<n>``, ``generic/<n>``), sends frames built by hand
(``tests/e2e/h2wire.py``) and asserts what the RFC requires: a GOAWAY with a given error code
and the connection closed (a connection error), an RST_STREAM or GOAWAY with a given code (a
stream error, which RFC 9113 section 5.4 lets a server treat as a connection error), or an
answer (a PING ACK, a SETTINGS ACK, a response). Every case runs on h2c (prior knowledge, an
HTTP listener) and on h2 over TLS (ALPN, an HTTPS listener) of one gateway.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import hpack
import pytest
import trustme
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.e2e.conftest import Echo, Gateway, free_port
from tests.e2e.h2wire import (
    ACK,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    STREAM_CLOSED,
    WINDOW_UPDATE,
    Wire,
    frames_of,
    raw_frame,
    setting,
)
from tests.e2e.test_https import tls_secret

pytestmark = pytest.mark.e2e

HOST = "h2.example.com"
MAX_FRAME = 1 << 14  # edgegw's SETTINGS_MAX_FRAME_SIZE (the RFC's initial value)


@dataclass(frozen=True)
class Server:
    h2c_port: int
    tls_port: int
    ca: trustme.CA


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One gateway for every case: an HTTP and an HTTPS listener, a route to an echo backend."""
    tmp = tmp_path_factory.mktemp("h2conformance")
    echo = Echo("a", tmp)
    gateway = Gateway(tmp)
    ca = trustme.CA()
    h2c_port, tls_port = free_port(), free_port()
    gateway.write("gateway.yaml", _gateway_yaml(h2c_port, tls_port))
    gateway.write("secret.yaml", tls_secret("cert", ca, HOST))
    gateway.service("echo", echo)
    gateway.write("route.yaml", ROUTE)
    try:
        gateway.start()
        yield Server(h2c_port, tls_port, ca)
    finally:
        if gateway.process is not None:
            gateway.stop()
        echo.process.stop()


def _gateway_yaml(h2c_port: int, tls_port: int) -> str:
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: edgegw}}
spec: {{controllerName: edgegw.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: edgegw
  listeners:
  - {{name: h2c, protocol: HTTP, port: {h2c_port}}}
  - name: h2
    protocol: HTTPS
    port: {tls_port}
    hostname: {HOST}
    tls: {{certificateRefs: [{{name: cert}}]}}
"""


ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: echo, port: 80}]
"""


@pytest.fixture(params=["h2c", "tls"])
def connect(request: pytest.FixtureRequest, server: Server) -> Iterator[Callable[[], Wire]]:
    """Opens client connections of one transport; closes them after the case."""
    opened: list[socket.socket] = []

    def open_wire() -> Wire:
        sock = socket.create_connection(("127.0.0.1", _port(server, request.param)), 5)
        if request.param == "tls":
            ctx = ssl.create_default_context()
            server.ca.configure_trust(ctx)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname=HOST)
            assert sock.selected_alpn_protocol() == "h2"
        opened.append(sock)
        return Wire(sock, HOST, "https" if request.param == "tls" else "http")

    yield open_wire
    for sock in opened:
        sock.close()


def _port(server: Server, transport: str) -> int:
    return server.tls_port if transport == "tls" else server.h2c_port


@pytest.fixture
def wire(connect: Callable[[], Wire]) -> Wire:
    """A connection past the preface and the SETTINGS exchange."""
    w = connect()
    w.handshake()
    return w


# --- the cases ----------------------------------------------------------------------------------
# Each takes a connection past the handshake and asserts the outcome. ``CASES`` lists them with
# the h2spec case they follow.


def block_of(wire: Wire, method: str = "GET", extra: list[tuple[str, str]] | None = None) -> bytes:
    return wire.block(wire.request_fields(method, extra=extra))


def ok_get(wire: Wire, stream_id: int = 1) -> None:
    """A GET answered 200 by the echo backend."""
    wire.send(wire.headers(stream_id, end_stream=True))
    fields, body = wire.response(stream_id)
    assert fields[":status"] == "200"
    assert b'"method":"GET"' in body


def open_post(wire: Wire, stream_id: int = 1, extra: list[tuple[str, str]] | None = None) -> None:
    """A POST whose body is still to come: the stream is open."""
    wire.send(wire.headers(stream_id, wire.request_fields("POST", extra=extra), end_stream=False))


# generic: what every server must just do


def generic_get(wire: Wire) -> None:
    ok_get(wire)


def generic_head(wire: Wire) -> None:
    wire.send(wire.headers(1, wire.request_fields("HEAD"), end_stream=True))
    fields, body = wire.response(1)
    assert fields[":status"] == "200"
    assert body == b""


def generic_post_in_data_frames(wire: Wire) -> None:
    open_post(wire, extra=[("content-length", "12")])
    wire.send(raw_frame(DATA, 0, 1, b"hello "), raw_frame(DATA, END_STREAM, 1, b"world!"))
    fields, body = wire.response(1)
    assert fields[":status"] == "200"
    assert b'"method":"POST"' in body


def generic_post_with_trailers(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(DATA, 0, 1, b"body"))
    wire.send(wire.headers(1, [("x-trailer", "t")], end_stream=True))
    assert wire.response(1)[0][":status"] == "200"


def generic_streams_in_parallel(wire: Wire) -> None:
    for stream_id in (1, 3, 5):
        wire.send(wire.headers(stream_id, end_stream=True))
    for stream_id in (1, 3, 5):
        assert wire.response(stream_id)[0][":status"] == "200"


def generic_padded_and_prioritised_headers(wire: Wire) -> None:
    block = block_of(wire)
    payload = bytes([4]) + struct.pack(">IB", 0, 15) + block + b"\0" * 4
    wire.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG, 1, payload))
    assert wire.response(1)[0][":status"] == "200"


def generic_padded_data(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(DATA, END_STREAM | PADDED, 1, bytes([8]) + b"data" + b"\0" * 8))
    assert wire.response(1)[0][":status"] == "200"


def generic_priority_on_open_stream(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 200)))
    wire.send(raw_frame(DATA, END_STREAM, 1, b"x"))
    assert wire.response(1)[0][":status"] == "200"


def generic_hpack_representations(wire: Wire) -> None:
    """Indexed, incremental, without indexing, never indexed, Huffman, a table size update."""
    fields = [
        (b":method", b"GET"),
        (b":scheme", wire.scheme.encode()),
        (b":path", b"/"),
        (b":authority", wire.authority.encode()),
    ]
    encoder = hpack.Encoder()
    block = b"\x3f\xe1\x1f"  # dynamic table size update to 4096, first in the block
    block += encoder.encode(fields, huffman=True)
    block += encoder.encode([hpack.NeverIndexedHeaderTuple(b"authorization", b"secret")])
    block += b"\x00\x06x-demo\x05plain"  # literal without indexing, new name
    wire.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
    fields_back, body = wire.response(1)
    assert fields_back[":status"] == "200"
    assert b'"X-Demo":["plain"]' in body


def generic_continuation(wire: Wire) -> None:
    block = block_of(wire, extra=[(f"x-{i}", "v" * 40) for i in range(20)])
    third = len(block) // 3
    wire.send(
        raw_frame(HEADERS, END_STREAM, 1, block[:third]),
        raw_frame(CONTINUATION, 0, 1, block[third : 2 * third]),
        raw_frame(CONTINUATION, END_HEADERS, 1, block[2 * third :]),
    )
    assert wire.response(1)[0][":status"] == "200"


def generic_rst_stream_then_more(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(RST_STREAM, 0, 1, struct.pack(">I", 0x8)))  # CANCEL
    ok_get(wire, 3)


def generic_goaway_from_client(wire: Wire) -> None:
    wire.send(raw_frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
    assert wire.closed()


# 3.4, 3.5: starting HTTP/2


def preface_settings(wire: Wire) -> None:
    """The server's SETTINGS follow the preface; MAX_CONCURRENT_STREAMS is advertised."""
    assert wire.server_settings.get(0x3, 0) >= 100  # RFC 9113 section 6.5.2 advises >= 100
    wire.ping()


def invalid_preface(connect: Callable[[], Wire]) -> None:
    """Not the preface: the connection closes, a GOAWAY(PROTOCOL_ERROR) being optional (RFC 9113
    section 3.4); on h2c after an HTTP/1.1 error, as an HTTP listener takes what is not the
    HTTP/2 preface for HTTP/1.1."""
    w = connect()
    w.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + raw_frame(SETTINGS, 0, 0))
    answer = w.raw_until_closed()
    if answer.startswith(b"HTTP/1.1 "):
        assert answer[9:10] in (b"4", b"5"), answer[:80]
        return
    goaways = [f for f in frames_of(answer) if isinstance(f, GoAwayFrame)]
    assert [f.error_code for f in goaways] in ([], [PROTOCOL_ERROR])


def settings_not_first(connect: Callable[[], Wire]) -> None:
    """The client preface ends with SETTINGS; a PING first is a PROTOCOL_ERROR."""
    w = connect()
    w.send(PREFACE + raw_frame(PING, 0, 0, b"\0" * 8))
    w.expect_connection_error(PROTOCOL_ERROR)


# 4.1, 4.2, 4.3: frame format, size, header compression


def unknown_frame_type(wire: Wire) -> None:
    wire.send(raw_frame(0x16, 0, 0, b"ignore me"))
    wire.ping()


def ping_with_undefined_flags(wire: Wire) -> None:
    wire.send(raw_frame(PING, 0x16, 0, b"12345678"))
    assert wire.until(PingFrame).opaque_data == b"12345678"


def reserved_bit_set(wire: Wire) -> None:
    frame = bytearray(raw_frame(PING, 0, 0, b"reserved"))
    frame[5] |= 0x80  # R bit of the stream identifier
    wire.send(bytes(frame))
    assert wire.until(PingFrame).opaque_data == b"reserved"


def data_of_max_frame_size(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(DATA, END_STREAM, 1, b"x" * MAX_FRAME))
    assert wire.response(1)[0][":status"] == "200"


def data_over_max_frame_size(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(DATA, END_STREAM, 1, b"x" * (MAX_FRAME + 1)))
    wire.expect_stream_error(1, FRAME_SIZE_ERROR)


def headers_over_max_frame_size(wire: Wire) -> None:
    block = wire.block(wire.request_fields(extra=[("x-big", "x" * MAX_FRAME)]), huffman=False)
    wire.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
    wire.expect_connection_error(FRAME_SIZE_ERROR)


def invalid_header_block(wire: Wire) -> None:
    wire.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x00\x05"))
    wire.expect_connection_error(COMPRESSION_ERROR)


def priority_inside_header_block(wire: Wire) -> None:
    wire.send(
        raw_frame(HEADERS, END_STREAM, 1, block_of(wire)),
        raw_frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 15)),
    )
    wire.expect_connection_error(PROTOCOL_ERROR)


def headers_of_other_stream_inside_header_block(wire: Wire) -> None:
    wire.send(
        raw_frame(HEADERS, END_STREAM, 1, block_of(wire)),
        raw_frame(HEADERS, END_STREAM | END_HEADERS, 3, block_of(wire)),
    )
    wire.expect_connection_error(PROTOCOL_ERROR)


# 5.1: stream states and identifiers


def data_on_idle_stream(wire: Wire) -> None:
    wire.send(raw_frame(DATA, END_STREAM, 1, b"x"))
    wire.expect_connection_error(PROTOCOL_ERROR)


def rst_stream_on_idle_stream(wire: Wire) -> None:
    wire.send(raw_frame(RST_STREAM, 0, 1, struct.pack(">I", 0x8)))
    wire.expect_connection_error(PROTOCOL_ERROR)


def window_update_on_idle_stream(wire: Wire) -> None:
    wire.send(raw_frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 100)))
    wire.expect_connection_error(PROTOCOL_ERROR)


def continuation_on_idle_stream(wire: Wire) -> None:
    wire.send(raw_frame(CONTINUATION, END_HEADERS, 1, block_of(wire)))
    wire.expect_connection_error(PROTOCOL_ERROR)


def data_on_half_closed_remote(wire: Wire) -> None:
    wire.send(wire.headers(1, end_stream=True), raw_frame(DATA, END_STREAM, 1, b"x"))
    wire.expect_stream_error(1, STREAM_CLOSED)


def headers_on_half_closed_remote(wire: Wire) -> None:
    wire.send(wire.headers(1, end_stream=True), wire.headers(1, end_stream=True))
    wire.expect_stream_error(1, STREAM_CLOSED)


def data_after_rst_stream(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(RST_STREAM, 0, 1, struct.pack(">I", 0x8)))
    wire.ping()  # the reset is processed: stream 1 is closed
    wire.send(raw_frame(DATA, END_STREAM, 1, b"x"))
    wire.expect_stream_error(1, STREAM_CLOSED)


def headers_after_rst_stream(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(RST_STREAM, 0, 1, struct.pack(">I", 0x8)))
    wire.ping()
    wire.send(wire.headers(1, end_stream=True))
    wire.expect_stream_error(1, STREAM_CLOSED)


def even_stream_identifier(wire: Wire) -> None:
    wire.send(wire.headers(2, end_stream=True))
    wire.expect_connection_error(PROTOCOL_ERROR)


def decreasing_stream_identifier(wire: Wire) -> None:
    ok_get(wire, 5)
    wire.send(wire.headers(3, end_stream=True))
    wire.expect_connection_error(PROTOCOL_ERROR)


def too_many_concurrent_streams(wire: Wire) -> None:
    """One stream past SETTINGS_MAX_CONCURRENT_STREAMS: REFUSED_STREAM or PROTOCOL_ERROR."""
    limit = wire.server_settings[0x3]
    post = wire.request_fields("POST")
    wire.send(*(wire.headers(2 * i + 1, post, end_stream=False) for i in range(limit + 1)))
    last = 2 * limit + 1
    while True:
        frame = wire.frame()
        if isinstance(frame, GoAwayFrame):
            assert frame.error_code == PROTOCOL_ERROR
            return
        if isinstance(frame, RstStreamFrame) and frame.stream_id == last:
            assert frame.error_code in (REFUSED_STREAM, PROTOCOL_ERROR)
            return


# 5.3, 5.4, 5.5: priority, error handling, extensions


def headers_depending_on_itself(wire: Wire) -> None:
    payload = struct.pack(">IB", 1, 15) + block_of(wire)
    wire.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1, payload))
    wire.expect_stream_error(1, PROTOCOL_ERROR)


def priority_depending_on_itself(wire: Wire) -> None:
    wire.send(raw_frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 15)))
    wire.expect_stream_error(1, PROTOCOL_ERROR)


def goaway_after_connection_error(wire: Wire) -> None:
    wire.send(raw_frame(PING, 0, 0, b"\0" * 6))
    frame = wire.until(GoAwayFrame)
    assert frame.error_code == FRAME_SIZE_ERROR
    assert wire.closed()


def unknown_extension_frame_inside_header_block(wire: Wire) -> None:
    wire.send(
        raw_frame(HEADERS, END_STREAM, 1, block_of(wire)),
        raw_frame(0x16, 0, 1, b"extension"),
    )
    wire.expect_connection_error(PROTOCOL_ERROR)


# 6.1 DATA, 6.2 HEADERS, 6.3 PRIORITY, 6.4 RST_STREAM


def data_on_stream_zero(wire: Wire) -> None:
    wire.send(raw_frame(DATA, END_STREAM, 0, b"x"))
    wire.expect_connection_error(PROTOCOL_ERROR)


def data_with_bad_padding(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(DATA, END_STREAM | PADDED, 1, bytes([6]) + b"abc"))
    wire.expect_connection_error(PROTOCOL_ERROR)


def headers_on_stream_zero(wire: Wire) -> None:
    wire.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 0, block_of(wire)))
    wire.expect_connection_error(PROTOCOL_ERROR)


def headers_with_bad_padding(wire: Wire) -> None:
    block = block_of(wire)
    payload = bytes([len(block) + 1]) + block
    wire.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, payload))
    wire.expect_connection_error(PROTOCOL_ERROR)


def priority_on_stream_zero(wire: Wire) -> None:
    wire.send(raw_frame(PRIORITY, 0, 0, struct.pack(">IB", 1, 15)))
    wire.expect_connection_error(PROTOCOL_ERROR)


def priority_of_bad_length(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(PRIORITY, 0, 1, struct.pack(">IBB", 0, 15, 0)))
    wire.expect_stream_error(1, FRAME_SIZE_ERROR)


def rst_stream_on_stream_zero(wire: Wire) -> None:
    wire.send(raw_frame(RST_STREAM, 0, 0, struct.pack(">I", 0x8)))
    wire.expect_connection_error(PROTOCOL_ERROR)


def rst_stream_of_bad_length(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(RST_STREAM, 0, 1, struct.pack(">IB", 0x8, 0)))
    wire.expect_connection_error(FRAME_SIZE_ERROR)


# 6.5 SETTINGS


def settings_ack_with_payload(wire: Wire) -> None:
    wire.send(raw_frame(SETTINGS, ACK, 0, setting(0x1, 4096)))
    wire.expect_connection_error(FRAME_SIZE_ERROR)


def settings_on_a_stream(wire: Wire) -> None:
    wire.send(raw_frame(SETTINGS, 0, 1, setting(0x1, 4096)))
    wire.expect_connection_error(PROTOCOL_ERROR)


def settings_of_bad_length(wire: Wire) -> None:
    wire.send(raw_frame(SETTINGS, 0, 0, setting(0x1, 4096)[:-1]))
    wire.expect_connection_error(FRAME_SIZE_ERROR)


def settings_enable_push_two(wire: Wire) -> None:
    wire.send(raw_frame(SETTINGS, 0, 0, setting(0x2, 2)))
    wire.expect_connection_error(PROTOCOL_ERROR)


def settings_window_too_large(wire: Wire) -> None:
    wire.send(raw_frame(SETTINGS, 0, 0, setting(0x4, 1 << 31)))
    wire.expect_connection_error(FLOW_CONTROL_ERROR)


def settings_max_frame_size_too_small(wire: Wire) -> None:
    wire.send(raw_frame(SETTINGS, 0, 0, setting(0x5, MAX_FRAME - 1)))
    wire.expect_connection_error(PROTOCOL_ERROR)


def settings_max_frame_size_too_large(wire: Wire) -> None:
    wire.send(raw_frame(SETTINGS, 0, 0, setting(0x5, 1 << 24)))
    wire.expect_connection_error(PROTOCOL_ERROR)


def settings_unknown_identifier(wire: Wire) -> None:
    wire.send(raw_frame(SETTINGS, 0, 0, setting(0xFF, 1)))
    wire.until(SettingsFrame, lambda f: "ACK" in f.flags)
    ok_get(wire)


def settings_repeated_identifier(wire: Wire) -> None:
    wire.send(raw_frame(SETTINGS, 0, 0, setting(0x4, 100) + setting(0x4, 65535)))
    wire.until(SettingsFrame, lambda f: "ACK" in f.flags)
    ok_get(wire)


def settings_max_frame_size_honoured(connect: Callable[[], Wire]) -> None:
    """A response body larger than the peer's SETTINGS_MAX_FRAME_SIZE comes in frames within it."""
    w = connect()
    w.handshake(setting(0x5, MAX_FRAME))
    block = w.block(w.request_fields(extra=[(f"x-pad-{i}", "p" * 6000) for i in range(4)]))
    half = len(block) // 2
    w.send(
        raw_frame(HEADERS, END_STREAM, 1, block[:half]),
        raw_frame(CONTINUATION, END_HEADERS, 1, block[half:]),
    )
    sizes = []
    while True:
        frame = w.frame()
        if isinstance(frame, DataFrame) and frame.stream_id == 1:
            sizes.append(len(frame.data))
            if "END_STREAM" in frame.flags:
                break
    assert sum(sizes) > MAX_FRAME
    assert max(sizes) <= MAX_FRAME


# 6.7 PING, 6.8 GOAWAY


def ping_is_answered(wire: Wire) -> None:
    wire.send(raw_frame(PING, 0, 0, b"h2spec!!"))
    frame = wire.until(PingFrame)
    assert "ACK" in frame.flags
    assert frame.opaque_data == b"h2spec!!"


def ping_ack_is_not_answered(wire: Wire) -> None:
    wire.send(raw_frame(PING, ACK, 0, b"unasked!"))
    wire.ping()  # the next PING's ACK is the first PING frame back


def ping_on_a_stream(wire: Wire) -> None:
    wire.send(raw_frame(PING, 0, 1, b"12345678"))
    wire.expect_connection_error(PROTOCOL_ERROR)


def ping_of_bad_length(wire: Wire) -> None:
    wire.send(raw_frame(PING, 0, 0, b"123456"))
    wire.expect_connection_error(FRAME_SIZE_ERROR)


def goaway_on_a_stream(wire: Wire) -> None:
    wire.send(raw_frame(GOAWAY, 0, 1, struct.pack(">II", 0, 0)))
    wire.expect_connection_error(PROTOCOL_ERROR)


# 6.9 WINDOW_UPDATE and flow control


def window_update_zero_on_connection(wire: Wire) -> None:
    wire.send(raw_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)))
    wire.expect_connection_error(PROTOCOL_ERROR)


def window_update_zero_on_stream(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0)))
    wire.expect_stream_error(1, PROTOCOL_ERROR)


def window_update_of_bad_length(wire: Wire) -> None:
    wire.send(raw_frame(WINDOW_UPDATE, 0, 0, struct.pack(">IB", 1, 0)))
    wire.expect_connection_error(FRAME_SIZE_ERROR)


def connection_window_overflow(wire: Wire) -> None:
    increment = struct.pack(">I", (1 << 31) - 1)
    wire.send(raw_frame(WINDOW_UPDATE, 0, 0, increment), raw_frame(WINDOW_UPDATE, 0, 0, increment))
    wire.expect_connection_error(FLOW_CONTROL_ERROR)


def stream_window_overflow(wire: Wire) -> None:
    open_post(wire)
    increment = struct.pack(">I", (1 << 31) - 1)
    wire.send(raw_frame(WINDOW_UPDATE, 0, 1, increment), raw_frame(WINDOW_UPDATE, 0, 1, increment))
    wire.expect_stream_error(1, FLOW_CONTROL_ERROR)


def initial_window_change_overflows_a_stream(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", (1 << 31) - 1 - 65535)))
    wire.ping()
    wire.send(raw_frame(SETTINGS, 0, 0, setting(0x4, 65536)))
    wire.expect_stream_error(1, FLOW_CONTROL_ERROR)


def flow_control_holds_back_data(connect: Callable[[], Wire]) -> None:
    """With a stream window of 1, one byte of body comes, then the rest after WINDOW_UPDATE."""
    w = connect()
    w.handshake(setting(0x4, 1))
    w.send(w.headers(1, end_stream=True))
    first = w.until(DataFrame, lambda f: f.stream_id == 1)
    assert len(first.data) == 1
    w.ping()  # nothing more was sent on stream 1 before the PING's ACK
    w.send(raw_frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1 << 20)))
    body = first.data
    while True:
        frame = w.frame()
        if isinstance(frame, DataFrame) and frame.stream_id == 1:
            body += frame.data
            if "END_STREAM" in frame.flags:
                break
    assert b'"method":"GET"' in body


# 6.10 CONTINUATION


def continuation_after_other_frame(wire: Wire) -> None:
    block = block_of(wire)
    wire.send(
        raw_frame(HEADERS, END_STREAM, 1, block[:5]),
        raw_frame(DATA, 0, 1, b"x"),
        raw_frame(CONTINUATION, END_HEADERS, 1, block[5:]),
    )
    wire.expect_connection_error(PROTOCOL_ERROR)


def continuation_on_stream_zero(wire: Wire) -> None:
    block = block_of(wire)
    wire.send(
        raw_frame(HEADERS, END_STREAM, 1, block[:5]),
        raw_frame(CONTINUATION, END_HEADERS, 0, block[5:]),
    )
    wire.expect_connection_error(PROTOCOL_ERROR)


def continuation_after_end_headers(wire: Wire) -> None:
    wire.send(
        raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, block_of(wire)),
        raw_frame(CONTINUATION, END_HEADERS, 1, block_of(wire)),
    )
    wire.expect_connection_error(PROTOCOL_ERROR)


def continuation_after_continuation_end_headers(wire: Wire) -> None:
    block = block_of(wire)
    wire.send(
        raw_frame(HEADERS, END_STREAM, 1, block[:5]),
        raw_frame(CONTINUATION, END_HEADERS, 1, block[5:]),
        raw_frame(CONTINUATION, END_HEADERS, 1, block_of(wire)),
    )
    wire.expect_connection_error(PROTOCOL_ERROR)


def continuation_after_data(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(DATA, 0, 1, b"x"), raw_frame(CONTINUATION, END_HEADERS, 1, b"\x82"))
    wire.expect_connection_error(PROTOCOL_ERROR)


def continuation_flood(wire: Wire) -> None:
    """Endless CONTINUATION frames of one header block end the connection (CVE-2024-27316)."""
    frames = [raw_frame(HEADERS, END_STREAM, 1, block_of(wire))]
    frames += [raw_frame(CONTINUATION, 0, 1, b"\x40\x01a\x01b") for _ in range(2000)]
    wire.flood(*frames)
    assert wire.closed()


# 8.1, 8.2: HTTP semantics


def trailers_without_end_stream(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(DATA, 0, 1, b"x"), wire.headers(1, [("x-trailer", "t")], end_stream=False))
    wire.expect_stream_error(1, PROTOCOL_ERROR)


def malformed(extra: list[tuple[str, str]], drop: str = "") -> Callable[[Wire], None]:
    """A request whose header fields RFC 9113 section 8.1.1 calls malformed: a stream error."""

    def case(wire: Wire) -> None:
        fields = [f for f in wire.request_fields() if f[0] != drop] + extra
        wire.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, wire.block(fields)))
        wire.expect_stream_error(1, PROTOCOL_ERROR)

    return case


def pseudo_after_regular(wire: Wire) -> None:
    fields = [*wire.request_fields()[:3], ("x-a", "b"), (":authority", wire.authority)]
    wire.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, wire.block(fields)))
    wire.expect_stream_error(1, PROTOCOL_ERROR)


def pseudo_in_trailers(wire: Wire) -> None:
    open_post(wire)
    wire.send(raw_frame(DATA, 0, 1, b"x"), wire.headers(1, [(":path", "/")], end_stream=True))
    wire.expect_stream_error(1, PROTOCOL_ERROR)


def content_length_mismatch(wire: Wire) -> None:
    open_post(wire, extra=[("content-length", "10")])
    wire.send(raw_frame(DATA, END_STREAM, 1, b"short"))
    wire.expect_stream_error(1, PROTOCOL_ERROR)


def content_length_exceeded_over_frames(wire: Wire) -> None:
    open_post(wire, extra=[("content-length", "4")])
    wire.send(raw_frame(DATA, 0, 1, b"abc"), raw_frame(DATA, END_STREAM, 1, b"def"))
    wire.expect_stream_error(1, PROTOCOL_ERROR)


def push_promise_from_client(wire: Wire) -> None:
    open_post(wire)
    payload = struct.pack(">I", 2) + block_of(wire)
    wire.send(raw_frame(PUSH_PROMISE, END_HEADERS, 1, payload))
    wire.expect_connection_error(PROTOCOL_ERROR)


def connect_without_protocol_is_not_served(wire: Wire) -> None:
    """A plain CONNECT (no ``:protocol``): edgegw is no forward proxy; it answers 501."""
    fields = [(":method", "CONNECT"), (":authority", "example.net:443")]
    wire.send(raw_frame(HEADERS, END_HEADERS, 1, wire.block(fields)))
    assert wire.response(1)[0][":status"] == "501"


# HPACK (RFC 7541)


def hpack_case(block: Callable[[Wire], bytes]) -> Callable[[Wire], None]:
    def case(wire: Wire) -> None:
        wire.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, block(wire)))
        wire.expect_connection_error(COMPRESSION_ERROR)

    return case


CASES: dict[str, Callable[[Wire], None]] = {
    "generic/1 GET": generic_get,
    "generic/2 HEAD": generic_head,
    "generic/3 POST in two DATA frames": generic_post_in_data_frames,
    "generic/4 POST with trailers": generic_post_with_trailers,
    "generic/5 three streams at once": generic_streams_in_parallel,
    "generic/6 HEADERS padded with priority": generic_padded_and_prioritised_headers,
    "generic/7 padded DATA": generic_padded_data,
    "generic/8 PRIORITY on an open stream": generic_priority_on_open_stream,
    "generic/9 HPACK representations": generic_hpack_representations,
    "generic/10 HEADERS + 2 CONTINUATION": generic_continuation,
    "generic/11 RST_STREAM, then a new stream": generic_rst_stream_then_more,
    "generic/12 client GOAWAY": generic_goaway_from_client,
    "http2/3.5/1 SETTINGS after the preface": preface_settings,
    "http2/4.1/1 unknown frame type": unknown_frame_type,
    "http2/4.1/2 PING with undefined flags": ping_with_undefined_flags,
    "http2/4.1/3 reserved bit set": reserved_bit_set,
    "http2/4.2/1 DATA of SETTINGS_MAX_FRAME_SIZE": data_of_max_frame_size,
    "http2/4.2/2 DATA over the max frame size": data_over_max_frame_size,
    "http2/4.2/3 HEADERS over the max frame size": headers_over_max_frame_size,
    "http2/4.3/1 invalid header block": invalid_header_block,
    "http2/4.3/2 PRIORITY inside a header block": priority_inside_header_block,
    "http2/4.3/3 HEADERS of another stream inside a block": (
        headers_of_other_stream_inside_header_block
    ),
    "http2/5.1/1 DATA on an idle stream": data_on_idle_stream,
    "http2/5.1/2 RST_STREAM on an idle stream": rst_stream_on_idle_stream,
    "http2/5.1/3 WINDOW_UPDATE on an idle stream": window_update_on_idle_stream,
    "http2/5.1/4 CONTINUATION on an idle stream": continuation_on_idle_stream,
    "http2/5.1/5 DATA on half-closed (remote)": data_on_half_closed_remote,
    "http2/5.1/6 HEADERS on half-closed (remote)": headers_on_half_closed_remote,
    "http2/5.1/8 DATA after RST_STREAM": data_after_rst_stream,
    "http2/5.1/9 HEADERS after RST_STREAM": headers_after_rst_stream,
    "http2/5.1.1/1 even stream identifier": even_stream_identifier,
    "http2/5.1.1/2 decreasing stream identifier": decreasing_stream_identifier,
    "http2/5.1.2/1 over MAX_CONCURRENT_STREAMS": too_many_concurrent_streams,
    "http2/5.3.1/1 HEADERS depending on itself": headers_depending_on_itself,
    "http2/5.3.1/2 PRIORITY depending on itself": priority_depending_on_itself,
    "http2/5.4.1/1 GOAWAY, then close": goaway_after_connection_error,
    "http2/5.5/2 extension frame inside a header block": (
        unknown_extension_frame_inside_header_block
    ),
    "http2/6.1/1 DATA on stream 0": data_on_stream_zero,
    "http2/6.1/3 DATA with bad padding": data_with_bad_padding,
    "http2/6.2/2 HEADERS on stream 0": headers_on_stream_zero,
    "http2/6.2/3 HEADERS with bad padding": headers_with_bad_padding,
    "http2/6.3/1 PRIORITY on stream 0": priority_on_stream_zero,
    "http2/6.3/2 PRIORITY of length 6": priority_of_bad_length,
    "http2/6.4/1 RST_STREAM on stream 0": rst_stream_on_stream_zero,
    "http2/6.4/3 RST_STREAM of length 5": rst_stream_of_bad_length,
    "http2/6.5/1 SETTINGS ACK with payload": settings_ack_with_payload,
    "http2/6.5/2 SETTINGS on a stream": settings_on_a_stream,
    "http2/6.5/3 SETTINGS of length 5": settings_of_bad_length,
    "http2/6.5.2/1 ENABLE_PUSH 2": settings_enable_push_two,
    "http2/6.5.2/2 INITIAL_WINDOW_SIZE 2^31": settings_window_too_large,
    "http2/6.5.2/3 MAX_FRAME_SIZE 16383": settings_max_frame_size_too_small,
    "http2/6.5.2/4 MAX_FRAME_SIZE 2^24": settings_max_frame_size_too_large,
    "http2/6.5.2/5 unknown setting": settings_unknown_identifier,
    "http2/6.5.3/1 repeated setting": settings_repeated_identifier,
    "http2/6.7/1 PING": ping_is_answered,
    "http2/6.7/2 PING ACK not answered": ping_ack_is_not_answered,
    "http2/6.7/3 PING on a stream": ping_on_a_stream,
    "http2/6.7/4 PING of length 6": ping_of_bad_length,
    "http2/6.8/1 GOAWAY on a stream": goaway_on_a_stream,
    "http2/6.9/1 WINDOW_UPDATE 0 on the connection": window_update_zero_on_connection,
    "http2/6.9/2 WINDOW_UPDATE 0 on a stream": window_update_zero_on_stream,
    "http2/6.9/3 WINDOW_UPDATE of length 5": window_update_of_bad_length,
    "http2/6.9.1/2 connection window over 2^31-1": connection_window_overflow,
    "http2/6.9.1/3 stream window over 2^31-1": stream_window_overflow,
    "http2/6.9.2/3 INITIAL_WINDOW_SIZE overflows a stream": (
        initial_window_change_overflows_a_stream
    ),
    "http2/6.10/2 CONTINUATION after another frame": continuation_after_other_frame,
    "http2/6.10/3 CONTINUATION on stream 0": continuation_on_stream_zero,
    "http2/6.10/4 CONTINUATION after END_HEADERS": continuation_after_end_headers,
    "http2/6.10/5 CONTINUATION after a CONTINUATION with END_HEADERS": (
        continuation_after_continuation_end_headers
    ),
    "http2/6.10/6 CONTINUATION after DATA": continuation_after_data,
    "http2/6.10/7 CONTINUATION flood": continuation_flood,
    "http2/8.1/1 trailers without END_STREAM": trailers_without_end_stream,
    "http2/8.1.2/1 upper-case field name": malformed([("X-Upper", "a")]),
    "http2/8.1.2.1/1 unknown pseudo-header": malformed([(":foo", "a")]),
    "http2/8.1.2.1/2 response pseudo-header in a request": malformed([(":status", "200")]),
    "http2/8.1.2.1/3 pseudo-header in trailers": pseudo_in_trailers,
    "http2/8.1.2.1/4 pseudo-header after a regular one": pseudo_after_regular,
    "http2/8.1.2.2/1 connection-specific field": malformed([("connection", "keep-alive")]),
    "http2/8.1.2.2/2 TE other than trailers": malformed([("te", "gzip")]),
    "http2/8.1.2.3/1 empty :path": malformed([(":path", "")], drop=":path"),
    "http2/8.1.2.3/2 no :method": malformed([], drop=":method"),
    "http2/8.1.2.3/3 no :scheme": malformed([], drop=":scheme"),
    "http2/8.1.2.3/4 no :path": malformed([], drop=":path"),
    "http2/8.1.2.3/5 two :method": malformed([(":method", "POST")]),
    "http2/8.1.2.3/6 two :scheme": malformed([(":scheme", "http")]),
    "http2/8.1.2.3/7 two :path": malformed([(":path", "/")]),
    "http2/8.1.2.6/1 content-length above the body": content_length_mismatch,
    "http2/8.1.2.6/2 content-length below the body": content_length_exceeded_over_frames,
    "http2/8.2/1 PUSH_PROMISE from a client": push_promise_from_client,
    "http2/8.3/1 CONNECT without :protocol": connect_without_protocol_is_not_served,
    "hpack/2.3.3/1 index past the tables": hpack_case(lambda w: block_of(w) + b"\xc6"),
    "hpack/2.3.3/2 literal with a name index past the tables": hpack_case(
        lambda w: block_of(w) + b"\x7f\x07\x01a"
    ),
    "hpack/4.2/1 table size update at the end": hpack_case(lambda w: block_of(w) + b"\x3f\xe1\x1f"),
    "hpack/5.2/1 Huffman string with EOS": hpack_case(
        lambda w: block_of(w) + b"\x00\x03x-a\x84\xff\xff\xff\xff"
    ),
    "hpack/5.2/2 Huffman padding over 7 bits": hpack_case(
        lambda w: block_of(w) + b"\x00\x03x-a\x82\x1f\xff"
    ),
    "hpack/5.2/3 Huffman padding not EOS": hpack_case(
        lambda w: block_of(w) + b"\x00\x03x-a\x81\x18"
    ),
    "hpack/6.1/1 index 0": hpack_case(lambda w: block_of(w) + b"\x80"),
    "hpack/6.3/1 table size update over the limit": hpack_case(
        lambda w: b"\x3f\xe2\x1f" + block_of(w)
    ),
}

# Cases that need the connection before the handshake, or settings of their own.
RAW_CASES: dict[str, Callable[[Callable[[], Wire]], None]] = {
    "http2/3.5/2 invalid connection preface": invalid_preface,
    "http2/3.5/3 PING before SETTINGS": settings_not_first,
    "http2/6.5.2/6 MAX_FRAME_SIZE honoured": settings_max_frame_size_honoured,
    "http2/6.9.2/2 flow control holds DATA back": flow_control_holds_back_data,
}


# Where edgegw departs from the RFC, with the reason. Strict xfails: a fix makes them fail.
DEPARTURES: dict[str, str] = {}


def _cases(names: Iterable[str]) -> list[object]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=DEPARTURES[name]))
        if name in DEPARTURES
        else name
        for name in sorted(names)
    ]


@pytest.mark.parametrize("case", _cases(CASES))
def test_h2spec_case(case: str, wire: Wire) -> None:
    CASES[case](wire)


@pytest.mark.parametrize("case", _cases(RAW_CASES))
def test_h2spec_case_from_connect(case: str, connect: Callable[[], Wire]) -> None:
    RAW_CASES[case](connect)


def test_the_table_names_each_case_once() -> None:
    ids = [name.split()[0] for name in [*CASES, *RAW_CASES]]
    assert len(ids) == len(set(ids))
