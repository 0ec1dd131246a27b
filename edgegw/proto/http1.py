"""Strict, fast HTTP/1.1 framing: bytes in, events out; heads and chunks serialised in.

Theory of operation
-------------------
llhttp (through ``httptools``) does the byte-level work: it is a state machine
written in C, already strict about line endings (bare CR, bare LF, obs-fold),
token characters, control characters in values, duplicate Content-Length and
Content-Length next to Transfer-Encoding. What it lacks, we add in
``_validate_head`` once per message, holding it to h11's rules, which are our
reference (``tests/unit/test_http1_differential.py`` compares both):

* Transfer-Encoding other than exactly ``chunked`` → 501, as h11 does;
* HTTP/1.1 without exactly one Host → 400; versions other than 1.0/1.1 → 505;
* more than ``max_headers`` headers or more than ``max_head_bytes`` of head → 431;
* trailing whitespace removed from values (llhttp keeps it);
* HTTP/1.0 with Transfer-Encoding is never keep-alive (RFC 9112 section 6.1).

llhttp calls back synchronously while it walks a buffer, so each ``feed``
appends events to a deque and ``next_event`` pops them; several pipelined
requests in one read simply queue up. A parse error is held back until the
events before it have been taken, so pipelined requests ahead of a bad one are
still answered. The caller bounds memory by feeding one socket read at a time
and only when the queue is empty: a body is never held whole.

A response parser lives for one exchange (a fresh, cheap C object), because
only the client knows whether the request was HEAD, and llhttp cannot be told
to skip a body after the fact: HEAD responses end at the head, and the
connection is not reused (see ``ResponseParser.reusable``). Otherwise a
reusable response parser goes back to the pool with its connection.

Repeated heads are parsed once per parser (so per client or upstream
connection): a keep-alive peer sends the same head again and again (a client
its request, a backend its answer, whose Date changes once a second), and the
bytes alone decide the events llhttp and ``_validate_head`` make of them. So a
parser remembers (``_HEADS`` of them, each at most ``_HEAD_SIZE`` bytes) the
heads of complete, body-less keep-alive requests read in one piece, and of
keep-alive responses with a Content-Length read in one piece with their body;
when the same bytes come again at a message boundary, it queues the events it
made of them then, without llhttp, which is left where a complete message
leaves it. Anything else (a head split across reads, a second message in the
read, a chunked or close-delimited body, HEAD, upgrades, ``CaseKeeping*``) is
parsed in full, as are the heads that get remembered.

Serialisation is plain byte joins: heads from ``(name, value)`` pairs, chunks.
This module imports no trio.

Header names are lower-cased as they are read. ClientTrafficPolicy
``http1.preserveHeaderCase`` wants them forwarded as they were spelled (Envoy's
``preserve_case`` formatter): the ``CaseKeeping*`` subclasses also note each
name's first spelling in the message's ``header_case``, and ``recase`` puts it
back when the head is written to the other side. Everything in between keeps
matching lower-case names; parsers without the policy run no extra code.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import httptools
import msgspec

from edgegw.proto.events import (
    ConnectionClosed,
    DataReceived,
    Event,
    HeaderList,
    Headers,
    InformationalResponseReceived,
    MessageEnded,
    RequestReceived,
    ResponseReceived,
)

# Final: mypyc keeps these in C globals, not the module dict (a lookup per use)
_ENDED: Final = MessageEnded()  # events are immutable: the usual, trailer-less end is shared
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
_HEADS: Final = 16  # heads a parser remembers (see the module docstring)
_HEAD_SIZE: Final = 2048  # bytes of the longest one
_END_OF_HEAD: Final = b"\r\n\r\n"
_WS: Final = b" \t"


class ProtocolError(Exception):
    """The peer broke HTTP/1.1; ``status_hint`` is the response a server should send."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class _Stop(Exception):
    """Raised inside a callback to make llhttp stop at once (limits exceeded)."""

    def __init__(self, error: ProtocolError) -> None:
        super().__init__(str(error))
        self.error = error


