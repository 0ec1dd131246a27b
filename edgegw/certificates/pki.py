"""Keys, CSRs and local signing (``selfSigned`` and ``ca`` issuers), with ``cryptography``.

Pure functions of their arguments (the clock is passed in), so the manager
and the ACME client share them and tests can pin their output down.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgegw.translate.certificates import CertificatePlan

_CURVES: dict[int, ec.EllipticCurve] = {
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}
_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)
_BACKDATE = 60.0  # seconds of clock skew a fresh certificate tolerates


def new_key(algorithm: str, size: int | None) -> CertificateIssuerPrivateKeyTypes:
    """A private key as cert-manager makes it: RSA 2048, ECDSA P-256 or Ed25519 by default."""
    if algorithm == "ECDSA":
        return ec.generate_private_key(_CURVES[size or 256])
    if algorithm == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=size or 2048)


def key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(pem: bytes) -> CertificateIssuerPrivateKeyTypes:
    """A PEM private key that can sign (RSA, EC, Ed25519).

    Raises:
        ValueError: not such a key.
    """
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return key


def _hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _san(plan: CertificatePlan) -> x509.SubjectAlternativeName | None:
    """The DNS names; a CA without any gets no SAN (its common name is not a host name)."""
    names = plan.dns_names or ((plan.common_name,) if plan.common_name and not plan.is_ca else ())
    return x509.SubjectAlternativeName([x509.DNSName(n) for n in names]) if names else None


def _subject(plan: CertificatePlan) -> x509.Name:
    cn = plan.common_name or (plan.dns_names[0] if plan.dns_names else None)
    if cn is None or len(cn) > 64:
        return x509.Name([])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def csr_der(plan: CertificatePlan, key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """The CSR an ACME finalize sends: the plan's names in the SAN, signed by ``key``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(plan))
    san = _san(plan)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, _hash(key)).public_bytes(serialization.Encoding.DER)


def sign_local(
    plan: CertificatePlan,
    key: CertificateIssuerPrivateKeyTypes,
    now: float,
    ca: tuple[bytes, bytes] | None,
) -> bytes:
    """A leaf certificate for ``plan``, self-signed or signed by a CA.

    Args:
        plan: the names and duration.
        key: the leaf's key.
        now: POSIX seconds; the certificate is valid from a minute before.
        ca: the CA's (certificate chain PEM, key PEM), or None for selfSigned.

    Returns:
        The chain PEM: the leaf, then the CA certificate for a ``ca`` issuer.

    Raises:
        ValueError: the CA's certificate or key does not parse.
    """
    start = datetime.datetime.fromtimestamp(now - _BACKDATE, datetime.UTC)
    end = datetime.datetime.fromtimestamp(now + plan.duration, datetime.UTC)
    subject = _subject(plan)
    if ca is None:
        issuer_name, signer, issuer_chain = subject, key, b""
    else:
        issuer_cert = x509.load_pem_x509_certificates(ca[0])[0]
        issuer_name, signer = issuer_cert.subject, load_key(ca[1])
        issuer_chain = issuer_cert.public_bytes(serialization.Encoding.PEM)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=plan.is_ca, path_length=None), critical=True)
    )
    san = _san(plan)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    if plan.is_ca:
        builder = builder.add_extension(_CA_USAGE, critical=True)
    else:
        usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        builder = builder.add_extension(usage, critical=False)
    leaf = builder.sign(signer, _hash(signer))
    return leaf.public_bytes(serialization.Encoding.PEM) + issuer_chain


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
