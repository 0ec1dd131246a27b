"""``proto/grpchealth``: the two messages against protobuf's own encoding, and the verdicts of
one ``HealthCall`` against the ``h2`` library playing the backend."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from grpc_health.v1 import health_pb2

from edgegw.proto.grpchealth import HealthCall, MessageError, request_message, response_status


def _frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


@pytest.mark.parametrize("service", ["", "test.Who", "x" * 300])
def test_request_is_what_protobuf_reads(service: str) -> None:
    frame = request_message(service)
    assert frame[:1] == b"\x00"
    assert int.from_bytes(frame[1:5], "big") == len(frame) - 5
    assert health_pb2.HealthCheckRequest.FromString(frame[5:]).service == service


@pytest.mark.parametrize("status", [0, 1, 2, 3])
def test_response_status_as_protobuf_writes_it(status: int) -> None:
    message = health_pb2.HealthCheckResponse(status=status).SerializeToString()
    assert response_status(_frame(message)) == status


def test_response_skips_unknown_fields() -> None:
    message = b"\x12\x03abc" + b"\x08\x01" + b"\x1d\x00\x00\x00\x00"  # field 2 str, 1, 3 fixed32
    assert response_status(_frame(message)) == 1


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01\x00\x00\x00\x02\x08\x01",  # compressed
        b"\x00\x00\x00\x00\x05\x08\x01",  # length mismatch
        _frame(b"\x08"),  # truncated varint
        _frame(b"\x12\x09abc"),  # string past the end
        _frame(b"\x0b"),  # wire type 3
    ],
)
def test_malformed_responses_are_refused(frame: bytes) -> None:
    with pytest.raises(MessageError):
        response_status(frame)


def _serve(
    call: HealthCall, answer: list[tuple[str, str]], body: bytes, trailers: list[tuple[str, str]]
) -> str | None:
    """Run ``call`` against an ``h2`` server that answers so; the call's verdict."""
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    events = server.receive_data(call.data_to_send())
    request = next(e for e in events if isinstance(e, h2.events.RequestReceived))
    head = dict(request.headers)
    assert head[b":path"] == b"/grpc.health.v1.Health/Check"
    assert head[b"content-type"] == b"application/grpc"
    assert head[b"te"] == b"trailers"
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert health_pb2.HealthCheckRequest.FromString(data[5:]).service == "test.Who"
    sid = request.stream_id
    server.send_headers(sid, answer, end_stream=not body and not trailers)
    if body:
        server.send_data(sid, body, end_stream=not trailers)
    if trailers:
        server.send_headers(sid, trailers, end_stream=True)
    return call.receive_data(server.data_to_send())


OK = [(":status", "200"), ("content-type", "application/grpc")]


def _answer(status: int) -> bytes:
    return _frame(health_pb2.HealthCheckResponse(status=status).SerializeToString())


@pytest.mark.parametrize(
    ("answer", "body", "trailers", "verdict"),
    [
        (OK, _answer(1), [("grpc-status", "0")], "healthy"),
        (OK, _answer(2), [("grpc-status", "0")], "unhealthy"),  # NOT_SERVING
        (OK, _answer(1), [("grpc-status", "5")], "unhealthy"),
        (OK, b"", [("grpc-status", "0")], "unhealthy"),  # no message
        ([*OK, ("grpc-status", "12")], b"", [], "unhealthy"),  # trailers-only UNIMPLEMENTED
        ([(":status", "503"), ("content-type", "application/grpc")], b"", [], "unhealthy"),
        ([(":status", "200"), ("content-type", "text/html")], _answer(1), [], "unhealthy"),
    ],
)
def test_verdicts(
    answer: list[tuple[str, str]], body: bytes, trailers: list[tuple[str, str]], verdict: str
) -> None:
    call = HealthCall("10.0.0.1:50051", tls=False, service="test.Who")
    assert _serve(call, answer, body, trailers) == verdict


def test_reset_and_close_are_network_failures() -> None:
    call = HealthCall("h:1", tls=False, service="test.Who")
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    events = server.receive_data(call.data_to_send())
    request = next(e for e in events if isinstance(e, h2.events.RequestReceived))
    server.reset_stream(request.stream_id)
    assert call.receive_data(server.data_to_send()) == "network"
    assert HealthCall("h:1", tls=False, service="").receive_data(b"") == "network"
