"""SecurityPolicy ``extAuth.http``: ask an authorization server before forwarding.

As Envoy's ext_authz HTTP service does it: the check request has the
client's method, ``path`` + the original path and query, the original Host,
no body (``Content-Length: 0``), ``Authorization`` and the headers named in
``headersToExtAuth``, plus ``X-Forwarded-For``/``X-Forwarded-Proto`` as the
gateway computed them. A 2xx answer lets the request through, carrying the
``headersToBackend`` the server set (Authelia's ``Remote-User`` and friends);
any other answer goes back to the client as it is (Authelia's 302 to its
login page, a 401 with ``WWW-Authenticate``), its body capped at
``MAX_BODY``. When the server cannot be reached or times out: ``failOpen``
lets the request through, else the client gets 403.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from edgegw import ir
from edgegw.net.upstream import UpstreamError, UpstreamPool, UpstreamReply
from edgegw.proto.events import DataReceived, HeaderList, Headers, MessageEnded
from edgegw.proto.http1 import strip_hop_by_hop

MAX_BODY = 64 * 1024
_ALWAYS = (b"authorization",)


@dataclass
class AuthResult:
    """``status`` 0: allowed, with ``headers`` for the backend; else the answer to send."""

    status: int = 0
    headers: HeaderList = field(default_factory=list)
    body: bytes = b""
    error: bool = False  # the server could not be asked


def check_head(
    config: ir.ExtAuth,
    method: str,
    authority: str,
    target: str,
    headers: HeaderList,
    client: str,
    scheme: str,
) -> tuple[bytes, bytes, HeaderList]:
    """The check request's head (pure, for tests)."""
    wanted = set(config.headers_to_ext_auth) | set(_ALWAYS)
    out: HeaderList = [(b"host", authority.encode("latin-1"))]
    out += [(n, v) for n, v in headers if n.decode("latin-1") in wanted or n in _ALWAYS]
    out.append((b"x-forwarded-for", client.encode()))
    out.append((b"x-forwarded-proto", scheme.encode()))
    out.append((b"content-length", b"0"))
    path = config.path.rstrip("/") + target if config.path else target
    return method.encode(), path.encode("latin-1"), out


async def ask(
    pool: UpstreamPool, config: ir.ExtAuth, head: tuple[bytes, bytes, HeaderList]
) -> AuthResult:
    """Send the check; never raises for the server's failures (see ``error``)."""
    endpoint = pool.choose(config.backend) if config.backend.endpoints else None
    if endpoint is None:
        return _failed(config)
    try:
        with trio.fail_after(config.timeout):
            return await pool.exchange(
                endpoint, config.backend, head, _NoBody(), lambda rsp: _read(config, rsp)
            )
    except (UpstreamError, trio.TooSlowError):
        return _failed(config)


class _NoBody:
    """The check request carries no body (``Content-Length: 0``)."""

    length: int | None = 0
    started = False
    finished = True
    received = 0
    trailers: Headers = ()

    async def receive(self) -> bytes:
        return b""


async def _read(config: ir.ExtAuth, rsp: UpstreamReply) -> AuthResult:
    head = rsp.head
    assert head is not None
    body = bytearray()
    while True:
        event = await rsp.next_event()
        if isinstance(event, DataReceived) and len(body) < MAX_BODY:
            body += event.data[: MAX_BODY - len(body)]
        elif isinstance(event, MessageEnded):
            break
    status = head.status_code
    if 200 <= status < 300:
        wanted = set(config.headers_to_backend)
        passed = [(n, v) for n, v in head.headers if n.decode("latin-1") in wanted]
        return AuthResult(headers=passed)
    headers = [(n, v) for n, v in strip_hop_by_hop(head.headers) if n not in (b"content-length",)]
    return AuthResult(status=status, headers=headers, body=bytes(body))


def _failed(config: ir.ExtAuth) -> AuthResult:
    if config.fail_open:
        return AuthResult(error=True)
    return AuthResult(status=403, error=True)
