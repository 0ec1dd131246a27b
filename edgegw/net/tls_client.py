"""TLS towards backends: stdlib client contexts, one per BackendTLS.

Theory of operation
-------------------
Upstream connections use ``trio.SSLStream``, so the context is a stdlib
``ssl.SSLContext``. Its verify mode is fixed per BackendTLS, the CA loads from
memory (``cadata``), and only the optional client key pair goes through an
anonymous ``memfd`` (``/proc/self/fd/N``), so keys never touch the disk.

BackendTLSPolicy says: with ``subjectAltNames`` the hostname is only the SNI
and the certificate must match one of the SANs instead. The stdlib can check
only the SNI name, so such contexts turn ``check_hostname`` off (the chain is
still verified) and use an ``SSLObject`` subclass that checks the SANs right
after the handshake, failing it as a verification error. That hook works
through ``wrap_bio``, which is what ``trio.SSLStream`` uses.

Contexts are cached per BackendTLS value: an unchanged policy keeps its
context across reloads, and with it the client-side session cache.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import ssl
from typing import Any

from edgegw import ir

__all__ = ["cert_name_matches", "client_context"]


def cert_name_matches(pattern: str, name: str) -> bool:
    """RFC 6125: a certificate wildcard stands for exactly one leftmost label."""
    if pattern == name:
        return True
    if not pattern.startswith("*."):
        return False
    head, _, rest = name.partition(".")
    return bool(head) and rest == pattern[2:]


class _SANCheckedObject(ssl.SSLObject):
    """An SSLObject that, after the handshake, checks the peer against the context's SANs."""

    def do_handshake(self) -> None:
        super().do_handshake()
        ctx = self.context
        assert isinstance(ctx, _SANContext)
        if not _peer_matches(self.getpeercert() or {}, ctx.subject_alt_names):
            raise ssl.SSLCertVerificationError(
                f"backend certificate matches none of {', '.join(ctx.subject_alt_names)}"
            )


class _SANContext(ssl.SSLContext):
    """A client context verifying the peer against ``subject_alt_names``, not the SNI name.

    Works through ``wrap_bio`` (what trio.SSLStream uses), not ``wrap_socket``.
    """

    sslobject_class = _SANCheckedObject
    subject_alt_names: tuple[str, ...] = ()


def _san_context(names: tuple[str, ...]) -> _SANContext:
    ctx = _SANContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the SAN check replaces it; verify_mode stays CERT_REQUIRED
    ctx.subject_alt_names = names
    return ctx


def _peer_matches(cert: dict[str, Any], wanted: tuple[str, ...]) -> bool:
    sans: tuple[tuple[str, str], ...] = cert.get("subjectAltName", ())
    for name in wanted:
        if "://" in name:
            if ("URI", name) in sans:
                return True
            continue
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            host = name.lower().rstrip(".")
            if any(kind == "DNS" and cert_name_matches(v.lower(), host) for kind, v in sans):
                return True
            continue
        if any(kind == "IP Address" and ipaddress.ip_address(v.strip()) == ip for kind, v in sans):
            return True
    return False


def _load_key_pair_from_memory(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """Loads a key pair through an anonymous memfd: the stdlib only reads files."""
    fd = os.memfd_create("edgegw-client-cert", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as file:
            file.write(chain_pem + b"\n" + key_pem)
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=256)
def client_context(tls: ir.BackendTLS) -> ssl.SSLContext:
    """The context for TLS to a backend, cached per BackendTLS value.

    Use it with ``server_hostname=tls.hostname`` (the SNI). Without
    ``subject_alt_names`` the certificate must be valid for that hostname;
    with them, it must match one of them instead (BackendTLSPolicy).

    Raises:
        ssl.SSLError: the CA or client key pair does not load.
    """
    if tls.subject_alt_names:
        ctx: ssl.SSLContext = _san_context(tls.subject_alt_names)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.ca_pem is not None:
        ctx.load_verify_locations(cadata=tls.ca_pem.decode("ascii"))
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.client_cert_pem and tls.client_key_pem:
        _load_key_pair_from_memory(ctx, tls.client_cert_pem, tls.client_key_pem)
    if tls.alpn:
        ctx.set_alpn_protocols(list(tls.alpn))
    return ctx
