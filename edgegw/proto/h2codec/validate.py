"""Is a received header block a valid HTTP/2 message head? (RFC 9113 section 8, RFC 9110)

Every check answers a way a peer could smuggle something past a gateway that
turns HTTP/2 into HTTP/1.1: a ``:path`` or ``:authority`` with a space or a
CR/LF would become a second request line or header on the way out; a
connection-specific field would change the next hop's framing; a pseudo-header
after a regular field, twice, or in trailers would be read differently by
different implementations. A block that fails is *malformed*: the stream is
reset with PROTOCOL_ERROR (section 8.1.1), never forwarded.

Checks, per field: names are lower-case tokens (pseudo-headers one of the
known ones, before every regular field, once each); values carry no control
character (HTAB aside) and no white space at either end; ``connection``, ``keep-alive``,
``proxy-connection``, ``transfer-encoding`` and ``upgrade`` are refused, ``te``
only as ``trailers``; ``content-length`` is digits, and repeated only with one
value. Per head: see ``check_request``, ``check_response``, ``check_trailers``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from edgegw.proto.h2codec.errors import ErrorCode, MalformedMessage

HeaderList = list[tuple[bytes, bytes]]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")  # tchar, lower-case only
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*")
_TARGET = re.compile(rb"[\x21-\x7e]+")  # visible ASCII: no space, no CTL, no 8-bit
_AUTHORITY = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]+")  # no userinfo ("@")
_STATUS = re.compile(rb"[1-9][0-9][0-9]")
# RFC 9113 requires refusing NUL, CR and LF; an HTTP/1.1 backend reads any other control
# character (HTAB aside) or DEL as a broken request too, so they go as well, as nghttp2 does.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})


_CACHED_VALUE = 128  # longer values are checked every time: the cache holds no big values


def _field_fault(name: bytes, value: bytes) -> str | None:
    """Why this field is malformed in any HTTP/2 head, or None."""
    if len(value) > _CACHED_VALUE:
        return _check_field(name, value)
    return _cached_check(name, value)


def _check_field(name: bytes, value: bytes) -> str | None:
    if _CONTROL.search(value) is not None:
        return "a control character in a value"
    if value and (value[0] in b" \t" or value[-1] in b" \t"):
        return "white space around a value"
    if name[:1] == b":":
        return None
    if _TOKEN.fullmatch(name) is None or name in _CONNECTION_SPECIFIC:
        return "field name not allowed in HTTP/2"
    if name == b"te" and value != b"trailers":
        return "te other than trailers"
    if name == b"content-length" and not value.isdigit():
        return "bad content-length"
    return None


# Fields repeat on every request of a connection (and across connections): their
# verdict is cached, keyed by content (short values only, see _CACHED_VALUE).
_cached_check = lru_cache(maxsize=4096)(_check_field)


def _bad(stream_id: int, why: str) -> MalformedMessage:
    return MalformedMessage(stream_id, ErrorCode.PROTOCOL_ERROR, why)


def _split(
    stream_id: int, headers: HeaderList, allowed: frozenset[bytes]
) -> tuple[dict[bytes, bytes], int | None]:
    """Pseudo-headers by name, after the per-field checks; and the content-length."""
    pseudo: dict[bytes, bytes] = {}
    regular = False
    length: int | None = None
    for name, value in headers:
        fault = _field_fault(name, value)
        if fault is not None:
            raise _bad(stream_id, f"{name!r}: {fault}")
        if name[:1] == b":":
            if regular or name not in allowed or name in pseudo:
                raise _bad(stream_id, f"pseudo-header {name!r} misplaced, unknown or repeated")
            pseudo[name] = value
            continue
        regular = True
        if name == b"content-length":
            if length is not None and int(value) != length:
                raise _bad(stream_id, "content-length repeated with another value")
            length = int(value)
    return pseudo, length


def check_request(stream_id: int, headers: HeaderList, *, connect_protocol: bool) -> int | None:
    """Validate a request head; returns its content-length, if any.

    ``connect_protocol``: we advertised SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441).

    Raises:
        MalformedMessage: the head is malformed.
    """
    pseudo, length = _split(stream_id, headers, _REQUEST_PSEUDO)
    method = pseudo.get(b":method")
    if method is None or _METHOD.fullmatch(method) is None:
        raise _bad(stream_id, ":method missing or not a token")
    authority = pseudo.get(b":authority")
    if authority is not None and _AUTHORITY.fullmatch(authority) is None:
        raise _bad(stream_id, ":authority is not an authority")
    protocol = pseudo.get(b":protocol")
    if method == b"CONNECT" and protocol is None:  # section 8.5: a tunnel
        if authority is None or b":scheme" in pseudo or b":path" in pseudo:
            raise _bad(stream_id, "CONNECT takes :authority only")
        return length
    if protocol is not None and (
        not connect_protocol or method != b"CONNECT" or _METHOD.fullmatch(protocol) is None
    ):
        raise _bad(stream_id, ":protocol outside an extended CONNECT")
    _check_target(stream_id, pseudo, method)
    _check_host(stream_id, headers, authority)
    return length


def _check_target(stream_id: int, pseudo: dict[bytes, bytes], method: bytes) -> None:
    scheme, path = pseudo.get(b":scheme"), pseudo.get(b":path")
    if scheme is None or _SCHEME.fullmatch(scheme) is None:
        raise _bad(stream_id, ":scheme missing or malformed")
    if path is None or _TARGET.fullmatch(path) is None:
        raise _bad(stream_id, ":path missing, empty or not a request-target")
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
        raise _bad(stream_id, ":path is neither origin-form nor OPTIONS *")


def _check_host(stream_id: int, headers: HeaderList, authority: bytes | None) -> None:
    """``host`` beside ``:authority`` must say the same (RFC 9113 section 8.3.1)."""
    for name, value in headers:
        if name != b"host":
            continue
        if _AUTHORITY.fullmatch(value) is None or (authority is not None and value != authority):
            raise _bad(stream_id, "host is malformed or differs from :authority")


def check_response(stream_id: int, headers: HeaderList) -> int:
    """Validate a response head; returns its status.

    Raises:
        MalformedMessage: the head is malformed (101 included: no upgrades in HTTP/2).
    """
    pseudo, _length = _split(stream_id, headers, frozenset({b":status"}))
    status = pseudo.get(b":status")
    if status is None or _STATUS.fullmatch(status) is None or status == b"101":
        raise _bad(stream_id, ":status missing or invalid")
    return int(status)


def check_trailers(stream_id: int, headers: HeaderList) -> None:
    """Validate trailers: regular fields only.

    Raises:
        MalformedMessage: a pseudo-header or a forbidden field.
    """
    _split(stream_id, headers, frozenset())


__all__ = ["check_request", "check_response", "check_trailers"]