class _Parser:
    """Shared machinery of the request and response parsers.

    The head being read lives in plain attributes, not an object per message:
    llhttp calls ``on_header`` once per field, and this is the hottest Python
    on the HTTP/1.1 path (both ends of every proxied exchange). ``_fields`` is
    the list being filled: the head's fields, then, once the head is complete,
    the trailers of a chunked body.
    """

    _parser: httptools.HttpRequestParser | httptools.HttpResponseParser | None  # None: released

    def __init__(self, max_head_bytes: int, max_headers: int) -> None:
        self._events: deque[Event] = deque()
        self._error: ProtocolError | None = None
        self._max_head_bytes = max_head_bytes
        self._max_headers = max_headers
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._trailers: list[tuple[bytes, bytes]] | None = None
        self._fields = self._headers
        self._head_bytes = 0
        self._reading_head = False  # from a message's first byte to the end of its head
        self._in_message = False
        self._pending_head_bytes = 0

    # --- llhttp callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._fields = self._headers = []
        self._trailers = None
        self._head_bytes = 0
        self._reading_head = self._in_message = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self._max_head_bytes:
            raise _Stop(ProtocolError("request header fields too large", 431))

    def on_header(self, name: bytes, value: bytes) -> None:
        fields = self._fields
        fields.append((name.lower(), value.rstrip(_WS)))
        if len(fields) > self._max_headers:
            raise _Stop(ProtocolError("too many header fields", 431))
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._max_head_bytes:
            raise _Stop(ProtocolError("request header fields too large", 431))

    def on_chunk_header(self) -> None:
        pass

    def on_body(self, body: bytes) -> None:
        self._events.append(DataReceived(body))

    def on_message_complete(self) -> None:
        trailers = self._trailers
        self._events.append(MessageEnded(tuple(trailers)) if trailers else _ENDED)
        self._trailers = None
        self._reading_head = self._in_message = False
        self._pending_head_bytes = 0

    def _start_trailers(self) -> None:
        self._fields = self._trailers = []
        self._reading_head = False

    # --- feeding --------------------------------------------------------------------------

    def _feed(self, data: bytes | bytearray) -> None:
        if self._error is not None:
            return
        parser = self._parser
        assert parser is not None, "fed after release()"
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._on_upgrade(data, int(upgrade.args[0]))
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._error = cause.error if isinstance(cause, _Stop) else _wrap(cause or exc)
        except httptools.HttpParserError as exc:
            self._error = _error_from_llhttp(exc)
        if self._reading_head:
            self._check_unfinished_head(len(data))
        else:
            self._pending_head_bytes = 0

    def _check_unfinished_head(self, n: int) -> None:
        """Bound a head that never ends (llhttp buffers a partial line without limit)."""
        self._pending_head_bytes += n
        if self._pending_head_bytes > self._max_head_bytes and self._error is None:
            self._error = ProtocolError("request header fields too large", 431)

    def _on_upgrade(self, data: bytes | bytearray, offset: int) -> None:
        self.trailing_data = bytes(data[offset:])

    def release(self) -> None:
        """Let go of llhttp's parser, which holds our bound callbacks: a cycle otherwise.

        Without this, every connection's parser and all it reaches (buffers, the
        connection's objects) wait for the cyclic collector: in ``Connection: close``
        traffic that collector took a tenth of the CPU. Feeding data after this
        fails; releasing twice does nothing.
        """
        self._parser = None

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when more data is needed.

        Raises:
            ProtocolError: the peer sent something invalid; nothing more will parse.
        """
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        return None

    @property
    def in_message(self) -> bool:
        """True between the first byte of a message and its end."""
        return self._in_message


class RequestParser(_Parser):
    """Server side: one per client connection, across keep-alive and pipelining."""

    def __init__(
        self, *, max_head_bytes: int = MAX_HEAD_BYTES, max_headers: int = MAX_HEADERS
    ) -> None:
        super().__init__(max_head_bytes, max_headers)
        self._parser = httptools.HttpRequestParser(self)
        self.trailing_data = b""
        self._upgraded = False
        # request heads read before, by their bytes (see the module docstring)
        self._heads: dict[bytes, RequestReceived] | None = {}
        self.remembered: RequestReceived | None = None  # the last head kept or recalled

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes read from the client; ``b""`` means the client closed its side."""
        if self._upgraded:
            self.trailing_data += bytes(data)
            return
        if data:
            heads = self._heads
            if heads is None or type(data) is not bytes or not self._at_boundary():
                self._feed(data)
                return
            known = heads.get(data)
            if known is not None:
                self._events.extend((known, _ENDED))
                self.remembered = known
                return
            self._feed(data)
            self._remember(heads, data)
        elif self._in_message:
            self._error = self._error or ProtocolError("connection closed mid-request")
        else:
            self._events.append(ConnectionClosed())

    def _at_boundary(self) -> bool:
        """True between messages with nothing queued: where a remembered head may start."""
        return not self._in_message and not self._events and self._error is None

    def _remember(self, heads: dict[bytes, RequestReceived], data: bytes) -> None:
        """Keep ``data``'s request if it was one whole body-less keep-alive request."""
        events = self._events
        if len(events) != 2 or events[1] is not _ENDED or len(data) > _HEAD_SIZE:
            return
        head = events[0]
        if (
            type(head) is RequestReceived
            and head.content_length == 0
            and head.keep_alive
            and not head.upgrade
            and not head.expect_continue
            and not self._in_message
            and self._error is None
        ):
            if len(heads) >= _HEADS:
                heads.clear()
            heads[data] = self.remembered = head

    def skip_message_end(self) -> None:
        """Drop the ``MessageEnded`` that follows a body-less request, if it is queued."""
        if self._events and type(self._events[0]) is MessageEnded:
            self._events.popleft()

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert isinstance(parser, httptools.HttpRequestParser)
        version = _VERSIONS.get(parser.get_http_version()) or b""
        headers = tuple(self._headers)
        length, chunked, conn, expect = _validate_head(headers, version, request=True)
        self._events.append(
            RequestReceived(
                method=parser.get_method(),
                target=self._url,
                headers=headers,
                http_version=version,
                # RFC 9112 section 6.1: HTTP/1.0 with Transfer-Encoding has faulty framing;
                # close after it, so what follows the body is never read as a request.
                keep_alive=_keep_alive(version, conn) and not (chunked and version == b"1.0"),
                content_length=length if length is not None else (None if chunked else 0),
                chunked=chunked,
                expect_continue=expect and version == b"1.1",
                upgrade=bool(parser.should_upgrade()),
            )
        )
        self._start_trailers()

    def _on_upgrade(self, data: bytes | bytearray, offset: int) -> None:
        self._upgraded = True
        self.trailing_data = bytes(data[offset:])


