"""Our llhttp-based parser against h11, the reference, on valid and malicious input.

Both must accept the same requests with the same method, target, headers and
body, and reject the same requests. Where we are deliberately stricter than
h11, the case is listed in ``STRICTER`` with the reason, and we must reject it.

Every case runs on both variants of the parser: as installed (compiled by mypyc
where the build had a C compiler, ``setup.py``) and as the Python source.
"""

from __future__ import annotations

from types import ModuleType

import h11
import pytest

from edgegw.proto import compiled, http1
from edgegw.proto.events import DataReceived, MessageEnded, RequestReceived

Parsed = tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]
VARIANTS = {"installed": http1, "source": compiled.load_source("edgegw.proto", "http1")}
variants = pytest.mark.parametrize("parser", list(VARIANTS.values()), ids=list(VARIANTS))

VALID = {
    "get": b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "query": b"GET /p/a%20b?x=1&y=%2F HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
    "http10": b"GET / HTTP/1.0\r\n\r\n",
    "absolute": b"GET http://a/b?c HTTP/1.1\r\nHost: a\r\n\r\n",
    "asterisk": b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "length": b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    "chunked": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "chunk-ext": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3;x=y\r\nabc\r\n0\r\n\r\n",
    "te-case": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
    "ows": b"GET / HTTP/1.1\r\nHost: a\r\nX:   spaced \t \r\n\r\n",
    "obs-text": b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n",
    "empty-value": b"GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n",
    "many": b"GET / HTTP/1.1\r\nHost: a\r\n"
    + b"".join(b"X-%d: v\r\n" % i for i in range(50))
    + b"\r\n",
    "methods": b"DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n",
    "patch": b"PATCH /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
}

MALICIOUS = {
    "bare-cr": b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    "nul-value": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n",
    "bad-name": b"GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n",
    "empty-name": b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n",
    "cl-conflict": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
    b"Content-Length: 4\r\n\r\nabcd",
    "cl-negative": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    "cl-plus": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
    "te-gzip": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te-unknown": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "te-twice": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunk-bad-end": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabcX\r\n0\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    "8bit-target": b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
    "bad-method": b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
    "continuation-first": b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}

# Deliberately stricter than h11, which accepts these.
STRICTER = {
    "bare-lf": (b"GET / HTTP/1.1\nHost: a\n\n", "bare LF line ends invite smuggling"),
    "bare-lf-trailers": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\r\n",
        "the same in a chunked body's trailer section, where h11 takes it",
    ),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", "RFC 9112 lets us reject"),
    "cl-te": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        "the classic smuggling shape; h11 lets TE win",
    ),
    "cl-duplicate": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        "llhttp rejects any repeated Content-Length",
    ),
    "cl-list": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
        "llhttp rejects any repeated Content-Length",
    ),
    "ctl-in-value": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", "control characters"),
    "chunk-size-space": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
        "whitespace after a chunk size is a smuggling vector",
    ),
    "http-1.3": (b"GET / HTTP/1.3\r\nHost: a\r\n\r\n", "only 1.0 and 1.1 are HTTP/1"),
    "http-2.0": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "not an HTTP/1 request (505)"),
    "unknown-method": (b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n", "llhttp knows a fixed set (501)"),
    "odd-target": (
        b"OPTIONS ! HTTP/1.1\r\nHost: a\r\n\r\n",
        "a request-target in none of the forms of RFC 9112 section 3.2",
    ),
}


def ours(data: bytes, chunk: int, module: ModuleType = http1) -> Parsed | None:
    parser = module.RequestParser()
    head: RequestReceived | None = None
    body = b""
    try:
        for i in range(0, len(data), chunk):
            parser.receive_data(data[i : i + chunk])
            while (event := parser.next_event()) is not None:
                if isinstance(event, RequestReceived):
                    head = event
                elif isinstance(event, DataReceived):
                    body += event.data
                elif isinstance(event, MessageEnded):
                    assert head is not None
                    headers = [  # h11 lower-cases this value; the meaning is the same
                        (n, v.lower() if n == b"transfer-encoding" else v) for n, v in head.headers
                    ]
                    return head.method, head.target, headers, body
    except module.ProtocolError:
        return None
    raise AssertionError("incomplete")


def reference(data: bytes) -> Parsed | None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    conn.receive_data(data)
    head: h11.Request | None = None
    body = b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = [(n, v) for n, v in head.headers]
                return head.method, head.target, headers, body
            elif event is h11.NEED_DATA:
                raise AssertionError("incomplete")
    except h11.RemoteProtocolError:
        return None


@variants
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_requests_parse_exactly_like_h11(name: str, chunk: int, parser: ModuleType) -> None:
    expected = reference(VALID[name])
    assert expected is not None, "the corpus entry must be valid for h11"
    assert ours(VALID[name], chunk, parser) == expected


@variants
@pytest.mark.parametrize("chunk", [1, 1 << 20])
@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_malicious_requests_are_rejected_like_h11(
    name: str, chunk: int, parser: ModuleType
) -> None:
    assert reference(MALICIOUS[name]) is None, "the corpus entry must be invalid for h11"
    assert ours(MALICIOUS[name], chunk, parser) is None


@variants
@pytest.mark.parametrize("name", sorted(STRICTER))
def test_where_we_are_stricter_than_h11_we_reject(name: str, parser: ModuleType) -> None:
    data, _reason = STRICTER[name]
    assert reference(data) is not None, "h11 accepts it; otherwise move it to MALICIOUS"
    assert ours(data, 1 << 20, parser) is None
