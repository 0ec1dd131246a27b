"""TLS termination for HTTPS/TLS listeners, and TLS origination towards backends.

Theory of operation
-------------------
Design choice: frontends terminate TLS with pyOpenSSL on memory BIOs
(``tls_stream.TLSStream``), not with the stdlib ``ssl`` module under
``trio.SSLStream``. Three things the Gateway API asks for cannot be done with
the stdlib:

- Per-listener client-certificate validation. The listener is known only once
  the SNI callback runs; the stdlib lets that callback swap the context, but
  OpenSSL's ``SSL_set_SSL_CTX`` keeps the verify mode of the *first* context,
  and the stdlib offers no per-connection ``SSL_set_verify``. pyOpenSSL has
  ``Connection.set_verify``.
- ``AllowInsecureFallback`` accepts an *invalid* client certificate, which
  needs a verify callback; the stdlib has none.
- Keys from memory: the stdlib loads key pairs only from files. pyOpenSSL takes
  ``cryptography`` objects, so keys never touch a file.

Measured on loopback (ECDSA P-256, TLS 1.3, a full handshake plus one HTTP
request per connection, ``openssl s_time -new`` clients, 2 shared cores): both
this stream and ``trio.SSLStream`` spend 1.2-1.9 ms of server CPU per
connection and serve 200-560 connections/s depending on load, equal within
the noise. A profile puts the time in the kernel's loopback ``send``, trio's
scheduler and ``SSL_do_handshake``; the BIO shuffling in Python is a few
percent.

Backends (``client_context``, in ``tls_client``) use stdlib ``ssl`` contexts,
which ``trio.SSLStream`` wants and where nothing is decided per connection.

Certificate selection, at the ClientHello (``_on_client_hello``): the SNI
picks the listener (exact hostname > longest wildcard > a listener without
hostname); no SNI, or an SNI no listener claims, gets the listener without
hostname, else the port's first listener (the client then sees a name
mismatch, which is the honest answer). Within the listener the SNI picks among
its certificates by their SAN names, else the first one. The connection then
switches to that certificate's context and to that listener's verify mode.

Reloads are cheap: contexts are cached on (certificate bytes, validation,
ALPN), so an unchanged certificate keeps its context, and the context that
sees the ClientHello is shared by every port and generation with the same
ALPN, so TLS session tickets survive reloads. On a port where any listener
validates client certificates, resumption is off: a session made on one
listener must not skip the client-certificate check of another.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Literal, cast

import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto

from edgegw import ir
from edgegw.net import tlsparams
from edgegw.net.tls_client import cert_name_matches, client_context
from edgegw.net.tls_stream import TLSStream

__all__ = [
    "ServerTLS",
    "TLSSession",
    "TLSStream",
    "accept_tls",
    "answer_tls_alpn01",
    "build_server_tls",
    "client_context",
]

log = logging.getLogger("edgegw.net.tls")

# The installed types-pyOpenSSL stubs lag pyOpenSSL (which ships its own types): what
# they lack (newer OP_* names, cryptography-typed arguments) goes through this alias.
_SSL: Any = SSL
_SERVER_OPTIONS = (
    SSL.OP_NO_COMPRESSION
    | _SSL.OP_NO_RENEGOTIATION
    | SSL.OP_CIPHER_SERVER_PREFERENCE
    | _SSL.OP_IGNORE_UNEXPECTED_EOF
)
_ALERT_GRACE = 1.0
_VerifyMode = Literal["AllowValidOnly", "AllowInsecureFallback"]


# --- names ----------------------------------------------------------------------------------


def _normalize(name: str | bytes | None) -> str | None:
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    return (name.rstrip(".").lower() or None) if name else None


# --- contexts -------------------------------------------------------------------------------


def _alpn_selector(preferred: tuple[str, ...]) -> Callable[[SSL.Connection, list[bytes]], Any]:
    wanted = [proto.encode("ascii") for proto in preferred]

    def select(_conn: SSL.Connection, offered: list[bytes]) -> Any:
        return next((proto for proto in wanted if proto in offered), SSL.NO_OVERLAPPING_PROTOCOLS)

    return select


_VERSIONS = {
    "1.0": SSL.TLS1_VERSION,
    "1.1": SSL.TLS1_1_VERSION,
    "1.2": SSL.TLS1_2_VERSION,
    "1.3": SSL.TLS1_3_VERSION,
}
_VERSION_NAMES = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}
Versions = tuple[str, str | None]  # (minimum, maximum or None), as ClientTrafficPolicy names them
DEFAULT_VERSIONS: Versions = ("1.2", None)


def listener_versions(listener: ir.Listener) -> Versions:
    """A listener's TLS versions: its ClientTrafficPolicy ``tls``, else 1.2 and up."""
    policy = listener.client_policy
    if policy is None:
        return DEFAULT_VERSIONS
    return policy.tls_min_version or "1.2", policy.tls_max_version


