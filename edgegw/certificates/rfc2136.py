"""DNS-01 through RFC 2136 dynamic updates signed with TSIG, as cert-manager's solver does.

Its own module so that dnspython (whose query machinery pulls in asyncio and
QUIC, ~0.35 s of CPU at import) loads only when an issuer has a DNS-01 solver.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import trio

from edgegw.api import certmanager as cm
from edgegw.certificates.acme import ACMEError

_TSIG_ALGORITHMS = {
    "HMACMD5": dns.tsig.HMAC_MD5,
    "HMACSHA1": dns.tsig.HMAC_SHA1,
    "HMACSHA256": dns.tsig.HMAC_SHA256,
    "HMACSHA512": dns.tsig.HMAC_SHA512,
}
_PROPAGATION_DEADLINE = 60.0


def _host_port(nameserver: str) -> tuple[str, int]:
    if nameserver.startswith("["):
        host, _, port = nameserver[1:].partition("]:")
        return host, int(port or 53)
    if nameserver.count(":") == 1:
        host, port = nameserver.split(":")
        return host, int(port)
    return nameserver, 53


class RFC2136:
    """DNS-01 through dynamic updates (RFC 2136) signed with TSIG, as cert-manager's solver."""

    def __init__(self, spec: cm.RFC2136Solver, secret: bytes) -> None:
        self.host, self.port = _host_port(spec.nameserver)
        self.keyring = None
        self.keyname = None
        self.algorithm = _TSIG_ALGORITHMS.get(spec.tsig_algorithm.upper(), dns.tsig.HMAC_MD5)
        if spec.tsig_key_name and secret:
            self.keyname = dns.name.from_text(spec.tsig_key_name)
            key = base64.b64decode(secret.strip())
            self.keyring = {self.keyname: dns.tsig.Key(self.keyname, key, self.algorithm)}

    async def _zone(self, fqdn: dns.name.Name) -> dns.name.Name:
        """The zone holding ``fqdn``: the closest enclosing name with an SOA on the server."""
        name = fqdn
        while name != dns.name.root:
            query = dns.message.make_query(name, dns.rdatatype.SOA)
            answer = await dns.asyncquery.udp(query, self.host, port=self.port, timeout=5)
            if any(r.rdtype == dns.rdatatype.SOA and r.name == name for r in answer.answer):
                return name
            name = name.parent()
        raise ACMEError(f"no zone for {fqdn} on {self.host}:{self.port}")

    async def _update(self, name: str, value: str, add: bool) -> None:
        fqdn = dns.name.from_text(f"_acme-challenge.{name.removeprefix('*.')}")
        zone = await self._zone(fqdn)
        update = dns.update.UpdateMessage(
            zone, keyring=self.keyring, keyname=self.keyname, keyalgorithm=self.algorithm
        )
        if add:
            update.add(fqdn, 60, "TXT", f'"{value}"')
        else:
            update.delete(fqdn, "TXT", f'"{value}"')
        response = await dns.asyncquery.tcp(update, self.host, port=self.port, timeout=10)
        if response.rcode() != dns.rcode.NOERROR:
            raise ACMEError(f"DNS update of {fqdn} refused: {dns.rcode.to_text(response.rcode())}")

    async def _visible(self, name: str, value: str) -> None:
        fqdn = dns.name.from_text(f"_acme-challenge.{name.removeprefix('*.')}")
        with trio.move_on_after(_PROPAGATION_DEADLINE):
            while True:
                query = dns.message.make_query(fqdn, dns.rdatatype.TXT)
                answer = await dns.asyncquery.udp(query, self.host, port=self.port, timeout=5)
                for rrset in answer.answer:
                    if any(value.encode() in b"".join(r.strings) for r in rrset):
                        return
                await trio.sleep(0.5)
        raise ACMEError(f"TXT {fqdn} did not appear on {self.host}:{self.port}")

    async def present(self, name: str, token: str, key_authorization: str) -> None:
        value = _txt_value(key_authorization)
        await self._update(name, value, add=True)
        await self._visible(name, value)

    async def cleanup(self, name: str, token: str, key_authorization: str) -> None:
        # a stale TXT record harms nothing; the next order adds its own
        with contextlib.suppress(ACMEError, OSError, dns.exception.DNSException):
            await self._update(name, _txt_value(key_authorization), add=False)


def _txt_value(key_authorization: str) -> str:
    digest = hashlib.sha256(key_authorization.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


__all__ = ["RFC2136"]
