"""The HTTPRoute CORS filter: which origins are allowed, and the headers that say so.

A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
is answered by the gateway itself with ``cors_preflight``'s headers; any other
request with an ``Origin`` goes to the backend and its response gets
``cors_response_headers``.

Origins are ``scheme://host[:port]``; a missing port is the scheme's default,
so ``https://a.example`` and ``https://a.example:443`` are the same origin.
A ``*`` in an allowed host is greedy to the left and may span labels
(``https://*.bar.com`` allows ``https://x.www.bar.com``); ``*`` alone allows
every origin. When credentials are allowed the spec forbids ``*`` in the
answer, so the request's own origin, method and headers are echoed instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from edgegw import ir
from edgegw.proto.events import HeaderList

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class _AllowedOrigin:
    scheme: str
    host: re.Pattern[str]
    port: int


@dataclass(frozen=True, slots=True)
class _Policy:
    any_origin: bool
    origins: tuple[_AllowedOrigin, ...]

    def allows(self, origin: str) -> bool:
        if self.any_origin:
            return True
        parsed = _parse_origin(origin)
        if parsed is None:
            return False
        scheme, host, port = parsed
        return any(
            allowed.scheme == scheme and allowed.port == port and allowed.host.fullmatch(host)
            for allowed in self.origins
        )


def _parse_origin(origin: str) -> tuple[str, str, int] | None:
    scheme, sep, authority = origin.strip().lower().partition("://")
    if not sep or not authority:
        return None
    host, port_text = authority, ""
    if authority.startswith("["):
        host, _, tail = authority.partition("]")
        host += "]"
        port_text = tail.removeprefix(":")
    elif ":" in authority:
        host, _, port_text = authority.rpartition(":")
    if not port_text:
        return scheme, host, _DEFAULT_PORTS.get(scheme, 0)
    return (scheme, host, int(port_text)) if port_text.isdigit() else None


def _allowed_origin(pattern: str) -> _AllowedOrigin | None:
    parsed = _parse_origin(pattern)
    if parsed is None:
        return None
    scheme, host, port = parsed
    regex = ".*".join(re.escape(part) for part in host.split("*"))
    return _AllowedOrigin(scheme=scheme, host=re.compile(regex), port=port)


@lru_cache(maxsize=1024)
def _policy(cors: ir.CORSFilter) -> _Policy:
    """Allowed origins parsed and compiled once per filter, not per request."""
    allowed = (_allowed_origin(origin) for origin in cors.allow_origins if origin != "*")
    return _Policy(
        any_origin="*" in cors.allow_origins,
        origins=tuple(origin for origin in allowed if origin is not None),
    )


def is_cors_preflight(method: str, origin: str | None, request_method: str | None) -> bool:
    """A CORS preflight: OPTIONS carrying Origin and Access-Control-Request-Method."""
    return method == "OPTIONS" and bool(origin) and bool(request_method)


def _allow_origin(cors: ir.CORSFilter, origin: str) -> HeaderList:
    if "*" in cors.allow_origins and not cors.allow_credentials:
        return [(b"access-control-allow-origin", b"*")]
    return [(b"access-control-allow-origin", origin.encode()), (b"vary", b"origin")]


def _listed(values: tuple[str, ...], echo: str | None, credentials: bool) -> str | None:
    """The allow-methods/allow-headers value: the list, or for ``*`` the request's own."""
    if "*" not in values:
        return ", ".join(values) or None
    if echo:
        return ", ".join(part.strip() for part in echo.split(",") if part.strip())
    return None if credentials else "*"


def _expose(cors: ir.CORSFilter) -> HeaderList:
    if "*" in cors.expose_headers and cors.allow_credentials:
        return []  # the spec forbids "*" with credentials, and there is nothing to list
    if not cors.expose_headers:
        return []
    return [(b"access-control-expose-headers", ", ".join(cors.expose_headers).encode())]


def _credentials(cors: ir.CORSFilter) -> HeaderList:
    return [(b"access-control-allow-credentials", b"true")] if cors.allow_credentials else []


def cors_preflight(
    cors: ir.CORSFilter,
    origin: str,
    request_method: str | None,
    request_headers: str | None,
) -> HeaderList | None:
    """The headers of the gateway's answer (200/204) to a preflight.

    Args:
        cors: the filter.
        origin: the Origin header.
        request_method: Access-Control-Request-Method, if sent.
        request_headers: Access-Control-Request-Headers, if sent.

    Returns:
        The CORS headers; None when the origin is not allowed, in which case
        the preflight is answered without any CORS header (the spec allows
        that or a 403) and the browser blocks the real request.
    """
    if not _policy(cors).allows(origin):
        return None
    headers = _allow_origin(cors, origin)
    methods = _listed(cors.allow_methods, request_method, cors.allow_credentials)
    if methods:
        headers.append((b"access-control-allow-methods", methods.encode()))
    allowed = _listed(cors.allow_headers, request_headers, cors.allow_credentials)
    if allowed:
        headers.append((b"access-control-allow-headers", allowed.encode()))
    headers += _expose(cors)
    headers.append((b"access-control-max-age", str(cors.max_age).encode()))
    return headers + _credentials(cors)


def cors_response_headers(cors: ir.CORSFilter, origin: str | None) -> HeaderList:
    """Headers to add to a backend's response to a cross-origin request.

    Empty when there is no Origin or it is not allowed, so the browser keeps
    the response from the page.
    """
    if not origin or not _policy(cors).allows(origin):
        return []
    return _allow_origin(cors, origin) + _credentials(cors) + _expose(cors)
