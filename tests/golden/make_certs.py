"""Print the PEM material the golden cases embed (run once; outputs are pasted into cases).

The certificates are valid from 2000 to 2100 (the expired one from 1990 to
2000) so the golden outputs never change with the date; the golden test
translates with ``now`` fixed at 2025-01-01.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _cert(
    cn: str,
    sans: list[str],
    years: tuple[int, int],
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(years[0], 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(years[1], 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    return builder.sign(signer, hashes.SHA256()), key


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> str:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode() + key_pem.decode()


def main() -> None:
    ca = _cert("edgegw golden CA", [], (2000, 2100), ca=True)
    print("# CA\n" + ca[0].public_bytes(serialization.Encoding.PEM).decode())
    server = _cert("example.com", ["example.com", "*.example.com"], (2000, 2100), ca)
    print("# server (signed by CA)\n" + _pem(*server))
    client = _cert("client.example.com", ["client.example.com"], (2000, 2100), ca)
    print("# client (signed by CA)\n" + _pem(*client))
    expired = _cert("old.example.com", ["old.example.com"], (1990, 2000), ca)
    print("# expired (signed by CA)\n" + _pem(*expired))


if __name__ == "__main__":
    main()
