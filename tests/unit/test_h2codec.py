"""The lean HTTP/2 codec on its own: both ends talking, flow control, abuse limits, HPACK."""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder
from hpack.exceptions import OversizedHeaderListError
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegw.proto.h2codec import (
    CodecConfig,
    ErrorCode,
    FlowControlError,
    H2Codec,
    ProtocolError,
    StreamClosedError,
    hpackfast,
)
from edgegw.proto.h2codec import events as ev
from edgegw.proto.h2codec import framing as fr
from tests.unit import h2frames as f

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]


def pair(**server: object) -> tuple[H2Codec, H2Codec]:
    """A client and a server codec past their prefaces."""
    client = H2Codec(CodecConfig(client_side=True))
    srv = H2Codec(CodecConfig(client_side=False, **server))  # type: ignore[arg-type]
    client.initiate_connection()
    srv.initiate_connection()
    srv.receive_data(client.data_to_send())
    client.receive_data(srv.data_to_send())
    srv.receive_data(client.data_to_send())
    return client, srv


def test_request_response_with_body_and_trailers() -> None:
    client, srv = pair()
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, [*REQUEST, (b"content-length", b"2")])
    client.send_data(sid, b"hi", end_stream=True)
    got = srv.receive_data(client.data_to_send())
    assert got == [
        ev.RequestReceived(sid, [*REQUEST, (b"content-length", b"2")], False),
        ev.DataReceived(sid, b"hi", 2),
        ev.StreamEnded(sid),
    ]
    srv.send_headers(sid, [(b":status", b"103"), (b"link", b"</a>")])
    srv.send_headers(sid, [(b":status", b"200")])
    srv.send_data(sid, b"ok")
    srv.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
    assert client.receive_data(srv.data_to_send()) == [
        ev.InformationalResponseReceived(sid, [(b":status", b"103"), (b"link", b"</a>")]),
        ev.ResponseReceived(sid, [(b":status", b"200")], False),
        ev.DataReceived(sid, b"ok", 2),
        ev.TrailersReceived(sid, [(b"grpc-status", b"0")]),
        ev.StreamEnded(sid),
    ]
    assert not client.streams
    assert not srv.streams


def _opened(end: bool = True) -> tuple[H2Codec, H2Codec, int]:
    client, srv = pair()
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, REQUEST, end_stream=end)
    srv.receive_data(client.data_to_send())
    srv.data_to_send()
    return client, srv, sid


@pytest.mark.parametrize("extra", [0, 40_000])  # a head in one HEADERS frame, or CONTINUATIONs
def test_a_whole_response_is_the_same_frames_as_head_then_body(extra: int) -> None:
    head = [(b":status", b"200"), (b"content-type", b"text/plain")]
    if extra:
        head.append((b"x-large", b"v" * extra))
    client, srv, sid = _opened()
    assert srv.send_response(sid, head, b"hello")
    whole = srv.data_to_send()
    _, by_parts, _ = _opened()
    by_parts.send_headers(sid, head)
    by_parts.send_data(sid, b"hello", end_stream=True)
    assert whole == by_parts.data_to_send()
    assert client.receive_data(whole) == [
        ev.ResponseReceived(sid, head, False),
        ev.DataReceived(sid, b"hello", 5),
        ev.StreamEnded(sid),
    ]
    assert not srv.streams
    with pytest.raises(StreamClosedError):
        srv.send_response(sid, head, b"again")


def test_a_whole_grpc_answer_is_the_same_frames_as_head_body_then_trailers() -> None:
    head = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    trailers = [(b"grpc-status", b"0"), (b"grpc-message", b"")]
    client, srv, sid = _opened()
    assert srv.send_response(sid, head, b"\x00\x00\x00\x00\x01x", trailers)
    whole = srv.data_to_send()
    _, by_parts, _ = _opened()
    by_parts.send_headers(sid, head)
    by_parts.send_data(sid, b"\x00\x00\x00\x00\x01x")
    by_parts.send_headers(sid, trailers, end_stream=True)
    assert whole == by_parts.data_to_send()
    assert client.receive_data(whole) == [
        ev.ResponseReceived(sid, head, False),
        ev.DataReceived(sid, b"\x00\x00\x00\x00\x01x", 6),
        ev.TrailersReceived(sid, trailers),
        ev.StreamEnded(sid),
    ]
    assert not srv.streams


