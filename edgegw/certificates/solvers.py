"""The three ways edgegw proves control of a name: HTTP-01, TLS-ALPN-01 and DNS-01 (RFC 2136).

``choose`` picks a name's solver the way cert-manager does: among the
issuer's solvers whose selector matches, a ``dnsNames`` match beats the
longest matching ``dnsZones`` entry, which beats a solver without selector.
A wildcard can only be proven through DNS-01. The HTTP-01 and TLS-ALPN-01
solvers hand their answers to ``Challenges`` (which the data plane reads);
the DNS-01 solver sends a TSIG-signed dynamic update with dnspython and waits
until the name server answers with the record.
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
from edgegw.certificates.acme import ACMEError, Solver
from edgegw.certificates.challenges import Challenges
from edgegw.translate.certificates import IssuerPlan

_TSIG_ALGORITHMS = {
    "HMACMD5": dns.tsig.HMAC_MD5,
    "HMACSHA1": dns.tsig.HMAC_SHA1,
    "HMACSHA256": dns.tsig.HMAC_SHA256,
    "HMACSHA512": dns.tsig.HMAC_SHA512,
}
_PROPAGATION_DEADLINE = 60.0


class HTTP01:
    def __init__(self, challenges: Challenges) -> None:
        self.challenges = challenges

    async def present(self, name: str, token: str, key_authorization: str) -> None:
        self.challenges.add_http01(token, key_authorization)
        await self.challenges.share("http01", token, key_authorization)

    async def cleanup(self, name: str, token: str, key_authorization: str) -> None:
        self.challenges.remove_http01(token)
        await _withdraw(self.challenges, "http01", token)


class TLSALPN01:
    def __init__(self, challenges: Challenges) -> None:
        self.challenges = challenges

    async def present(self, name: str, token: str, key_authorization: str) -> None:
        self.challenges.add_tls_alpn01(name, key_authorization)
        await self.challenges.share("tlsalpn01", name.lower(), key_authorization)

    async def cleanup(self, name: str, token: str, key_authorization: str) -> None:
        self.challenges.remove_tls_alpn01(name)
        await _withdraw(self.challenges, "tlsalpn01", name.lower())


async def _withdraw(challenges: Challenges, kind: str, ident: str) -> None:
    """Withdraw a shared answer, even from a cancelled order; a left-over one harms nothing
    (it is bound to the node's lease in etcd and the token is never used again)."""
    with trio.move_on_after(2, shield=True):
        await challenges.share(kind, ident, None)


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


def _score(selector: cm.SolverSelector | None, name: str) -> int:
    """How specifically ``selector`` matches ``name``: -1 not at all, higher is better."""
    if selector is None or (not selector.dns_names and not selector.dns_zones):
        return 0
    if name in selector.dns_names:
        return 10_000
    bare = name.removeprefix("*.")
    zones = [z for z in selector.dns_zones if bare == z or bare.endswith(f".{z}")]
    return 1 + max(len(z) for z in zones) if zones else -1


def choose(issuer: IssuerPlan, challenges: Challenges, name: str) -> tuple[str, Solver]:
    """The challenge type and solver for ``name``.

    Raises:
        ACMEError: no solver of the issuer can prove this name.
    """
    assert issuer.spec.acme is not None
    best: tuple[int, int] | None = None
    for index, solver in enumerate(issuer.spec.acme.solvers):
        if name.startswith("*.") and solver.dns01 is None:
            continue
        score = _score(solver.selector, name)
        if score >= 0 and (best is None or score > best[0]):
            best = (score, index)
    if best is None:
        if not issuer.spec.acme.solvers and not name.startswith("*."):
            return _http_kind(issuer, challenges)  # no solvers: answer HTTP-01 ourselves
        raise ACMEError(f"no solver of {issuer.ref.label} can prove {name}")
    solver = issuer.spec.acme.solvers[best[1]]
    if solver.dns01 is not None:
        return "dns-01", RFC2136(solver.dns01.rfc2136, issuer.tsig_secrets[best[1]])
    return _http_kind(issuer, challenges)


def _http_kind(issuer: IssuerPlan, challenges: Challenges) -> tuple[str, Solver]:
    if issuer.challenge == "tls-alpn-01":
        return "tls-alpn-01", TLSALPN01(challenges)
    return "http-01", HTTP01(challenges)
