"""Remembered heads: a repeated request or response head gives what a full parse gives.

A parser remembers the heads of whole body-less keep-alive requests and whole keep-alive
responses with a Content-Length (``proto/http1.py``, "Repeated heads"). Each test feeds a
parser that has seen the bytes before and compares with a fresh parser, the reference;
and checks that bytes which only look like a remembered head (a body, a split or
pipelined read) are still parsed as what they are. Every test runs on the parser as
installed (mypyc-compiled where the build had a C compiler) and on its Python source.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgegw.proto.events import (
    DataReceived,
    MessageEnded,
    RequestReceived,
    ResponseReceived,
)
from tests.unit.test_http1_differential import variants

GET = b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n"
OK = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 06 Dec 2026 16:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"
)


def drain(parser: Any) -> list[Any]:
    events = []
    while (event := parser.next_event()) is not None:
        events.append(event)
    return events


def fresh_request(module: ModuleType, data: bytes) -> list[Any]:
    parser = module.RequestParser()
    parser.receive_data(data)
    return drain(parser)


def fresh_response(module: ModuleType, data: bytes, method: bytes = b"GET") -> list[Any]:
    parser = module.ResponseParser(method)
    parser.receive_data(data)
    return drain(parser)


@variants
def test_a_repeated_request_head_gives_the_same_events(parser: ModuleType) -> None:
    p = parser.RequestParser()
    p.receive_data(GET)
    first = drain(p)
    for _ in range(3):
        p.receive_data(GET)
        again = drain(p)
        assert again == first == fresh_request(parser, GET)
        assert again[0] is first[0]  # remembered, not parsed again
    assert not p.in_message


@variants
def test_a_remembered_request_head_inside_a_body_is_body(parser: ModuleType) -> None:
    p = parser.RequestParser()
    p.receive_data(GET)
    drain(p)
    post = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(GET)
    p.receive_data(post)
    head = drain(p)
    assert isinstance(head[0], RequestReceived)
    assert head[0].method == b"POST"
    assert p.in_message
    p.receive_data(GET)  # the body: the same bytes as the remembered head
    assert drain(p) == [DataReceived(GET), MessageEnded()]
    p.receive_data(GET)
    assert drain(p) == fresh_request(parser, GET)


@variants
def test_a_remembered_request_head_after_a_partial_head_completes_that_head(
    parser: ModuleType,
) -> None:
    p = parser.RequestParser()
    p.receive_data(GET)
    drain(p)
    p.receive_data(b"GET /other HTTP/1.1\r\nX-Long: ")
    assert drain(p) == []
    p.receive_data(GET)  # now part of X-Long's value, with the bare CR LF that ends it
    events = drain(p)
    assert isinstance(events[0], RequestReceived)
    assert events[0].target == b"/other"


@variants
@pytest.mark.parametrize(
    "data",
    [
        b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        GET + GET,  # pipelined: two requests in one read
        GET + b"GET /b HTTP/1.1\r\n",  # and the start of a third
        b"GET /" + b"x" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",  # larger than remembered
    ],
)
def test_requests_not_remembered_are_parsed_each_time(parser: ModuleType, data: bytes) -> None:
    p = parser.RequestParser()
    p.receive_data(data)
    assert drain(p) == fresh_request(parser, data)
    assert not p._heads


@variants
def test_a_bad_request_after_a_remembered_one_is_still_refused(parser: ModuleType) -> None:
    p = parser.RequestParser()
    for _ in range(2):
        p.receive_data(GET)
        drain(p)
    p.receive_data(GET.replace(b"Host", b"Ho st"))
    with pytest.raises(parser.ProtocolError):
        drain(p)


@variants
def test_a_case_keeping_parser_remembers_nothing(parser: ModuleType) -> None:
    p = parser.CaseKeepingRequestParser()
    for _ in range(2):
        p.receive_data(GET)
        (head, _end) = drain(p)
        assert head.header_case == {b"host": b"Host", b"user-agent": b"User-Agent",
                                    b"accept": b"Accept"}  # fmt: skip


@variants
def test_remembered_request_heads_are_bounded(parser: ModuleType) -> None:
    p = parser.RequestParser()
    for i in range(200):
        data = GET.replace(b"/a", b"/%d" % i)
        p.receive_data(data)
        (head, _end) = drain(p)
        assert head.target == b"/%d?b=1" % i
    assert len(p._heads) <= 16


def pooled(module: ModuleType) -> Any:
    """A response parser after one full exchange, as the pool keeps it."""
    p = module.ResponseParser(b"GET")
    p.receive_data(OK)
    drain(p)
    assert p.reusable
    return p


@variants
def test_a_repeated_response_gives_the_same_events(parser: ModuleType) -> None:
    p = parser.ResponseParser(b"GET")
    p.receive_data(OK)
    first = drain(p)
    assert first == fresh_response(parser, OK)
    for body in (b"hello", b"world"):
        p.reset()
        p.receive_data(OK.replace(b"hello", body))
        again = drain(p)
        assert again == [first[0], DataReceived(body), MessageEnded()]
        assert again[0] is first[0]  # remembered, not parsed again
        assert p.reusable


@variants
def test_a_response_split_or_followed_by_junk_is_parsed(parser: ModuleType) -> None:
    p = pooled(parser)
    p.reset()
    p.receive_data(OK[:-2])
    events = drain(p)
    p.receive_data(OK[-2:])
    assert events + drain(p) == [fresh_response(parser, OK)[0], DataReceived(b"hel"),
                                 DataReceived(b"lo"), MessageEnded()]  # fmt: skip
    p.reset()
    p.receive_data(OK + b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(parser.ProtocolError):
        drain(p)


@variants
def test_a_shorter_or_longer_body_is_not_taken_for_a_remembered_response(
    parser: ModuleType,
) -> None:
    p = pooled(parser)
    p.reset()
    p.receive_data(OK[:-1])
    events = drain(p)
    assert events == [fresh_response(parser, OK)[0], DataReceived(b"hell")]
    assert not p.reusable
    p.receive_data(b"o")
    assert drain(p) == [DataReceived(b"o"), MessageEnded()]


@variants
@pytest.mark.parametrize(
    ("response", "method"),
    [
        (OK, b"HEAD"),
        (OK.replace(b"keep-alive", b"close"), b"GET"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", b"GET"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"GET"),
    ],
)
def test_responses_not_remembered_are_parsed_each_time(
    parser: ModuleType, response: bytes, method: bytes
) -> None:
    for _ in range(2):
        p = parser.ResponseParser(method)
        p.receive_data(response)
        assert drain(p) == fresh_response(parser, response, method)
        assert not p._heads


@variants
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"/", b"/a", b"/a?x=1"]),
            st.sampled_from([b"", b"Accept: */*\r\n", b"Connection: close\r\n", b"X: y\r\n"]),
            st.sampled_from([b"", b"Content-Length: 0\r\n", b"Content-Length: 2\r\n"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_a_connection_parses_each_request_as_a_fresh_parser_would(
    parser: ModuleType, requests: list[tuple[bytes, bytes, bytes]]
) -> None:
    p = parser.RequestParser()
    for target, extra, length in requests:
        data = b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n" + extra + length + b"\r\n"
        data += b"ab" if length.endswith(b"2\r\n") else b""
        p.receive_data(data)
        events = drain(p)
        assert events == fresh_request(parser, data)
        head = events[0]
        assert isinstance(head, RequestReceived)
        if not head.keep_alive:
            return


@variants
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"200 OK", b"404 Not Found"]),
            st.sampled_from([b"", b"Date: a\r\n", b"Date: b\r\n"]),
            st.sampled_from([b"", b"x", b"hello"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_a_pooled_response_parser_parses_as_a_fresh_one(
    parser: ModuleType, responses: list[tuple[bytes, bytes, bytes]]
) -> None:
    p = parser.ResponseParser(b"GET")
    for i, (status, extra, body) in enumerate(responses):
        data = b"HTTP/1.1 " + status + b"\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body)
        if i:
            p.reset()
        p.receive_data(data + body)
        events = drain(p)
        assert events == fresh_response(parser, data + body)
        assert isinstance(events[0], ResponseReceived)
        assert p.reusable
