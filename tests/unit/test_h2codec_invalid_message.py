"""ClientTrafficPolicy ``http2.onInvalidMessage`` in the codec: a malformed message resets its
stream (TerminateStream, edgegw's default) or ends the connection (TerminateConnection: RST_STREAM
then GOAWAY, both PROTOCOL_ERROR, as Envoy's oghttp2 sends them); other stream errors never do."""

from __future__ import annotations

import pytest
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame

from edgegw.proto.h2codec import CodecConfig, ErrorCode, H2Codec, ProtocolError
from edgegw.proto.h2codec import events as ev
from tests.unit import h2frames as f

MALFORMED = {
    "upper-case name": [*f.GET, (b"X-Upper", b"1")],
    "connection-specific field": [*f.GET, (b"connection", b"close")],
    "missing :path": f.GET[:3],
    "pseudo-header after a field": [*f.GET[:3], (b"accept", b"*/*"), f.GET[3]],
    "control character in a value": [*f.GET, (b"x-a", b"a\x01b")],
}


def frames_of(data: bytes) -> list[Frame]:
    """The frames the server queued, in order."""
    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


def server(*, terminate: bool) -> tuple[H2Codec, f.Client]:
    srv = H2Codec(CodecConfig(client_side=False, malformed_ends_connection=terminate))
    srv.initiate_connection()
    srv.receive_data(f.PREFACE + f.settings())
    srv.data_to_send()
    return srv, f.Client()


@pytest.mark.parametrize("head", MALFORMED.values(), ids=MALFORMED.keys())
def test_terminate_stream_resets_only_the_malformed_stream(head: f.HeaderList) -> None:
    srv, client = server(terminate=False)
    got = srv.receive_data(client.headers(1, f.GET, end=True) + client.headers(3, head, end=True))
    assert got[:2] == [ev.RequestReceived(1, f.GET, True), ev.StreamEnded(1)]
    (rst,) = frames_of(srv.data_to_send())
    assert isinstance(rst, RstStreamFrame)
    assert (rst.stream_id, rst.error_code) == (3, ErrorCode.PROTOCOL_ERROR)
    assert srv.receive_data(client.headers(5, f.GET, end=True))[0] == ev.RequestReceived(
        5, f.GET, True
    )


@pytest.mark.parametrize("head", MALFORMED.values(), ids=MALFORMED.keys())
def test_terminate_connection_sends_rst_then_goaway(head: f.HeaderList) -> None:
    srv, client = server(terminate=True)
    assert srv.receive_data(client.headers(1, f.post(), end=False))  # in flight
    with pytest.raises(ProtocolError):
        srv.receive_data(client.headers(3, head, end=True))
    rst, goaway = frames_of(srv.data_to_send())
    assert isinstance(rst, RstStreamFrame)
    assert (rst.stream_id, rst.error_code) == (3, ErrorCode.PROTOCOL_ERROR)
    assert isinstance(goaway, GoAwayFrame)
    assert (goaway.last_stream_id, goaway.error_code) == (3, ErrorCode.PROTOCOL_ERROR)
    assert srv.receive_data(client.headers(5, f.GET, end=True)) == []  # input ignored from now


def test_a_body_that_breaks_content_length_is_malformed_too() -> None:
    srv, client = server(terminate=True)
    srv.receive_data(client.headers(1, f.post(2)))
    with pytest.raises(ProtocolError):
        srv.receive_data(f.data(1, b"abc", end=True))
    kinds = [type(frame) for frame in frames_of(srv.data_to_send())]
    assert kinds[-2:] == [RstStreamFrame, GoAwayFrame]


def test_trailers_without_end_stream_are_malformed_too() -> None:
    srv, client = server(terminate=True)
    srv.receive_data(client.headers(1, f.post()))
    with pytest.raises(ProtocolError):
        srv.receive_data(client.headers(1, [(b"x-t", b"1")], end=False))


def test_other_stream_errors_still_reset_only_their_stream() -> None:
    srv, client = server(terminate=True)
    srv.receive_data(client.headers(1, f.post()))
    got = srv.receive_data(f.window_update(1, 0))  # a stream error, not a malformed message
    assert got == [ev.StreamReset(1, ErrorCode.PROTOCOL_ERROR, remote_reset=False)]
    assert srv.receive_data(client.headers(3, f.GET, end=True))[0] == ev.RequestReceived(
        3, f.GET, True
    )
