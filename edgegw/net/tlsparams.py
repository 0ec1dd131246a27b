"""A listener's ClientTrafficPolicy ``tls.ciphers``, ``ecdhCurves`` and ``signatureAlgorithms``.

Theory of operation
-------------------
OpenSSL settles the cipher suite and the key-exchange group from the
context a connection was created with, before the SNI callback switches to
the selected listener's context; only the signature algorithms travel with
the switched context (they live with the certificate). So, as for TLS
versions in ``net/tls.py``:

- each listener's own context gets its lists (signature algorithms take
  effect from there);
- the port's ClientHello context offers the union of its listeners' lists
  (a listener without a list contributes edgegw's default);
- after the handshake, ``allowed`` holds the selected listener to its own
  lists: a cipher (TLS 1.2 and below; TLS 1.3 suites are not configurable,
  as in Envoy) or group outside them ends the connection.

Curves and signature algorithms go through OpenSSL's own list setters
(``SSL_CTX_set1_groups_list``/``set1_sigalgs_list``), which pyOpenSSL binds
but does not wrap.
"""

from __future__ import annotations

import functools
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import lib as _lib

from edgegw import ir

DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
# ``SSL_get0_group_name`` spells groups as OpenSSL does; policies as Envoy does
_GROUP_NAMES = {
    "X25519": "x25519",
    "X448": "x448",
    "P-256": "secp256r1",
    "P-384": "secp384r1",
    "P-521": "secp521r1",
}
Params = tuple[str | None, str | None, str | None]  # ciphers, curves, signature algorithms
NO_PARAMS: Params = (None, None, None)


def listener_params(listener: ir.Listener) -> Params:
    """The listener's TLS lists from its ClientTrafficPolicy; None where it sets none."""
    policy = listener.client_policy
    if policy is None:
        return NO_PARAMS
    return policy.tls_ciphers, policy.tls_curves, policy.tls_signature_algorithms


def apply(ctx: SSL.Context, params: Params) -> None:
    """Set the lists on a context (the default ciphers where none is given).

    Raises:
        ValueError: OpenSSL refused a list.
    """
    ciphers, curves, sigalgs = params
    try:
        ctx.set_cipher_list((ciphers or DEFAULT_CIPHERS).encode())
    except SSL.Error as exc:
        raise ValueError(f"tls.ciphers: {exc}") from None
    raw: Any = ctx._context  # the binding pyOpenSSL keeps for its own calls
    if curves and _lib.SSL_CTX_set1_curves_list(raw, curves.encode()) != 1:
        raise ValueError(f"tls.ecdhCurves: OpenSSL refused {curves!r}")
    if sigalgs and _lib.SSL_CTX_set1_sigalgs_list(raw, sigalgs.encode()) != 1:
        raise ValueError(f"tls.signatureAlgorithms: OpenSSL refused {sigalgs!r}")


def union(params: list[Params]) -> Params:
    """What the port's ClientHello context offers: every listener's lists together.

    Ciphers default to edgegw's list; curves and signature algorithms to
    OpenSSL's (None), which a listener without a list of its own keeps.
    """
    if not params:
        return NO_PARAMS
    ciphers = _joined([p[0] or DEFAULT_CIPHERS for p in params])
    curves = None if any(p[1] is None for p in params) else _joined([p[1] or "" for p in params])
    sigalgs = None if any(p[2] is None for p in params) else _joined([p[2] or "" for p in params])
    return (None if ciphers == DEFAULT_CIPHERS else ciphers), curves, sigalgs


def _joined(lists: list[str]) -> str:
    return ":".join(dict.fromkeys(name for item in lists for name in item.split(":") if name))


def allowed(conn: SSL.Connection, params: Params) -> str | None:
    """Why the negotiated cipher or group is outside ``params``; None when it is inside."""
    ciphers, curves, _ = params
    if ciphers is not None and conn.get_protocol_version_name() != "TLSv1.3":
        got = conn.get_cipher_name()
        if got not in _cipher_names(ciphers):
            return f"cipher {got} is not in the listener's tls.ciphers"
    if curves is not None:
        group = _group_name(conn)
        wanted = {_GROUP_NAMES.get(name, name) for name in curves.split(":")}
        if group is not None and group not in wanted:
            return f"group {group} is not in the listener's tls.ecdhCurves"
    return None


@functools.lru_cache(maxsize=64)
def _cipher_names(ciphers: str) -> frozenset[str]:
    """The suites an OpenSSL cipher list expands to."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_cipher_list(ciphers.encode())
    return frozenset(SSL.Connection(ctx, None).get_cipher_list())


def _group_name(conn: SSL.Connection) -> str | None:
    getter: Any = getattr(conn, "get_group_name", None)
    try:
        return getter() if getter is not None else None
    except NotImplementedError:  # an OpenSSL without SSL_get0_group_name
        return None
