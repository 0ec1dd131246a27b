"""HTTP/1.0 framing at the edge: Transfer-Encoding ends keep-alive (RFC 9112 section 6.1)."""

from __future__ import annotations

from edgegw.proto.events import DataReceived, MessageEnded, RequestReceived
from edgegw.proto.http1 import RequestParser

SMUGGLE = (
    b"POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
)


def test_http10_with_transfer_encoding_is_never_keep_alive() -> None:
    parser = RequestParser()
    parser.receive_data(SMUGGLE)
    head = parser.next_event()
    assert isinstance(head, RequestReceived)
    assert head.chunked
    assert not head.keep_alive
    assert parser.next_event() == DataReceived(b"hello")
    assert isinstance(parser.next_event(), MessageEnded)


def test_http10_keep_alive_without_transfer_encoding_stays() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head = parser.next_event()
    assert isinstance(head, RequestReceived)
    assert head.keep_alive