def test_a_whole_response_waits_for_the_window_and_an_empty_body() -> None:
    client, srv = pair()
    srv.receive_data(f.settings({0x4: 4}))  # the client's INITIAL_WINDOW_SIZE: 4
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, REQUEST, end_stream=True)
    srv.receive_data(client.data_to_send())
    srv.data_to_send()
    head = [(b":status", b"200")]
    assert not srv.send_response(sid, head, b"hello")  # beyond the stream's window
    assert not srv.send_response(sid, head, b"")
    assert srv.data_to_send() == b""  # nothing queued, the stream as it was
    assert srv.local_flow_control_window(sid) == 4
    assert srv.send_response(sid, head, b"hell")
    assert client.receive_data(srv.data_to_send())[-2:] == [
        ev.DataReceived(sid, b"hell", 4),
        ev.StreamEnded(sid),
    ]


def test_a_whole_response_keeps_the_stream_open_while_the_request_goes_on() -> None:
    client, srv, sid = _opened(end=False)
    assert srv.send_response(sid, [(b":status", b"200")], b"early")
    assert sid in srv.streams  # half closed (local): the request body may still come
    client.receive_data(srv.data_to_send())
    client.send_data(sid, b"late", end_stream=True)
    assert srv.receive_data(client.data_to_send()) == [
        ev.DataReceived(sid, b"late", 4),
        ev.StreamEnded(sid),
    ]
    assert not srv.streams


def test_send_side_flow_control_follows_the_peer() -> None:
    client, _ = pair()
    client.receive_data(f.settings({0x4: 10}))  # the server's INITIAL_WINDOW_SIZE: 10
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, REQUEST)
    assert client.local_flow_control_window(sid) == 10
    with pytest.raises(FlowControlError):
        client.send_data(sid, b"x" * 11)
    client.send_data(sid, b"x" * 10)
    assert client.local_flow_control_window(sid) == 0
    client.receive_data(f.window_update(sid, 5))
    assert client.local_flow_control_window(sid) == 5
    client.receive_data(f.settings({0x4: 0}))  # a window may go negative (section 6.9.2)
    assert client.local_flow_control_window(sid) == 0
    client.receive_data(f.window_update(sid, 6))
    assert client.local_flow_control_window(sid) == 1


def test_received_bytes_come_back_only_when_acknowledged() -> None:
    client, srv = pair(initial_window_size=100)
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, REQUEST)
    client.send_data(sid, b"x" * 60)
    srv.receive_data(client.data_to_send())
    srv.data_to_send()
    srv.acknowledge_received_data(30, sid)
    assert srv.data_to_send() == b""  # under half the window: nothing yet
    srv.acknowledge_received_data(30, sid)
    updates = client.receive_data(srv.data_to_send())
    assert ev.WindowUpdated(sid, 60) in updates


def test_sending_on_a_finished_stream_is_our_error() -> None:
    client, _ = pair()
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, REQUEST, end_stream=True)
    with pytest.raises(StreamClosedError):
        client.send_data(sid, b"late")


def test_a_ping_flood_from_a_peer_that_never_reads_ends_in_enhance_your_calm() -> None:
    _, srv = pair(max_pending_control=1000)
    with pytest.raises(ProtocolError) as caught:
        srv.receive_data(f.ping() * 5000)
    assert caught.value.error_code == ErrorCode.ENHANCE_YOUR_CALM
    sent = srv.data_to_send()
    assert len(sent) < 1001 * 17 + 100  # at most the allowed answers and the GOAWAY
    assert sent.endswith(f.goaway(0, ErrorCode.ENHANCE_YOUR_CALM))


def test_control_answers_taken_in_time_are_no_flood() -> None:
    _, srv = pair(max_pending_control=10)
    for _ in range(100):
        srv.receive_data(f.ping() * 5 + f.settings())
        srv.data_to_send()


def header_blocks(data: bytes) -> list[bytes]:
    """The HEADERS payloads in ``data`` (no padding, priority or CONTINUATION in our output)."""
    blocks, at = [], 0
    while at < len(data):
        length, kind, _flags, _sid = fr.parse_header(data, at)
        if kind == fr.HEADERS:
            blocks.append(data[at + 9 : at + 9 + length])
        at += 9 + length
    return blocks


