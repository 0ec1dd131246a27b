"""``policy/xfcc``: the XFCC element Envoy writes for a client certificate, and the modes
``ClientRequestRules`` applies with and without one."""

from __future__ import annotations

import datetime
import string
from urllib.parse import unquote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgegw import ir
from edgegw.policy.clientrequest import ClientRequestRules
from edgegw.policy.xfcc import PeerCertificate


def _cert(sans: list[x509.GeneralName], cn: str = "client-1") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


CLIENT = _cert(
    [
        x509.UniformResourceIdentifier("spiffe://example.org/fe"),
        x509.UniformResourceIdentifier("spiffe://example.org/fe2"),
        x509.DNSName("fe.example.org"),
    ]
)
SERVER = _cert([x509.UniformResourceIdentifier("spiffe://example.org/gw")], cn="gw")


def test_element_in_envoys_order() -> None:
    peer = PeerCertificate(CLIENT, (), SERVER)
    digest = CLIENT.fingerprint(hashes.SHA256()).hex()
    pairs = peer.element(("Cert", "Chain", "Subject", "URI", "DNS")).decode().split(";")
    assert pairs[:2] == ["By=spiffe://example.org/gw", f"Hash={digest}"]
    pem = CLIENT.public_bytes(serialization.Encoding.PEM).decode()
    assert unquote(pairs[2].removeprefix('Cert="').removesuffix('"')) == pem
    assert unquote(pairs[3].removeprefix('Chain="').removesuffix('"')) == pem  # the leaf alone
    assert pairs[4] == 'Subject="CN=client-1,O=Example\\, Inc."'
    assert pairs[5:] == [
        "URI=spiffe://example.org/fe",
        "URI=spiffe://example.org/fe2",
        "DNS=fe.example.org",
    ]
    assert set(pairs[2][6:-1]) <= set(string.ascii_letters + string.digits + "%*-._")


def test_no_sans_gives_an_empty_uri_and_no_by() -> None:
    bare = PeerCertificate(_cert([]))
    digest = bare.cert.fingerprint(hashes.SHA256()).hex()
    assert bare.element(("URI", "DNS")) == f"Hash={digest};URI=".encode()
    assert bare.element(()) == f"Hash={digest}".encode()


XFCC = b"x-forwarded-client-cert"
SENT = [(b"accept", b"*/*"), (XFCC, b"By=a"), (XFCC, b"By=b")]


def _rules(mode: str | None, details: tuple[str, ...] = ()) -> ClientRequestRules:
    forward = mode if mode in ("ForwardOnly", "AppendForward", "SanitizeSet") else None
    headers = ir.ClientHeaders(
        with_underscores="Allow",
        sanitize_xfcc=mode != "AlwaysForwardOnly",
        xfcc_forward=forward,  # type: ignore[arg-type]
        xfcc_details=details,
    )
    return ClientRequestRules(None, headers)


@pytest.mark.parametrize(
    ("mode", "with_cert", "without_cert"),
    [
        ("Sanitize", [], []),
        ("AlwaysForwardOnly", [b"By=a", b"By=b"], [b"By=a", b"By=b"]),
        ("ForwardOnly", [b"By=a", b"By=b"], []),
        ("AppendForward", [b"By=a,By=b,ELEMENT"], []),
        ("SanitizeSet", [b"ELEMENT"], []),
    ],
)
def test_modes(mode: str, with_cert: list[bytes], without_cert: list[bytes]) -> None:
    peer = PeerCertificate(CLIENT)
    element = peer.element(("Subject",))
    rules = _rules(mode, ("Subject",))
    got, refusal = rules.headers(list(SENT), peer)
    assert refusal is None
    assert [v for n, v in got if n == XFCC] == [v.replace(b"ELEMENT", element) for v in with_cert]
    assert (b"accept", b"*/*") in got
    got, _ = rules.headers(list(SENT), None)
    assert [v for n, v in got if n == XFCC] == without_cert