def listener_alpn(listener: ir.Listener, alpn: tuple[str, ...]) -> tuple[str, ...]:
    """The ALPN protocols a listener offers: its policy's ``alpnProtocols`` we speak, in order."""
    policy = listener.client_policy
    if policy is None or not policy.alpn:
        return alpn
    return tuple(p for p in policy.alpn if p in alpn)


def _base_context(
    alpn: tuple[str, ...],
    versions: Versions = DEFAULT_VERSIONS,
    params: tlsparams.Params = tlsparams.NO_PARAMS,
) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(_VERSIONS[versions[0]])
    if versions[1] is not None:
        ctx.set_max_proto_version(_VERSIONS[versions[1]])
    ctx.set_options(_SERVER_OPTIONS)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)  # idle keep-alive connections hold no buffers
    tlsparams.apply(ctx, params)
    if alpn:
        ctx.set_alpn_select_callback(_alpn_selector(alpn))
    return ctx


def _load_ca(ctx: SSL.Context, ca_pem: bytes) -> None:
    store = ctx.get_cert_store()
    assert store is not None
    for ca in x509.load_pem_x509_certificates(ca_pem):
        store.add_cert(crypto.X509.from_cryptography(ca))
        ctx.add_client_ca(ca)  # the names sent in CertificateRequest


