"""The HTTP/1.1 parser's limits, framing and serialisation, as a server and client see them.

Every test runs twice: on the parser as installed (compiled by mypyc where the build had a C
compiler) and on its Python source (``parser_variant``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgegw.proto.events import (
    ConnectionClosed,
    DataReceived,
    Event,
    MessageEnded,
    RequestReceived,
    ResponseReceived,
)
from edgegw.proto.http1 import (
    ProtocolError,
    RequestParser,
    ResponseParser,
    serialize_chunk,
    serialize_last_chunk,
    serialize_response_head,
    strip_hop_by_hop,
)
from tests.unit.test_http1_differential import VARIANTS

_PARSER_NAMES = (
    "ProtocolError",
    "RequestParser",
    "ResponseParser",
    "serialize_chunk",
    "serialize_last_chunk",
    "serialize_response_head",
    "strip_hop_by_hop",
)


@pytest.fixture(autouse=True, params=list(VARIANTS))
def parser_variant(request: pytest.FixtureRequest) -> Iterator[None]:
    """Rebind the names imported above to one variant's for the test."""
    module = VARIANTS[request.param]
    saved = {name: globals()[name] for name in _PARSER_NAMES}
    globals().update({name: getattr(module, name) for name in _PARSER_NAMES})
    yield
    globals().update(saved)


def drain(parser: RequestParser | ResponseParser) -> list[Event]:
    events = []
    while (event := parser.next_event()) is not None:
        events.append(event)
    return events


def status_of(data: bytes) -> int:
    parser = RequestParser()
    parser.receive_data(data)
    with pytest.raises(ProtocolError) as info:
        drain(parser)
    return info.value.status_hint


def test_pipelined_requests_come_out_in_order() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    targets = [e.target for e in drain(parser) if isinstance(e, RequestReceived)]
    assert targets == [b"/a", b"/b"]


def test_a_bad_request_after_a_good_one_fails_only_after_the_good_one() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
    assert isinstance(parser.next_event(), RequestReceived)
    assert isinstance(parser.next_event(), MessageEnded)
    with pytest.raises(ProtocolError):
        parser.next_event()


def test_too_many_headers_is_431() -> None:
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(101))
    assert status_of(b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n") == 431


def test_a_head_over_64k_is_431_even_when_it_never_ends() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX: ")
    for _ in range(20):
        parser.receive_data(b"v" * 8192)
    with pytest.raises(ProtocolError) as info:
        drain(parser)
    assert info.value.status_hint == 431


def test_one_big_header_just_under_the_limit_is_fine() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 60000 + b"\r\n\r\n")
    assert isinstance(drain(parser)[0], RequestReceived)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
    ],
)
def test_unsupported_things_get_the_right_status(data: bytes, status: int) -> None:
    assert status_of(data) == status


def test_eof_between_requests_is_a_clean_close_and_mid_request_is_an_error() -> None:
    parser = RequestParser()
    parser.receive_data(b"")
    assert isinstance(parser.next_event(), ConnectionClosed)
    parser = RequestParser()
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab")
    drain(parser)
    parser.receive_data(b"")
    with pytest.raises(ProtocolError):
        parser.next_event()


def test_keep_alive_and_expect_continue_are_reported() -> None:
    parser = RequestParser()
    parser.receive_data(
        b"PUT / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nExpect: 100-continue\r\n"
        b"Content-Length: 1\r\n\r\n"
    )
    head = drain(parser)[0]
    assert isinstance(head, RequestReceived)
    assert (head.keep_alive, head.expect_continue, head.content_length) == (False, True, 1)


def test_response_to_head_ends_at_the_head_and_is_not_reused() -> None:
    parser = ResponseParser(b"HEAD")
    parser.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    events = drain(parser)
    assert isinstance(events[0], ResponseReceived)
    assert not events[0].body_expected
    assert isinstance(events[-1], MessageEnded)
    assert parser.ended
    assert not parser.reusable


def test_interim_response_then_chunked_body() -> None:
    parser = ResponseParser(b"GET")
    parser.receive_data(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    events = drain(parser)
    assert [type(e).__name__ for e in events] == [
        "InformationalResponseReceived",
        "ResponseReceived",
        "DataReceived",
        "MessageEnded",
    ]
    assert parser.reusable


def test_close_delimited_response_ends_at_eof_and_early_eof_is_an_error() -> None:
    parser = ResponseParser(b"GET")
    parser.receive_data(b"HTTP/1.1 200 OK\r\n\r\nhello")
    parser.receive_data(b"")
    events = drain(parser)
    assert isinstance(events[1], DataReceived)
    assert isinstance(events[-1], MessageEnded)
    assert not parser.reusable
    parser = ResponseParser(b"GET")
    parser.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello")
    parser.receive_data(b"")
    with pytest.raises(ProtocolError):
        drain(parser)


def test_serialisation_round_trips_through_the_parser() -> None:
    head = serialize_response_head(201, [(b"transfer-encoding", b"chunked")])
    data = head + serialize_chunk(b"hello") + serialize_chunk(b"") + serialize_last_chunk()
    parser = ResponseParser(b"GET")
    parser.receive_data(data)
    events = drain(parser)
    assert isinstance(events[0], ResponseReceived)
    assert events[0].status_code == 201
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"hello"


def test_hop_by_hop_headers_and_those_connection_names_are_stripped() -> None:
    headers = (
        (b"connection", b"keep-alive, X-Secret"),
        (b"x-secret", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"te", b"trailers"),
        (b"proxy-authorization", b"basic x"),
        (b"upgrade", b"h2c"),
        (b"x-kept", b"yes"),
    )
    assert strip_hop_by_hop(headers) == [(b"x-kept", b"yes")]