def test_a_huge_header_table_size_makes_us_keep_no_table() -> None:
    client, srv = pair()
    srv.receive_data(f.settings({0x1: 2**32 - 1}))
    peer = Decoder()  # decodes what the server sends, as the client would
    peer.max_allowed_table_size = 2**32 - 1
    for i in range(200):
        sid = 2 * i + 1
        client.send_headers(sid, REQUEST, end_stream=True)
        srv.receive_data(client.data_to_send())
        srv.send_headers(sid, [(b":status", b"200"), (b"x-echo", b"%d" % i * 500)])
        srv.reset_stream(sid)
        out = srv.data_to_send()
        client.receive_data(out)
        for block in header_blocks(out):
            peer.decode(block, raw=True)
    assert len(peer.header_table.dynamic_entries) == 0
    assert peer.header_table_size == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b":status", b"content-type", b"x-a", b"set-cookie", b"cookie"]),
            st.binary(max_size=300),
        ),
        max_size=12,
    )
)
def test_encoded_blocks_decode_the_same_with_hpack(headers: list[tuple[bytes, bytes]]) -> None:
    decoder = Decoder()
    block = hpackfast.TABLE_OFF + hpackfast.encode(headers)
    assert [(bytes(n), bytes(v)) for n, v in decoder.decode(block, raw=True)] == headers


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"a", b"b", b":path"]), st.binary(max_size=20))))
def test_the_indexed_fast_path_agrees_with_hpack(headers: list[tuple[bytes, bytes]]) -> None:
    encoder, library, ours = Encoder(), Decoder(), Decoder()
    for _ in range(3):  # the second and third blocks are all indexed references
        block = encoder.encode(headers)
        expected = [(bytes(n), bytes(v)) for n, v in library.decode(block, raw=True)]
        assert hpackfast.decode(ours, block) == expected


def test_the_fast_path_keeps_the_header_list_limit() -> None:
    encoder = Encoder()
    headers = [(b"x-%d" % i, b"v" * 100) for i in range(30)]
    first = encoder.encode(headers)
    repeated = encoder.encode(headers)  # all indexed now
    decoder = Decoder(max_header_list_size=1 << 20)
    decoder.decode(first, raw=True)
    decoder.max_header_list_size = 1000
    with pytest.raises(OversizedHeaderListError):
        hpackfast.decode(decoder, repeated)


def _request_frame(stream_id: int, block: bytes) -> bytes:
    return fr.header_frames(stream_id, block, 1 << 14, end=True)


def test_a_repeated_indexed_request_block_is_read_against_the_table_as_it_is_now() -> None:
    _, srv = pair()
    encoder, reference = Encoder(), Decoder()
    head = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.example")]
    head.append((b":path", b"/x"))
    first = bytes(encoder.encode(head))  # literals: both fields enter the dynamic table
    repeated = bytes(encoder.encode(head))  # only indexed fields now: remembered once valid
    assert hpackfast.all_indexed(repeated)
    for sid, block in ((1, first), (3, repeated), (5, repeated)):
        assert [(bytes(n), bytes(v)) for n, v in reference.decode(block, raw=True)] == head
        assert srv.receive_data(_request_frame(sid, block)) == [
            ev.RequestReceived(sid, head, True),
            ev.StreamEnded(sid),
        ]
    other = bytes(encoder.encode([*head[:3], (b":path", b"/y")]))  # every index moves by one
    reference.decode(other, raw=True)
    srv.receive_data(_request_frame(7, other))
    # The same bytes as before now say ":path" twice and no ":authority" (the reference
    # decoder agrees): malformed, where the remembered block would have been a valid request.
    now = [(bytes(n), bytes(v)) for n, v in reference.decode(repeated, raw=True)]
    assert [n for n, _ in now].count(b":path") == 2
    srv.data_to_send()
    assert srv.receive_data(_request_frame(9, repeated)) == []
    assert srv.data_to_send() == fr.rst_stream_frame(9, ErrorCode.PROTOCOL_ERROR)


def test_a_repeated_malformed_indexed_block_is_refused_every_time() -> None:
    _, srv = pair()
    encoder = Encoder()
    head = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/x"), (b"te", b"gzip")]
    blocks = [bytes(encoder.encode(head)) for _ in range(3)]
    assert hpackfast.all_indexed(blocks[2])
    srv.data_to_send()
    for sid, block in zip((1, 3, 5), blocks, strict=True):
        assert srv.receive_data(_request_frame(sid, block)) == []
        assert srv.data_to_send() == fr.rst_stream_frame(sid, ErrorCode.PROTOCOL_ERROR)


def test_a_repeated_indexed_response_head_is_read_against_the_table_as_it_is_now() -> None:
    client, _ = pair()
    encoder, reference = Encoder(), Decoder()
    ok = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    blocks = [bytes(encoder.encode(ok)) for _ in range(3)]  # the 2nd and 3rd: all indexed
    for block in blocks:
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, REQUEST, end_stream=True)
        assert [(bytes(n), bytes(v)) for n, v in reference.decode(block, raw=True)] == ok
        got = client.receive_data(fr.header_frames(sid, block, 1 << 14, end=True))
        assert got == [ev.ResponseReceived(sid, ok, True), ev.StreamEnded(sid)]
    plain = bytes(encoder.encode([(b":status", b"200"), (b"content-type", b"text/plain")]))
    reference.decode(plain, raw=True)
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, REQUEST, end_stream=True)
    client.receive_data(fr.header_frames(sid, plain, 1 << 14, end=True))
    # One entry more in the table: the remembered bytes now name the new entry.
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, REQUEST, end_stream=True)
    now = [(bytes(n), bytes(v)) for n, v in reference.decode(blocks[2], raw=True)]
    assert now != ok
    got = client.receive_data(fr.header_frames(sid, blocks[2], 1 << 14, end=True))
    assert got == [ev.ResponseReceived(sid, now, True), ev.StreamEnded(sid)]


