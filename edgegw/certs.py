"""Certificate inspection: what a Secret or ConfigMap holds, checked before it reaches a socket.

The translator must decide, without touching a socket, whether a listener's
certificateRefs are usable (the spec's ``InvalidCertificateRef``), and the TLS
code must never be handed a key that does not belong to its certificate. So
both go through this module, which only parses: no I/O, no clock (callers pass
``now``), no OpenSSL contexts.

Like Envoy Gateway, a certificate outside its validity window is treated as an
invalid reference rather than served with a warning: clients would reject it
anyway, and a clear condition beats a handshake failure nobody can see.
"""

from __future__ import annotations

import datetime

import msgspec
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import NameOID

__all__ = [
    "CertificateError",
    "KeyPair",
    "load_ca_bundle",
    "load_key_pair",
    "validity_problem",
]

_PEM = serialization.Encoding.PEM
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
_DER = serialization.Encoding.DER


class CertificateError(ValueError):
    """A certificate, key or CA bundle that cannot be used; the message says why."""


class KeyPair(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed ``kubernetes.io/tls`` Secret: the chain, its key, and who it is for."""

    chain_pem: bytes  # normalised: leaf first, one PEM block per certificate
    key_pem: bytes
    names: tuple[str, ...]  # SAN DNS names, or the subject CN when there are none
    not_before: float  # POSIX seconds
    not_after: float


def load_key_pair(cert_pem: bytes, key_pem: bytes) -> KeyPair:
    """Parse a certificate chain and its private key, and check they belong together.

    Args:
        cert_pem: the Secret's ``tls.crt``: a leaf certificate, then any intermediates.
        key_pem: the Secret's ``tls.key``: PKCS#1, PKCS#8 or SEC1, unencrypted.

    Returns:
        The chain re-encoded as clean PEM, the key as given, the leaf's DNS names and
        validity window.

    Raises:
        CertificateError: unparsable PEM, an encrypted or unsupported key, or a key
            that does not match the leaf certificate.
    """
    chain = _parse_certificates(cert_pem, "tls.crt")
    key = _parse_private_key(key_pem)
    leaf = chain[0]
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise CertificateError("tls.key does not match the certificate in tls.crt")
    return KeyPair(
        chain_pem=b"".join(c.public_bytes(_PEM) for c in chain),
        key_pem=key_pem,
        names=_dns_names(leaf),
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
    )


def validity_problem(pair: KeyPair, now: float) -> str | None:
    """Say why ``pair`` is not valid at ``now`` (POSIX seconds), or None when it is."""
    if now > pair.not_after:
        return f"the certificate expired at {_iso(pair.not_after)}"
    if now < pair.not_before:
        return f"the certificate is not valid before {_iso(pair.not_before)}"
    return None


def load_ca_bundle(pem: bytes, what: str = "ca.crt") -> bytes:
    """Parse a bundle of CA certificates and return it as clean PEM.

    Raises:
        CertificateError: the bundle holds no parsable certificate.
    """
    return b"".join(c.public_bytes(_PEM) for c in _parse_certificates(pem, what))


def _parse_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise CertificateError(f"{what} holds no PEM certificate")
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertificateError(f"{what} is not a valid PEM certificate: {exc}") from None


def _parse_private_key(pem: bytes) -> PrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise CertificateError("tls.key is encrypted; only unencrypted keys are usable") from None
    except ValueError as exc:
        raise CertificateError(f"tls.key is not a valid PEM private key: {exc}") from None
    except UnsupportedAlgorithm as exc:
        raise CertificateError(f"tls.key uses an unsupported algorithm: {exc}") from None
    return key


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(_DER, _SPKI)


def _dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        names: list[str] = []
    else:
        names = san.value.get_values_for_type(x509.DNSName)
    if names:
        return tuple(n.lower() for n in names)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return tuple(str(a.value).lower() for a in cns[:1])


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
