"""What the gateway accepts as a listener certificate or CA bundle, and what it refuses."""

from __future__ import annotations

import datetime

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgegw.certs import CertificateError, load_ca_bundle, load_key_pair, validity_problem


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _self_signed(
    cn: str, *, days_from: int, days_to: int, sans: tuple[str, ...] = ()
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days_from))
        .not_valid_after(now + datetime.timedelta(days=days_to))
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_leaf_and_intermediate_load_with_their_san_names(ca: trustme.CA) -> None:
    leaf = ca.create_child_ca().issue_cert("www.example.com", "*.Example.org")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    pair = load_key_pair(chain, leaf.private_key_pem.bytes())
    assert pair.names == ("www.example.com", "*.example.org")
    assert pair.chain_pem.count(b"BEGIN CERTIFICATE") == 2
    assert pair.chain_pem.startswith(leaf.cert_chain_pems[0].bytes())
    assert pair.not_before < pair.not_after


def test_common_name_is_used_when_there_is_no_san() -> None:
    cert, key = _self_signed("legacy.example.com", days_from=-1, days_to=1)
    assert load_key_pair(cert, key).names == ("legacy.example.com",)


def test_key_of_another_certificate_is_refused(ca: trustme.CA) -> None:
    one = ca.issue_cert("one.example.com")
    two = ca.issue_cert("two.example.com")
    with pytest.raises(CertificateError, match="does not match"):
        load_key_pair(one.cert_chain_pems[0].bytes(), two.private_key_pem.bytes())


@pytest.mark.parametrize(
    ("crt", "key", "message"),
    [
        (b"Hello world\n", b"Hello world\n", "tls.crt holds no PEM certificate"),
        (
            b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            b"",
            "tls.crt is not a valid PEM certificate",
        ),
    ],
)
def test_malformed_certificate_is_refused(crt: bytes, key: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        load_key_pair(crt, key)


def test_malformed_key_is_refused(ca: trustme.CA) -> None:
    leaf = ca.issue_cert("www.example.com")
    with pytest.raises(CertificateError, match=r"tls\.key is not a valid PEM private key"):
        load_key_pair(leaf.cert_chain_pems[0].bytes(), b"Hello world\n")


def test_encrypted_key_is_refused() -> None:
    cert, key_pem = _self_signed("x.example.com", days_from=-1, days_to=1)
    key = serialization.load_pem_private_key(key_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(CertificateError, match="encrypted"):
        load_key_pair(cert, encrypted)


def test_expired_and_future_certificates_report_why() -> None:
    now = datetime.datetime.now(datetime.UTC).timestamp()
    expired = load_key_pair(*_self_signed("old.example.com", days_from=-10, days_to=-1))
    future = load_key_pair(*_self_signed("new.example.com", days_from=1, days_to=10))
    current = load_key_pair(*_self_signed("ok.example.com", days_from=-1, days_to=1))
    assert (validity_problem(expired, now) or "").startswith("the certificate expired at 20")
    assert (validity_problem(future, now) or "").startswith("the certificate is not valid before")
    assert validity_problem(current, now) is None


def test_ca_bundle_is_normalised_and_garbage_refused(ca: trustme.CA) -> None:
    other = trustme.CA()
    bundle = b"# comment\n" + ca.cert_pem.bytes() + b"\n\n" + other.cert_pem.bytes()
    clean = load_ca_bundle(bundle)
    assert clean == ca.cert_pem.bytes() + other.cert_pem.bytes()
    with pytest.raises(CertificateError, match=r"ca\.crt holds no PEM certificate"):
        load_ca_bundle(b"not a certificate")
