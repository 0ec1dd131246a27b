"""Fuzzing the HTTP/1.1 parser (``proto/http1.py``) with hypothesis.

Arbitrary bytes and mutated valid requests, fed in arbitrary pieces, must give
events or ``ProtocolError`` and nothing else, and what comes out is bounded by
what went in. A few hundred examples run with the suite; ``make fuzz`` runs the
"fuzz" profile (``tests/conftest.py``) for as long as it takes.
"""

from __future__ import annotations

import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from edgegw.proto.events import (
    ConnectionClosed,
    DataReceived,
    Event,
    MessageEnded,
    RequestReceived,
    ResponseReceived,
)
from edgegw.proto.http1 import ProtocolError, RequestParser, ResponseParser, _Parser
from edgegw.proto.target import normalize_path

MAX_HEAD = 1024
VALID = [
    b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
    b"POST /a HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1\r\nx\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nrest",
    b"GET /public/%2e%2e/admin HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: y\r\n\r\n",
]
RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nclose-delimited",
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid message with a few bytes replaced, inserted or deleted."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "splice"]))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 34, 35, 37, 46, 47, 58, 127, 128, 255]))
        if op == "insert":
            data.insert(at, byte)
        elif op == "splice":
            data[at:at] = draw(st.sampled_from([b"\r\n", b"\r\n\r\n", b"Content-Length: 9\r\n"]))
        elif at < len(data):
            if op == "replace":
                data[at] = byte
            else:
                del data[at]
    return bytes(data)


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def drain(parser: _Parser, out: list[Event]) -> bool:
    """Take every queued event; False once the parser reported a protocol error."""
    while True:
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            status = exc.status_hint
            return not (400 <= status <= 505 or status == 0) and _unexpected(exc)
        if event is None:
            return True
        out.append(event)


def _unexpected(exc: ProtocolError) -> bool:
    raise AssertionError(f"a protocol error without an HTTP status: {exc!r}")


def check_bounded(data: bytes, events: list[Event]) -> None:
    body = sum(len(e.data) for e in events if isinstance(e, DataReceived))
    assert body <= len(data)
    assert len(events) <= len(data) + 2  # at most an event per byte, plus the close
    for event in events:
        if isinstance(event, RequestReceived | ResponseReceived):
            assert len(event.headers) <= 100
            assert sum(len(n) + len(v) for n, v in event.headers) <= MAX_HEAD
            for name, value in event.headers:
                assert name == name.lower()
                assert not any(c in value for c in b"\r\n\x00")


def feed_requests(data: bytes, cuts: list[int]) -> list[Event]:
    parser = RequestParser(max_head_bytes=MAX_HEAD)
    events: list[Event] = []
    ok = True
    for piece in [*pieces(data, cuts), b""]:
        parser.receive_data(piece)
        ok = drain(parser, events)
        if not ok:
            break
    if not ok:  # an error is final: nothing more parses
        parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not drain(parser, [])
    parser.release()
    return events


def check_requests(data: bytes, events: list[Event]) -> None:
    check_bounded(data, events)
    for event in events:
        if isinstance(event, RequestReceived):
            assert event.http_version in (b"1.0", b"1.1")
            assert event.content_length is None or event.content_length >= 0
            if event.chunked and event.http_version == b"1.0":
                assert not event.keep_alive  # RFC 9112 section 6.1
            path = event.target.decode("latin-1").partition("?")[0]
            once = normalize_path(path)
            assert normalize_path(once) == once
            assert "/../" not in once + "/"
            assert "/./" not in once + "/"
        else:
            assert isinstance(event, DataReceived | MessageEnded | ConnectionClosed)


@given(st.binary(max_size=2048), st.lists(st.integers(0, 4096), max_size=8))
@example(VALID[3], [])
def test_arbitrary_bytes_give_events_or_protocol_errors(data: bytes, cuts: list[int]) -> None:
    check_requests(data, feed_requests(data, cuts))


@given(mutated(VALID), st.lists(st.integers(0, 4096), max_size=8))
def test_mutated_requests_give_events_or_protocol_errors(data: bytes, cuts: list[int]) -> None:
    check_requests(data, feed_requests(data, cuts))


@given(
    st.one_of(mutated(RESPONSES), st.binary(max_size=1024)),
    st.sampled_from([b"GET", b"HEAD"]),
    st.lists(st.integers(0, 4096), max_size=6),
)
def test_upstream_responses_give_events_or_protocol_errors(
    data: bytes, method: bytes, cuts: list[int]
) -> None:
    parser = ResponseParser(method, max_head_bytes=MAX_HEAD)
    events: list[Event] = []
    for piece in [*pieces(data, cuts), b""]:
        parser.receive_data(piece)
        if not drain(parser, events):
            break
    parser.release()
    check_bounded(data, events)
    finals = [e for e in events if isinstance(e, ResponseReceived)]
    assert len(finals) <= 1
    if method == b"HEAD":
        assert not any(isinstance(e, DataReceived) for e in events)
