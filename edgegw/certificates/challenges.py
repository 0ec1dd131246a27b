"""Pending ACME challenges that the data plane answers: HTTP-01 tokens, TLS-ALPN-01 certificates.

The ACME client adds an answer before telling the server to validate and
removes it after; the data plane only looks answers up, at one place each:
``answer_http01`` at the start of an HTTP request on a plain-HTTP port, and
``alpn_context`` when a ClientHello offers ``acme-tls/1`` alone (RFC 8737
§3). With ``--workers N`` the validation request may reach any worker, so
HTTP-01 and TLS-ALPN-01 answers are also written under
``STATE_DIR/certificates/http01/`` and ``tlsalpn01/`` and looked up there
when not held in memory. Under ``--cluster`` the server may reach another
node: the solvers also `share` each answer through ``shared`` (etcd, see
`edgegw.certificates.coordination`), and a lookup that finds nothing here
reads the node's copy of etcd, still without waiting.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier
from OpenSSL import SSL

from edgegw.certificates.coordination import SharedAnswers
from edgegw.certificates.store import write_private

log = logging.getLogger("edgegw.certificates")

HTTP01_PREFIX = "/.well-known/acme-challenge/"
ACME_TLS_ALPN = b"acme-tls/1"
_ACME_IDENTIFIER = ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737 §6.1
_MAX_PENDING = 1000


class Challenges:
    """The answers currently offered; one per process, shared by every port."""

    def __init__(self, shared_dir: Path | None = None) -> None:
        self._http01: dict[str, bytes] = {}
        self._alpn: dict[str, tuple[str, SSL.Context]] = {}  # name → (key authorization, ctx)
        self._shared = shared_dir
        self.shared: SharedAnswers | None = None  # set under --cluster

    async def share(self, kind: str, ident: str, value: str | None) -> None:
        """Offer (or, with None, withdraw) an answer to the other nodes of a cluster."""
        if self.shared is None:
            return
        if value is None:
            await self.shared.delete(kind, _ident(kind, ident))
        else:
            await self.shared.put(kind, _ident(kind, ident), value.encode())

    def mirror(self, kind: str, ident: str, value: bytes | None) -> None:
        """Put another node's answer where this node's other workers look (``--workers N``).

        ``ident`` is the key part `share` gave it: a token, or a TLS-ALPN-01 name's digest.
        """
        if self._shared is None:
            return
        if kind == "http01" and _usable(kind, ident):
            path = self._shared / ident
        elif kind == "tlsalpn01" and len(ident) == 64 and ident.isalnum():
            path = self._shared.with_name("tlsalpn01") / ident
        else:
            return
        try:
            if value is None:
                path.unlink(missing_ok=True)
            else:
                write_private(path, value[:1024])
        except OSError as exc:
            log.warning("cannot keep a challenge answer for the other workers: %s", exc)

    def _from_cluster(self, kind: str, ident: str) -> bytes | None:
        if self.shared is None or not _usable(kind, ident):
            return None
        found = self.shared.get(kind, _ident(kind, ident))
        return found[:1024] if found is not None else None

    # --- HTTP-01 --------------------------------------------------------------------------

    def add_http01(self, token: str, key_authorization: str) -> None:
        if len(self._http01) >= _MAX_PENDING:
            raise RuntimeError("too many pending HTTP-01 challenges")
        self._http01[token] = key_authorization.encode()
        path = self._shared_path(token)
        if path is not None:
            write_private(path, key_authorization.encode())

    def remove_http01(self, token: str) -> None:
        self._http01.pop(token, None)
        path = self._shared_path(token)
        if path is not None:
            path.unlink(missing_ok=True)

    def answer_http01(self, path: str) -> bytes | None:
        """The key authorization for ``/.well-known/acme-challenge/<token>``, or None."""
        if not path.startswith(HTTP01_PREFIX):
            return None
        token = path[len(HTTP01_PREFIX) :]
        found = self._http01.get(token)
        if found is not None:
            return found
        shared = self._shared_path(token)
        if shared is not None:
            with contextlib.suppress(OSError):
                return shared.read_bytes()[:1024]
        return self._from_cluster("http01", token)

    def _shared_path(self, token: str) -> Path | None:
        if self._shared is None or not token.replace("-", "").replace("_", "").isalnum():
            return None
        if not 16 <= len(token) <= 128:
            return None
        return self._shared / token

    # --- TLS-ALPN-01 ----------------------------------------------------------------------

    def add_tls_alpn01(self, name: str, key_authorization: str) -> None:
        """Serve RFC 8737's self-signed certificate for ``name`` to ``acme-tls/1`` hellos."""
        if len(self._alpn) >= _MAX_PENDING:
            raise RuntimeError("too many pending TLS-ALPN-01 challenges")
        name = name.lower()
        self._alpn[name] = (key_authorization, _alpn_context(name, key_authorization))
        path = self._alpn_path(name)
        if path is not None:
            write_private(path, key_authorization.encode())

    def remove_tls_alpn01(self, name: str) -> None:
        self._alpn.pop(name.lower(), None)
        path = self._alpn_path(name.lower())
        if path is not None:
            path.unlink(missing_ok=True)

    def alpn_context(self, server_name: str | None, alpn: tuple[str, ...]) -> SSL.Context | None:
        """The challenge context for a ClientHello offering ``acme-tls/1`` alone, else None.

        Another worker's challenge is found through its file; the certificate is
        rebuilt from the key authorization (any key will do: only the digest in
        the acmeIdentifier extension is checked).
        """
        if alpn != ("acme-tls/1",) or not server_name:
            return None
        name = server_name.rstrip(".").lower()
        path = self._alpn_path(name)
        try:
            shared = path.read_bytes()[:1024].decode() if path is not None else None
        except (OSError, UnicodeDecodeError):
            shared = None
        if shared is None:
            clustered = self._from_cluster("tlsalpn01", name)
            shared = clustered.decode(errors="replace") if clustered is not None else None
        held = self._alpn.get(name)
        if held is not None and shared in (None, held[0]):
            return held[1]
        if shared is None or len(self._alpn) >= _MAX_PENDING:
            return None
        self._alpn[name] = (shared, _alpn_context(name, shared))
        return self._alpn[name][1]

    def _alpn_path(self, name: str) -> Path | None:
        if self._shared is None or not name or len(name) > 253:
            return None
        digest = hashlib.sha256(name.encode()).hexdigest()
        return self._shared.with_name("tlsalpn01") / digest


def _usable(kind: str, ident: str) -> bool:
    """Whether a token or name from a request may be looked up at all (bounded, plain)."""
    if kind == "http01":
        return 16 <= len(ident) <= 128 and ident.replace("-", "").replace("_", "").isalnum()
    return 0 < len(ident) <= 253


def _ident(kind: str, ident: str) -> str:
    """The key part of an answer: the token, or the digest of a TLS-ALPN-01 name."""
    return hashlib.sha256(ident.encode()).hexdigest() if kind == "tlsalpn01" else ident


def _alpn_context(name: str, key_authorization: str) -> SSL.Context:
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode()).digest()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(_ACME_IDENTIFIER, b"\x04\x20" + digest), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    loader: object = ctx
    loader.use_certificate(cert)  # type: ignore[attr-defined]
    loader.use_privatekey(key)  # type: ignore[attr-defined]
    ctx.set_alpn_select_callback(lambda _conn, offered: ACME_TLS_ALPN)
    return ctx
