"""The three ways edgegw proves control of a name: HTTP-01, TLS-ALPN-01 and DNS-01 (RFC 2136).

``choose`` picks a name's solver the way cert-manager does: among the
issuer's solvers whose selector matches, a ``dnsNames`` match beats the
longest matching ``dnsZones`` entry, which beats a solver without selector.
A wildcard can only be proven through DNS-01. The HTTP-01 and TLS-ALPN-01
solvers hand their answers to ``Challenges`` (which the data plane reads);
the DNS-01 solver (``rfc2136.py``, loaded only when an issuer uses it, since
dnspython's query machinery costs a third of a second at start) sends a
TSIG-signed dynamic update and waits until the name server answers with the
record.
"""

from __future__ import annotations

import trio

from edgegw.api import certmanager as cm
from edgegw.certificates.acme import ACMEError, Solver
from edgegw.certificates.challenges import Challenges
from edgegw.translate.certificates import IssuerPlan


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
        from edgegw.certificates.rfc2136 import RFC2136  # dnspython loads only when used

        return "dns-01", RFC2136(solver.dns01.rfc2136, issuer.tsig_secrets[best[1]])
    return _http_kind(issuer, challenges)


def _http_kind(issuer: IssuerPlan, challenges: Challenges) -> tuple[str, Solver]:
    if issuer.challenge == "tls-alpn-01":
        return "tls-alpn-01", TLSALPN01(challenges)
    return "http-01", HTTP01(challenges)