def test_closed_streams_are_remembered_within_the_bound() -> None:
    client, srv = pair(max_closed_streams=16)
    for _ in range(100):
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, REQUEST, end_stream=True)
        srv.receive_data(client.data_to_send())
        srv.send_headers(sid, [(b":status", b"204")], end_stream=True)
        client.receive_data(srv.data_to_send())
    assert len(srv._closed) <= 16  # bounded memory, however long the connection lives
    with pytest.raises(ProtocolError) as caught:  # the last stream ended: a late frame is
        srv.receive_data(fr.data_frame(sid, b"late", end=False))  # the peer's fault
    assert caught.value.error_code == ErrorCode.STREAM_CLOSED


def _known_block_server(**server: object) -> tuple[H2Codec, bytes, bytes]:
    """A server that has seen (and remembered) a valid all-indexed request block."""
    _, srv = pair(**server)
    encoder = Encoder()
    head = [*REQUEST, (b"content-length", b"3")]
    srv.receive_data(_request_frame(1, bytes(encoder.encode(head))))  # literals, indexed now
    repeated = bytes(encoder.encode(head))
    assert hpackfast.all_indexed(repeated)
    srv.receive_data(fr.header_frames(3, repeated, 1 << 14, end=False))  # remembered
    srv.data_to_send()
    return srv, repeated, fr.header_frames(5, repeated, 1 << 14, end=False)


def test_a_known_request_block_on_a_skipped_stream_id_ends_the_connection() -> None:
    srv, repeated, _ = _known_block_server()
    srv.receive_data(fr.header_frames(9, repeated, 1 << 14, end=False))
    with pytest.raises(ProtocolError):  # 7 closed when 9 opened (RFC 9113 section 5.1.1)
        srv.receive_data(fr.header_frames(7, repeated, 1 << 14, end=False))


def test_a_known_request_block_beyond_the_stream_limit_is_refused() -> None:
    srv, repeated, _ = _known_block_server(max_concurrent_streams=1)  # 3 is open
    got = srv.receive_data(fr.header_frames(5, repeated, 1 << 14, end=False))
    assert got == []
    assert b"\x00\x00\x00\x07" in srv.data_to_send()  # RST_STREAM REFUSED_STREAM (7)
    assert 5 not in srv.streams


def test_a_known_request_block_that_announces_a_body_and_ends_is_malformed() -> None:
    srv, repeated, _ = _known_block_server()
    got = srv.receive_data(_request_frame(5, repeated))  # content-length 3, END_STREAM
    assert got[-1] == ev.StreamReset(5, ErrorCode.PROTOCOL_ERROR, remote_reset=False)
    assert 5 not in srv.streams


def test_a_known_request_block_inside_a_header_block_ends_the_connection() -> None:
    srv, _, frame = _known_block_server()
    srv.receive_data(fr.header(3, fr.HEADERS, 0, 7) + b"\x82\x86\x84")  # no END_HEADERS
    with pytest.raises(ProtocolError):
        srv.receive_data(frame)


def test_a_known_request_block_opens_its_stream_with_its_body_to_come() -> None:
    srv, _, frame = _known_block_server()
    got = srv.receive_data(frame + f.data(5, b"abc", end=True))
    assert got == [
        ev.RequestReceived(5, [*REQUEST, (b"content-length", b"3")], False),
        ev.DataReceived(5, b"abc", 3),
        ev.StreamEnded(5),
    ]


def test_remembered_header_blocks_stay_few_and_small() -> None:
    """Whole encoded blocks are remembered: a peer provoking distinct or huge responses
    must not grow that memory without bound."""
    for i in range(1000):
        assert hpackfast.encode([(b"x-n", b"%d" % i)]) == hpackfast.encode_field(b"x-n", b"%d" % i)
    assert len(hpackfast._BLOCKS) <= 256
    big = [(b"x-big", b"v" * 2000)]
    assert Decoder().decode(hpackfast.encode(big), raw=True) == big
    assert tuple(big) not in hpackfast._BLOCKS