@functools.lru_cache(maxsize=512)
def _leaf_context(
    chain_pem: bytes,
    key_pem: bytes,
    validation: ir.FrontendValidation | None,
    alpn: tuple[str, ...],
    versions: Versions = DEFAULT_VERSIONS,
    params: tlsparams.Params = tlsparams.NO_PARAMS,
) -> SSL.Context:
    """One certificate's context; cached so that reloads reuse it while the bytes are unchanged.

    Raises:
        ValueError: the PEM does not parse, or the key does not match the certificate.
    """
    chain = x509.load_pem_x509_certificates(chain_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    ctx = _base_context(alpn, versions, params)
    loader: Any = ctx
    try:
        loader.use_certificate(chain[0])
        for extra in chain[1:]:
            loader.add_extra_chain_cert(extra)
        loader.use_privatekey(key)
        ctx.check_privatekey()
        if validation is not None:
            _load_ca(ctx, validation.ca_pem)
    except (SSL.Error, TypeError) as exc:
        raise ValueError(f"unusable certificate or key: {exc}") from None
    ca = validation.ca_pem if validation else b""
    ctx.set_session_id(hashlib.sha256(chain_pem + ca + repr(alpn).encode()).digest())
    return ctx


@functools.lru_cache(maxsize=16)
def _hello_context(
    alpn: tuple[str, ...],
    resumable: bool,
    versions: Versions = DEFAULT_VERSIONS,
    params: tlsparams.Params = tlsparams.NO_PARAMS,
) -> SSL.Context:
    """The context that reads ClientHellos; it holds no certificate, the callback picks one.

    OpenSSL settles the protocol version before the SNI callback switches to
    a listener's context, so this one allows the widest range of the port's
    listeners; ``accept_tls`` then holds each listener to its own range.
    """
    ctx = _base_context(alpn, versions, params)
    ctx.set_tlsext_servername_callback(_on_client_hello)
    if not resumable:
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        ctx.set_options(SSL.OP_NO_TICKET)
    return ctx


# --- listeners and selection ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class _Served:
    """A terminating listener with one ready context per usable certificate."""

    listener: ir.Listener
    contexts: tuple[tuple[tuple[str, ...], SSL.Context], ...]  # (SAN names, context)
    verify: _VerifyMode | None

    def context_for(self, server_name: str | None) -> SSL.Context:
        if server_name:
            for wildcard_ok in (False, True):
                for names, ctx in self.contexts:
                    if any(
                        cert_name_matches(n, server_name) if wildcard_ok else n == server_name
                        for n in names
                    ):
                        return ctx
        return self.contexts[0][1]


class ServerTLS:
    """TLS termination for one TCP port, one generation: its listeners and their contexts.

    ``problems`` names the listeners left out because no certificate of theirs
    was usable (never the key material), for logs and status.
    """

    __slots__ = ("_exact", "_fallback", "_hello", "_served", "_wildcards", "problems")

    def __init__(
        self, served: list[_Served], alpn: tuple[str, ...], problems: tuple[str, ...]
    ) -> None:
        self._served = tuple(served)
        self.problems = problems
        self._exact: dict[str, _Served] = {}
        self._wildcards: list[tuple[str, _Served]] = []
        fallback: _Served | None = None
        for item in served:
            host = _normalize(item.listener.hostname)
            if host is None:
                fallback = fallback or item
            elif host.startswith("*."):
                self._wildcards.append((host[1:], item))
            else:
                self._exact.setdefault(host, item)
        self._wildcards.sort(key=lambda pair: len(pair[0]), reverse=True)
        self._fallback = fallback or (served[0] if served else None)
        resumable = all(item.verify is None for item in served)
        params = tlsparams.union([tlsparams.listener_params(item.listener) for item in served])
        self._hello = _hello_context(alpn, resumable, _widest(served), params)

    @property
    def listeners(self) -> tuple[ir.Listener, ...]:
        return tuple(item.listener for item in self._served)

    def select_listener(self, server_name: str | None) -> ir.Listener | None:
        """The listener a ClientHello with this SNI gets (``None`` only with no listeners)."""
        served = self._select(_normalize(server_name))
        return served.listener if served else None

    def _select(self, name: str | None) -> _Served | None:
        if name:
            if name in self._exact:
                return self._exact[name]
            for suffix, item in self._wildcards:
                if name.endswith(suffix) and len(name) > len(suffix):
                    return item
        return self._fallback

    def _connection(self) -> tuple[SSL.Connection, _Handshake]:
        conn = SSL.Connection(self._hello, None)
        conn.set_accept_state()
        state = _Handshake(self)
        conn.set_app_data(state)
        return conn, state


def _widest(served: list[_Served]) -> Versions:
    ranges = [listener_versions(item.listener) for item in served] or [DEFAULT_VERSIONS]
    low = min(r[0] for r in ranges)
    highs = [r[1] for r in ranges]
    return low, None if None in highs else max(h for h in highs if h is not None)


def _terminates(listener: ir.Listener) -> bool:
    tls = listener.tls
    return listener.protocol in ("HTTPS", "TLS") and tls is not None and tls.mode == "Terminate"


def _serve(listener: ir.Listener, alpn: tuple[str, ...], problems: list[str]) -> _Served | None:
    assert listener.tls is not None
    validation = listener.tls.frontend_validation
    contexts = []
    for cert in listener.tls.certificates:
        try:
            ctx = _leaf_context(
                cert.chain_pem,
                cert.key_pem,
                validation,
                listener_alpn(listener, alpn),
                listener_versions(listener),
                tlsparams.listener_params(listener),
            )
        except ValueError as exc:
            problems.append(f"{listener.key}: certificate {cert.source or '?'}: {exc}")
            continue
        contexts.append((tuple(_normalize(n) or "" for n in cert.names), ctx))
    if not contexts:
        problems.append(f"{listener.key}: no usable certificate")
        return None
    return _Served(listener, tuple(contexts), validation.mode if validation else None)


def build_server_tls(port: ir.Port, *, alpn: tuple[str, ...] = ("http/1.1",)) -> ServerTLS:
    """Builds TLS termination for a port's HTTPS and TLS-Terminate listeners.

    Passthrough listeners are left out (their bytes are relayed, not
    terminated). A listener none of whose certificates loads is left out too
    and named in ``ServerTLS.problems``; the port keeps serving the others.

    Args:
        port: the bound port and its listeners.
        alpn: protocols to offer, in the server's order of preference.

    Returns:
        The port's ServerTLS; with no usable listener, every handshake is refused.
    """
    problems: list[str] = []
    served = [_serve(ln, alpn, problems) for ln in port.listeners if _terminates(ln)]
    for problem in problems:
        log.error("TLS on port %s:%d: %s", port.address, port.port, problem)
    return ServerTLS([s for s in served if s is not None], alpn, tuple(problems))


# --- the handshake --------------------------------------------------------------------------


class _Handshake:
    """What the ClientHello callback and the verify callback learn about one connection."""

    __slots__ = ("peer_invalid", "served", "server", "server_name")

    def __init__(self, server: ServerTLS) -> None:
        self.server = server
        self.served: _Served | None = None
        self.server_name: str | None = None
        self.peer_invalid = False


def _verify_strict(conn: SSL.Connection, _cert: Any, _errno: int, _depth: int, ok: int) -> bool:
    if not ok:
        conn.get_app_data().peer_invalid = True
    return bool(ok)


def _verify_lenient(conn: SSL.Connection, _cert: Any, _errno: int, _depth: int, ok: int) -> bool:
    if not ok:
        conn.get_app_data().peer_invalid = True
    return True


_VERIFY: dict[_VerifyMode, tuple[int, Callable[..., bool]]] = {
    "AllowValidOnly": (SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify_strict),
    "AllowInsecureFallback": (SSL.VERIFY_PEER, _verify_lenient),
}


def _on_client_hello(conn: SSL.Connection) -> None:
    """Switches the connection to the selected listener's certificate and verify mode."""
    state: _Handshake = conn.get_app_data()
    state.server_name = _normalize(conn.get_servername())
    served = state.served = state.server._select(state.server_name)
    if served is None:  # accept_tls refuses such ports before any handshake
        return
    conn.set_context(served.context_for(state.server_name))
    if served.verify is not None:
        conn.set_verify(*_VERIFY[served.verify])


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TLSSession:
    """A terminated TLS connection, ready for the protocol handler.

    ``peer_verified`` is true only when the client certificate chained to the
    listener's CA; under AllowInsecureFallback an invalid one is still passed
    on, with ``peer_verified`` false.
    """

    stream: TLSStream
    listener: ir.Listener
    server_name: str | None
    alpn: str | None
    peer_certificate: x509.Certificate | None
    peer_verified: bool
    version: str
    cipher: str | None
    peer_chain: tuple[x509.Certificate, ...] = ()  # as the client sent it, leaf first
    local_certificate: x509.Certificate | None = None  # ours, when the client sent one


def _session(stream: TLSStream, state: _Handshake) -> TLSSession:
    conn = stream.connection
    assert state.served is not None
    peer: x509.Certificate | None = cast(Any, conn).get_peer_certificate(as_cryptography=True)
    chain: tuple[x509.Certificate, ...] = ()
    local: x509.Certificate | None = None
    if peer is not None:  # a server's peer chain leaves the leaf out: put it first
        sent = cast(Any, conn).get_peer_cert_chain(as_cryptography=True) or []
        chain = (peer, *(c for c in sent if c != peer))
        local = cast(Any, conn).get_certificate(as_cryptography=True)
    alpn = conn.get_alpn_proto_negotiated()
    return TLSSession(
        stream=stream,
        listener=state.served.listener,
        server_name=state.server_name,
        alpn=alpn.decode("ascii", "replace") if alpn else None,
        peer_certificate=peer,
        peer_verified=peer is not None and not state.peer_invalid,
        version=conn.get_protocol_version_name(),
        cipher=conn.get_cipher_name(),
        peer_chain=chain,
        local_certificate=local,
    )


async def accept_tls(
    stream: trio.abc.Stream,
    tls: ServerTLS,
    *,
    handshake_timeout: float = 10.0,
    received: bytes | bytearray = b"",
) -> TLSSession | None:
    """Terminates TLS on an accepted connection.

    Never raises for anything the peer does: bad TLS, a failed client
    certificate, a stall past ``handshake_timeout`` or a reset all close the
    connection (sending OpenSSL's alert when there is one) and return None.

    Args:
        stream: the accepted transport; owned by the result, or closed.
        tls: the port's current ServerTLS.
        handshake_timeout: seconds the whole handshake may take.
        received: bytes already read from ``stream`` (a peeked ClientHello).

    Returns:
        The session, or None when the connection was closed instead.
    """
    if not tls._served:
        await trio.aclose_forcefully(stream)
        return None
    conn, state = tls._connection()
    tls_stream = TLSStream(stream, conn, received)
    failure: str | None = "handshake timed out"
    with trio.move_on_after(handshake_timeout):
        try:
            await tls_stream.do_handshake()
            failure = None
        except (SSL.Error, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            failure = f"handshake failed: {exc!r}"
    if failure is None and not _version_allowed(conn, state):
        failure = "TLS version below or above the listener's ClientTrafficPolicy"
    if failure is None and state.served is not None and state.served.listener.client_policy:
        failure = tlsparams.allowed(conn, tlsparams.listener_params(state.served.listener))
    if failure is None:
        return _session(tls_stream, state)
    log.debug("TLS from %s (SNI %r): %s", _peer(stream), state.server_name, failure)
    await tls_stream.abort(_ALERT_GRACE)
    return None


async def answer_tls_alpn01(
    stream: trio.abc.Stream, ctx: SSL.Context, *, received: bytes | bytearray = b""
) -> None:
    """Complete an ACME TLS-ALPN-01 handshake (RFC 8737) with the challenge's context, then close.

    The validation authority only looks at the certificate; nothing is served.
    """
    conn = SSL.Connection(ctx, None)
    conn.set_accept_state()
    tls_stream = TLSStream(stream, conn, received)
    with trio.move_on_after(10.0):
        try:
            await tls_stream.do_handshake()
        except (SSL.Error, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("TLS-ALPN-01 handshake failed: %r", exc)
    await tls_stream.abort(_ALERT_GRACE)


def _version_allowed(conn: SSL.Connection, state: _Handshake) -> bool:
    """Whether the negotiated version is in the selected listener's range."""
    served = state.served
    if served is None or served.listener.client_policy is None:
        return True
    low, high = listener_versions(served.listener)
    got = _VERSION_NAMES.get(conn.get_protocol_version_name(), "0")
    return low <= got and (high is None or got <= high)


def _peer(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    try:
        return str(sock.getpeername()) if sock is not None else "?"
    except OSError:
        return "?"
