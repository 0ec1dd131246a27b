"""HTTP/2 without I/O: settings, header mapping and abuse accounting around the codec.

``proto/h2codec`` is the state machine (its ``streams.py`` holds the
transition table, ``validate.py`` the checks on every received head); this
module only adds what edgegw decides on top of it, so that
``net/h2server.py`` and ``net/h2upstream.py`` stay about I/O:

- ``H2Limits``: the settings we advertise and the abuse thresholds we enforce;
- ``server_connection``/``client_connection``: configured ``H2Codec``\\s;
- header mapping: an HTTP/2 request head → the parts of a ``ProxyRequest``,
  an HTTP/1-style head → HTTP/2 request or response headers (connection-
  specific fields removed, as RFC 9113 §8.2.2 requires);
- ``ResetBudget``: RST_STREAMs per connection per time window (CVE-2023-44487);
- ``grpc_timeout``: the ``grpc-timeout`` header in seconds.

No trio here: times come in as arguments.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import msgspec

from edgegw.proto.events import HeaderList, Headers, ResponseReceived
from edgegw.proto.h2codec import CodecConfig, H2Codec
from edgegw.proto.target import split_host

#: Fields that mean something only to one HTTP/1.1 hop; never valid in HTTP/2.
CONNECTION_SPECIFIC = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"te",
        b"trailer",
    }
)
_GRPC_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


@dataclass(frozen=True, slots=True)
class H2Limits:
    """What one HTTP/2 connection may use; defaults fit a gRPC-heavy edge.

    ``max_resets`` client RST_STREAMs within ``reset_window`` seconds end the
    connection with GOAWAY(ENHANCE_YOUR_CALM). ``stall_timeout`` is how long a
    response may wait for flow-control window (or a write may wait for the
    socket) before the connection is closed.
    """

    max_concurrent_streams: int = 128
    initial_window_size: int = 1 << 20  # per stream, what we let peers send
    connection_window_size: int = 16 << 20
    max_frame_size: int = 1 << 14
    max_header_list_size: int = 64 * 1024
    max_resets: int = 200
    reset_window: float = 10.0
    stall_timeout: float = 30.0
    malformed_ends_connection: bool = False  # onInvalidMessage: TerminateConnection


def _connection(limits: H2Limits, *, server: bool) -> H2Codec:
    # Our settings hold from the first frame on, the header list limit included
    # (HPACK bombs). Outbound headers are not validated again: they come from
    # parsers that did (httptools, the codec's inbound checks) and from validated
    # config, names lower-cased and connection-specific fields removed
    # (``CONNECTION_SPECIFIC``).
    conn = H2Codec(
        CodecConfig(
            client_side=not server,
            max_concurrent_streams=limits.max_concurrent_streams,
            initial_window_size=limits.initial_window_size,
            connection_window_size=limits.connection_window_size,
            max_frame_size=limits.max_frame_size,
            max_header_list_size=limits.max_header_list_size,
            enable_connect_protocol=server,  # RFC 8441 WebSocket
            malformed_ends_connection=limits.malformed_ends_connection and server,
        )
    )
    conn.initiate_connection()
    return conn


def server_connection(limits: H2Limits) -> H2Codec:
    """A server-side connection whose preface (SETTINGS, WINDOW_UPDATE) is queued."""
    return _connection(limits, server=True)


def client_connection(limits: H2Limits) -> H2Codec:
    """A client-side connection whose preface is queued; push is disabled."""
    return _connection(limits, server=False)


# --- requests from clients ------------------------------------------------------------------


class H2Request(msgspec.Struct, frozen=True, gc=False):
    """An HTTP/2 request head, split the way ``ProxyRequest`` wants it.

    A msgspec Struct: made for every request, and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) cost more than the rest of ``parse_request``.
    """

    method: str
    path: str
    query: str
    authority: str
    host: str
    headers: HeaderList  # regular fields; cookies joined
    protocol: str | None  # ``:protocol`` of an extended CONNECT (RFC 8441)
    content_length: int | None


def parse_request(headers: Headers | HeaderList) -> H2Request:
    """Split a validated HTTP/2 request head (the codec checked the pseudo-headers).

    Raises:
        ValueError: a field is not ASCII/Latin-1 decodable or content-length is bad.
    """
    pseudo: dict[bytes, bytes] = {}
    regular: HeaderList = []
    cookies: list[bytes] = []
    host = b""
    for name, value in headers:
        if name[:1] == b":":
            pseudo[name] = value
        elif name == b"cookie":
            cookies.append(value)
        elif name == b"host":
            host = value
        else:
            regular.append((name, value))
    if cookies:  # RFC 9113 §8.2.3: one field towards HTTP/1.1
        regular.append((b"cookie", b"; ".join(cookies)))
    authority = (pseudo.get(b":authority") or host).decode("latin-1")
    target = pseudo.get(b":path", b"").decode("ascii")
    path, _, query = target.partition("?")
    length = _content_length(regular)
    protocol = pseudo.get(b":protocol")
    return H2Request(
        method=pseudo.get(b":method", b"").decode("ascii"),
        path=path,
        query=query,
        authority=authority,
        host=split_host(authority),
        headers=regular,
        protocol=protocol.decode("ascii") if protocol is not None else None,
        content_length=length,
    )


def _content_length(headers: HeaderList) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():
                raise ValueError("bad content-length")
            return int(value)
    return None


def response_headers(status: int, headers: HeaderList) -> HeaderList:
    """``:status`` plus the end-to-end fields of an HTTP/1-style response head."""
    out: HeaderList = [(b":status", b"%d" % status)]
    out += [h for h in headers if h[0] not in CONNECTION_SPECIFIC]
    return out


def trailer_headers(trailers: Headers | HeaderList) -> HeaderList:
    """Trailers without fields HTTP/2 forbids (pseudo and connection-specific)."""
    return [t for t in trailers if t[0][:1] != b":" and t[0] not in CONNECTION_SPECIFIC]


# --- requests to backends ---------------------------------------------------------------------


def request_headers(
    method: bytes, target: bytes, headers: HeaderList, *, scheme: bytes
) -> HeaderList:
    """An HTTP/1-style request head (as ``proxy`` builds it) as HTTP/2 headers.

    ``Host`` becomes ``:authority``; ``te: trailers`` is always sent, since
    gRPC servers want it and it costs nothing elsewhere.
    """
    authority = b""
    regular: HeaderList = []
    for name, value in headers:
        if name == b"host":
            authority = value
        elif name not in CONNECTION_SPECIFIC:
            regular.append((name, value))
    out: HeaderList = [(b":method", method), (b":scheme", scheme)]
    if authority:
        out.append((b":authority", authority))
    out.append((b":path", target))
    out += regular
    out.append((b"te", b"trailers"))
    return out


def response_head(
    headers: Headers | HeaderList, *, ended: bool, head_request: bool
) -> ResponseReceived:
    """An HTTP/2 response head as the ``ResponseReceived`` the proxy streams from.

    A head that ended the stream (gRPC "trailers-only") has no body, so the
    front end can send it back as one HEADERS frame again.
    """
    status = 0
    regular: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name == b":status":
            status = int(value)
        elif name[:1] != b":":
            regular.append((name, value))
    length = _content_length(regular)
    body = not (ended or head_request or status in (204, 304))
    return ResponseReceived(
        status_code=status,
        reason=b"",
        headers=tuple(regular),
        http_version=b"2",
        keep_alive=True,
        content_length=0 if ended else length,
        chunked=False,
        body_expected=body,
    )


# --- abuse accounting -------------------------------------------------------------------------


class ResetBudget:
    """Counts stream resets in a sliding window (rapid reset, CVE-2023-44487)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def spend(self, now: float) -> bool:
        """Record one reset at ``now``; True when the budget is exceeded."""
        times = self._times
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        return len(times) > self.limit


def grpc_deadline(headers: HeaderList) -> float | None:
    """A gRPC request's ``grpc-timeout`` in seconds; None for other requests or none sent."""
    grpc = False
    timeout: float | None = None
    for name, value in headers:
        if name == b"content-type":
            grpc = value.startswith(b"application/grpc")
        elif name == b"grpc-timeout":
            timeout = grpc_timeout(value)
    return timeout if grpc else None


def grpc_timeout(value: bytes) -> float | None:
    """``grpc-timeout`` (``1S``, ``250m``, at most 8 digits) in seconds; None if malformed."""
    digits, unit = value[:-1], value[-1:]
    scale = _GRPC_UNITS.get(unit)
    if scale is None or not digits.isdigit() or len(digits) > 8:
        return None
    return int(digits) * scale