class ResponseParser(_Parser):
    """Client side: one per request/response exchange on an upstream connection.

    ``upgrade=True`` for a request that asked to switch protocols (a
    WebSocket handshake): a 101 is then the final response, without body,
    and the bytes after its head are ``trailing_data``; otherwise a 101 is
    an error.
    """

    def __init__(
        self,
        request_method: bytes,
        *,
        upgrade: bool = False,
        max_head_bytes: int = MAX_HEAD_BYTES,
        max_headers: int = MAX_HEADERS,
    ) -> None:
        super().__init__(max_head_bytes, max_headers)
        self._parser = httptools.HttpResponseParser(self)
        self._upgrade = upgrade
        self._head_request = request_method == b"HEAD"
        self._final: ResponseReceived | None = None
        self._ended = False
        self._close_delimited = False
        self.reusable = False  # True once a keep-alive response has ended cleanly
        self.trailing_data = b""
        # response heads read before, by their bytes (see the module docstring)
        self._heads: dict[bytes, ResponseReceived] | None = (
            None if upgrade or self._head_request else {}
        )

    def reset(self) -> None:
        """Ready for the next response on the same connection (llhttp keeps its state).

        Only after a ``reusable`` exchange whose request was not HEAD.
        """
        assert self.reusable
        assert not self._head_request
        self._events.clear()  # a retried response may be left unread; it did end
        self._error = None
        self._reading_head = self._in_message = False
        self._trailers = None
        self._pending_head_bytes = 0
        self._final = None
        self._ended = False
        self._close_delimited = False
        self.reusable = False

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes read from the upstream; ``b""`` means it closed its side."""
        if self._ended:
            if data:
                self.reusable = False  # junk after the response: never reuse
            return
        if data:
            heads = self._heads
            if heads is None or self._final is not None or self._in_message or self._events:
                self._feed(data)
                return
            end = data.find(_END_OF_HEAD) + 4
            head = bytes(data[:end]) if 4 <= end <= _HEAD_SIZE else b""
            if head and self._known(heads.get(head), data, end):
                return
            self._feed(data)
            if head:
                self._remember(heads, head, len(data) - end)
            return
        if self._close_delimited and self._final is not None:
            self._finish()
        elif self._error is None:
            self._error = ProtocolError("upstream closed the connection mid-response", 502)

    def _known(self, known: ResponseReceived | None, data: bytes | bytearray, end: int) -> bool:
        """Queue a remembered response whose body is the rest of ``data``; False if none."""
        if known is None or known.content_length != len(data) - end or self._error is not None:
            return False
        events = self._events
        events.append(known)
        if end < len(data):
            events.append(DataReceived(bytes(data[end:])))
        events.append(_ENDED)
        self._final = known
        self._ended = self.reusable = True
        return True

    def _remember(self, heads: dict[bytes, ResponseReceived], head: bytes, body: int) -> None:
        """Keep the response just parsed if it came whole, its body ``body`` bytes long."""
        final = self._final
        if (
            final is not None
            and self.reusable
            and self._error is None
            and self._events
            and self._events[0] is final
            and final.body_expected
            and final.content_length == body
            and final.header_case is None
        ):
            if len(heads) >= _HEADS:
                heads.clear()
            heads[head] = final

    def on_message_begin(self) -> None:
        if self._final is not None:
            raise _Stop(ProtocolError("upstream sent data after the response", 502))
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert isinstance(parser, httptools.HttpResponseParser)
        status = parser.get_status_code()
        version = _VERSIONS.get(parser.get_http_version()) or b""
        headers = tuple(self._headers)
        length, chunked, conn, _ = _validate_head(headers, version, request=False)
        if 100 <= status < 200 and not (status == 101 and self._upgrade):
            if status == 101:
                raise _Stop(ProtocolError("upstream switched protocols unasked", 502))
            self._events.append(InformationalResponseReceived(status, headers))
            return
        body = not (self._head_request or status in (101, 204, 304))
        self._final = ResponseReceived(
            status_code=status,
            reason=b"",
            headers=headers,
            http_version=version,
            keep_alive=_keep_alive(version, conn),
            content_length=length,
            chunked=chunked,
            body_expected=body,
        )
        self._close_delimited = body and length is None and not chunked
        self._events.append(self._final)
        self._start_trailers()
        if not body and self._head_request:
            self._finish()
            raise _Stop(ProtocolError("", 0))  # stop: llhttp would wait for a body

    def on_message_complete(self) -> None:
        if self._final is None:
            self._reading_head = False  # a 1xx ended; the final response follows
            return
        if not self._ended:
            super().on_message_complete()
            self._ended = True
            upgraded = self._final.status_code == 101
            self.reusable = self._final.keep_alive and not self._close_delimited and not upgraded

    def _finish(self) -> None:
        self._events.append(MessageEnded())
        self._ended = True
        self._reading_head = self._in_message = False

    def _feed(self, data: bytes | bytearray) -> None:
        super()._feed(data)
        if self._error is not None and self._error.status_hint == 0:
            self._error = None  # the HEAD stop above, not a failure

    @property
    def ended(self) -> bool:
        """True once the final response has been read to its end."""
        return self._ended


# --- header name case (ClientTrafficPolicy http1.preserveHeaderCase) ---------------------------


class CaseKeepingRequestParser(RequestParser):
    """A ``RequestParser`` whose requests carry ``header_case``; trailers stay lower-case.

    A subclass, so that connections without the policy run the parent's callbacks as
    they are: the per-field work exists only here.
    """

    def __init__(
        self, *, max_head_bytes: int = MAX_HEAD_BYTES, max_headers: int = MAX_HEADERS
    ) -> None:
        super().__init__(max_head_bytes=max_head_bytes, max_headers=max_headers)
        self._case: dict[bytes, bytes] = {}
        self._heads = None  # a remembered head would carry no names' case

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._case = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        _remember(self._case, name)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        events = self._events  # the request is the last event queued
        events[-1] = msgspec.structs.replace(events[-1], header_case=self._case)
        self._case = {}  # the trailers' names go nowhere


class CaseKeepingResponseParser(ResponseParser):
    """A ``ResponseParser`` whose final response carries ``header_case``.

    ``reset`` (a pooled connection reused) turns the noting off, so a request
    without the policy may reuse it; ``keep_case`` turns it on again.
    """

    def __init__(
        self,
        request_method: bytes,
        *,
        upgrade: bool = False,
        max_head_bytes: int = MAX_HEAD_BYTES,
        max_headers: int = MAX_HEADERS,
    ) -> None:
        super().__init__(
            request_method, upgrade=upgrade, max_head_bytes=max_head_bytes, max_headers=max_headers
        )
        self._case: dict[bytes, bytes] | None = {}
        self._heads = None  # a remembered head would carry no names' case

    def reset(self) -> None:
        super().reset()
        self._case = None

    def keep_case(self) -> None:
        """Note the names of the next response (after ``reset``)."""
        self._case = {}

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._case is not None:
            self._case = {}  # a 1xx's names are not the final response's

    def on_header(self, name: bytes, value: bytes) -> None:
        case = self._case
        if case is not None:
            _remember(case, name)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        at = len(self._events)
        try:
            super().on_headers_complete()
        finally:  # a HEAD response stops llhttp with an exception after queueing its events
            self._stamp(at)

    def _stamp(self, at: int) -> None:
        events, case = self._events, self._case
        if case is None or len(events) <= at:
            return
        head = events[at]
        if isinstance(head, ResponseReceived):
            events[at] = self._final = msgspec.structs.replace(head, header_case=case)


def _remember(case: dict[bytes, bytes], name: bytes) -> None:
    """Note ``name``'s spelling unless its name was seen already (the first one wins, as
    in Envoy: ``Foo`` then ``foo`` both leave as ``Foo``)."""
    lower = name.lower()
    if lower not in case:
        case[lower] = name


def recase(headers: Headers | HeaderList, case: dict[bytes, bytes]) -> HeaderList:
    """``headers`` with each name spelled as ``case`` says; names it lacks stay lower-case."""
    get = case.get
    return [(get(name, name), value) for name, value in headers]


# --- validation, where llhttp is more lenient than h11 -----------------------------------------


_VERSIONS: Final = {"1.1": b"1.1", "1.0": b"1.0"}
_FRAMING: Final = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"host", b"expect"}
)


def _validate_head(
    headers: Headers, version: bytes, *, request: bool
) -> tuple[int | None, bool, bytes, bool]:
    """Check framing headers once per message.

    Returns:
        (Content-Length or None, chunked, lower-cased Connection value,
        ``Expect: 100-continue`` present)

    Raises:
        _Stop: wrapping the ``ProtocolError`` to report.
    """
    if not version:
        raise _Stop(ProtocolError("HTTP version not supported", 505))
    length: int | None = None
    chunked = expect = False
    conn = b""
    hosts = 0
    for name, value in headers:
        if name not in _FRAMING:
            continue
        if name == b"content-length":
            length = int(value)  # llhttp allowed only digits, once
        elif name == b"host":
            hosts += 1
        elif name == b"connection":
            conn = conn + b"," + value.lower() if conn else value.lower()
        elif name == b"transfer-encoding":
            if value.lower() != b"chunked":
                raise _Stop(ProtocolError("only Transfer-Encoding: chunked is supported", 501))
            chunked = True
        elif value.lower() == b"100-continue":
            expect = True
    if request and (hosts > 1 or (hosts == 0 and version == b"1.1")):
        raise _Stop(ProtocolError("a request needs exactly one Host header"))
    return length, chunked, conn, expect


def _keep_alive(version: bytes, connection: bytes) -> bool:
    if not connection:
        return version == b"1.1"
    if connection == b"keep-alive":
        return True
    if connection == b"close":
        return False
    tokens = {t.strip() for t in connection.split(b",")}
    if b"close" in tokens:
        return False
    return version == b"1.1" or b"keep-alive" in tokens


def _error_from_llhttp(exc: httptools.HttpParserError) -> ProtocolError:
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        return ProtocolError(f"unsupported method: {exc}", 501)
    return ProtocolError(f"malformed HTTP/1.1: {exc}")


def _wrap(exc: BaseException) -> ProtocolError:
    if isinstance(exc, ProtocolError):
        return exc
    return ProtocolError(f"malformed HTTP/1.1: {exc}")


# --- serialisation -------------------------------------------------------------------------

_REASONS: dict[int, bytes] = {
    100: b"Continue", 101: b"Switching Protocols", 200: b"OK", 201: b"Created",
    202: b"Accepted", 204: b"No Content",
    206: b"Partial Content", 301: b"Moved Permanently", 302: b"Found", 303: b"See Other",
    304: b"Not Modified", 307: b"Temporary Redirect", 308: b"Permanent Redirect",
    400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Content Too Large",
    421: b"Misdirected Request", 429: b"Too Many Requests",
    431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
    501: b"Not Implemented", 502: b"Bad Gateway", 503: b"Service Unavailable",
    504: b"Gateway Timeout", 505: b"HTTP Version Not Supported", 508: b"Loop Detected",
}  # fmt: skip
_STATUS_LINES: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in _REASONS.items()
}


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase, or ``b""`` for codes without one here."""
    return _REASONS.get(status, b"")


def serialize_response_head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A status line and header block, ready to write."""
    line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))
    parts = [line]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def serialize_request_head(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
) -> bytes:
    """A request line and header block, ready to write."""
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def serialize_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body; empty data gives nothing (not the last chunk)."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def serialize_last_chunk(trailers: Headers = ()) -> bytes:
    """The zero chunk ending a chunked body, with any trailers."""
    if not trailers:
        return b"0\r\n\r\n"
    return b"0\r\n" + b"".join([n + b": " + v + b"\r\n" for n, v in trailers]) + b"\r\n"


# --- hop-by-hop headers --------------------------------------------------------------------

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


def strip_hop_by_hop(headers: Headers | HeaderList) -> HeaderList:
    """End-to-end headers: without the hop-by-hop set, ``Proxy-*`` and what Connection names."""
    out = []
    named: set[bytes] | None = None
    for item in headers:
        name = item[0]
        if name in HOP_BY_HOP:
            if name == b"connection" and item[1].lower() not in HOP_BY_HOP:
                named = named or set()
                named.update(t.strip().lower() for t in item[1].split(b","))
        elif not name.startswith(b"proxy-"):
            out.append(item)
    if named is None:
        return out
    named.discard(b"")
    return [h for h in out if h[0] not in named]
