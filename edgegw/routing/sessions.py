"""Session persistence (HTTPRoute ``sessionPersistence``): pin a client to an endpoint.

The first response carries a cookie or header naming the endpoint that served
it, as an opaque token; later requests that present it go to the same
endpoint while it is still among the rule's backends. Tokens are hashes of
backend and endpoint, so nothing about the backends is revealed.

The token → endpoint table of a rule is built with the routing table
(``session_table``, held by each ``RouteMatch``), never per request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from edgegw import ir
from edgegw.proto.events import HeaderList

SessionTable = Mapping[str, tuple[ir.Backend, ir.Endpoint]]


def _token(backend: ir.Backend, endpoint: ir.Endpoint) -> str:
    key = f"{backend.name}|{endpoint.kind}|{endpoint.address}|{endpoint.port}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def session_table(rule: ir.HTTPRouteRule) -> SessionTable | None:
    """Token → (backend, endpoint) for a rule with session persistence, else None."""
    if rule.session_persistence is None:
        return None
    return {_token(b, e): (b, e) for b in rule.backends if not b.invalid for e in b.endpoints}


def sticky_lookup(
    rule: ir.HTTPRouteRule, table: SessionTable, headers: Sequence[tuple[bytes, bytes]]
) -> tuple[ir.Backend, ir.Endpoint] | None:
    """The endpoint the request's session token names, if it is still one of the rule's."""
    persistence = rule.session_persistence
    if persistence is None:
        return None
    wanted = persistence.name.lower().encode()
    token: bytes | None = None
    for name, value in headers:
        if persistence.type == "Header" and name == wanted:
            token = value
        elif persistence.type == "Cookie" and name == b"cookie":
            token = _cookie(value, persistence.name.encode()) or token
    return table.get(token.decode("latin-1")) if token else None


def _cookie(header: bytes, name: bytes) -> bytes | None:
    for part in header.split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key == name:
            return value.strip(b'"')
    return None


def persist_headers(
    rule: ir.HTTPRouteRule, backend: ir.Backend, endpoint: ir.Endpoint
) -> HeaderList:
    """The Set-Cookie (or header) that pins the client's next requests to ``endpoint``."""
    persistence = rule.session_persistence
    if persistence is None:
        return []
    token = _token(backend, endpoint).encode()
    if persistence.type == "Header":
        return [(persistence.name.lower().encode(), token)]
    cookie = persistence.name.encode() + b"=" + token + b"; Path=/; HttpOnly"
    if persistence.permanent_cookie and persistence.absolute_timeout:
        cookie += b"; Max-Age=%d" % int(persistence.absolute_timeout)
    return [(b"set-cookie", cookie)]
