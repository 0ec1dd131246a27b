"""``x-forwarded-client-cert`` values built from a client certificate, as Envoy writes them.

ClientTrafficPolicy ``headers.xForwardedClientCert`` modes AppendForward and
SanitizeSet put the current hop's client certificate into the header (Envoy's
``forward_client_cert_details``). The element is ``;``-separated ``key=value``
pairs in Envoy's order: ``By`` (the first URI SAN of the gateway's own
certificate, if it has one), ``Hash`` (hex SHA-256 of the client certificate's
DER), then what ``certDetailsToAdd`` asks for, always in the order ``Cert``
(URL-encoded PEM, quoted), ``Chain`` (the chain as the client sent it, leaf
first, each URL-encoded PEM, quoted), ``Subject`` (RFC 2253 form, quoted, even
when empty), ``URI`` (one pair per URI SAN; ``URI=`` when there is none),
``DNS`` (one pair per DNS SAN). URL encoding is Envoy's: every byte but
letters, digits and ``*-._`` as ``%XX``.

``PeerCertificate`` belongs to one client connection and builds its value once
per list of details. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

#: ``certDetailsToAdd`` values in the order Envoy writes them
DETAIL_ORDER = ("Cert", "Chain", "Subject", "URI", "DNS")


class PeerCertificate:
    """The client certificate of one TLS connection (and the chain it sent)."""

    __slots__ = ("_built", "_by", "_chain", "cert")

    def __init__(
        self,
        cert: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
        local: x509.Certificate | None = None,
    ) -> None:
        self.cert = cert
        self._chain = tuple(chain) or (cert,)
        by = _sans(local, x509.UniformResourceIdentifier) if local is not None else []
        self._by = by[0] if by else ""
        self._built: dict[tuple[str, ...], bytes] = {}

    def element(self, details: tuple[str, ...]) -> bytes:
        """This hop's XFCC element with ``details`` (in ``DETAIL_ORDER``), built once."""
        found = self._built.get(details)
        if found is None:
            found = self._built[details] = ";".join(self._pairs(details)).encode("latin-1")
        return found

    def _pairs(self, details: tuple[str, ...]) -> list[str]:
        cert = self.cert
        pairs = [f"By={self._by}"] if self._by else []
        pairs.append("Hash=" + cert.fingerprint(hashes.SHA256()).hex())
        for detail in details:
            if detail == "Cert":
                pairs.append(f'Cert="{_url_pem(cert)}"')
            elif detail == "Chain":
                pairs.append('Chain="' + "".join(_url_pem(c) for c in self._chain) + '"')
            elif detail == "Subject":
                pairs.append(f'Subject="{cert.subject.rfc4514_string()}"')
            elif detail == "URI":
                uris = _sans(cert, x509.UniformResourceIdentifier)
                pairs += [f"URI={uri}" for uri in uris] or ["URI="]
            elif detail == "DNS":
                pairs += [f"DNS={name}" for name in _sans(cert, x509.DNSName)]
        return pairs


def _url_pem(cert: x509.Certificate) -> str:
    pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return quote(pem, safe="*").replace("~", "%7E")


def _sans(cert: x509.Certificate, kind: type[x509.GeneralName]) -> list[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(value) for value in extension.value.get_values_for_type(kind)]  # type: ignore[arg-type]
