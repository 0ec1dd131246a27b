"""HTTP message events: what a parser saw, as immutable values.

The HTTP/1.1 parsers (``proto.http1``) and the HTTP/2 mapping
(``proto.http2``) turn bytes and h2 events into these, so code above the
framing layer never learns which protocol carried a message.
Header names are lower-case ``bytes``; values are ``bytes`` with surrounding
whitespace removed. Where names are to keep their case (ClientTrafficPolicy
``http1.preserveHeaderCase``), ``header_case`` maps a lower-case name to its
first spelling in the message, for the names that had capitals; otherwise it is
``None``. Events are frozen ``msgspec.Struct``s (built in C: a frozen dataclass
costs fifteen times as much, twice per proxied request), and nothing subclasses them.
"""

from __future__ import annotations

import msgspec

Headers = tuple[tuple[bytes, bytes], ...]
HeaderList = list[tuple[bytes, bytes]]  # headers being built or edited


class RequestReceived(msgspec.Struct, frozen=True, gc=False):
    """A request head was parsed and validated.

    ``content_length`` is ``None`` when the body is chunked or absent; a
    body-less request has ``content_length == 0`` and ``chunked`` False.
    """

    method: bytes
    target: bytes
    headers: Headers
    http_version: bytes
    keep_alive: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool
    upgrade: bool = False
    header_case: dict[bytes, bytes] | None = None


class InformationalResponseReceived(msgspec.Struct, frozen=True, gc=False):
    """A 1xx response (other than 101) arrived ahead of the final one."""

    status_code: int
    headers: Headers


class ResponseReceived(msgspec.Struct, frozen=True, gc=False):
    """A final response head was parsed and validated.

    ``content_length`` is ``None`` for chunked or close-delimited bodies;
    ``body_expected`` is False for HEAD responses, 204 and 304.
    """

    status_code: int
    reason: bytes
    headers: Headers
    http_version: bytes
    keep_alive: bool
    content_length: int | None
    chunked: bool
    body_expected: bool
    header_case: dict[bytes, bytes] | None = None


class DataReceived(msgspec.Struct, frozen=True, gc=False):
    """A piece of a message body, de-chunked."""

    data: bytes


class MessageEnded(msgspec.Struct, frozen=True, gc=False):
    """The current message is complete; ``trailers`` are those of a chunked body."""

    trailers: Headers = ()


class ConnectionClosed(msgspec.Struct, frozen=True, gc=False):
    """The peer closed its side between messages: a clean end."""


Event = (
    RequestReceived
    | InformationalResponseReceived
    | ResponseReceived
    | DataReceived
    | MessageEnded
    | ConnectionClosed
)
