"""BackendTrafficPolicy ``loadBalancer`` type ConsistentHash: the same key, the same endpoint.

Rendezvous hashing (highest random weight): every endpoint scores
``blake2b(key, endpoint)`` and the highest wins, so when an endpoint goes
away only the keys that were on it move, as with Envoy's ring hash. The hash
is keyed by content, never Python's per-process ``hash()``, so every worker
process and every node agree. The key is the client address (``SourceIP``),
a header's value or a cookie's; a request without the header or cookie is
balanced as usual.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from edgegw import ir

Headers = Sequence[tuple[bytes, bytes]]


def hash_key(hash_on: tuple[str, str], client: str, headers: Headers) -> str | None:
    """The value to hash for this request, or None to balance it as usual."""
    kind, name = hash_on
    if kind == "SourceIP":
        return client
    if kind == "Header":
        wanted = name.encode()
        return next((v.decode("latin-1") for n, v in headers if n == wanted), None)
    for n, v in headers:
        if n == b"cookie":
            for part in v.decode("latin-1").split(";"):
                cookie, sep, value = part.strip().partition("=")
                if sep and cookie == name:
                    return value
    return None


def consistent_pick(endpoints: Sequence[ir.Endpoint], key: str) -> ir.Endpoint:
    """The endpoint ``key`` belongs to."""
    raw = key.encode("utf-8", "replace")
    return max(endpoints, key=lambda e: _score(raw, e))


def _score(key: bytes, endpoint: ir.Endpoint) -> bytes:
    where = f"{endpoint.kind}:{endpoint.address}:{endpoint.port}".encode()
    return hashlib.blake2b(key + b"\x00" + where, digest_size=8).digest()
