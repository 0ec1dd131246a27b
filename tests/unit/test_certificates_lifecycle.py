"""The certificate life cycle's decisions, without a network: renewal times, backoff, solvers.

Also the challenge answers the data plane looks up, and the store's file modes.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import msgspec
import pytest

from edgegw import api
from edgegw.api import certmanager as cm
from edgegw.certificates import pki
from edgegw.certificates.acme import ACMEError
from edgegw.certificates.challenges import Challenges
from edgegw.certificates.manager import CertificateManager
from edgegw.certificates.rfc2136 import RFC2136
from edgegw.certificates.solvers import HTTP01, TLSALPN01, choose
from edgegw.certificates.state import CertificateState, renewal_time
from edgegw.certificates.store import CertificateStore, Issued, request_digest
from edgegw.certs import KeyPair
from edgegw.config.decode import decode
from edgegw.config.parse import parse
from edgegw.translate.certificates import CertificatePlan, IssuerPlan, IssuerRef

REF = IssuerRef(kind="ClusterIssuer", namespace="", name="le")
PLAN = CertificatePlan(
    namespace="default", name="web", secret_name="web-tls", dns_names=("a.example.com",),
    issuer=REF, origin="Certificate",
)  # fmt: skip


def _pair(not_before: float, not_after: float) -> KeyPair:
    return KeyPair(chain_pem=b"", key_pem=b"", names=(), not_before=not_before, not_after=not_after)


def test_renewal_at_two_thirds_or_renew_before() -> None:
    pair = _pair(0, 90 * 86400)
    assert renewal_time(PLAN, pair) == 60 * 86400
    early = msgspec.structs.replace(PLAN, renew_before=30 * 86400 + 1)
    assert renewal_time(early, pair) == 60 * 86400 - 1
    too_long = msgspec.structs.replace(PLAN, renew_before=100 * 86400)  # cert-manager: ignored
    assert renewal_time(too_long, pair) == 60 * 86400
    percent = msgspec.structs.replace(PLAN, renew_before_percentage=10)
    assert renewal_time(percent, pair) == 81 * 86400


def test_due_now_without_a_certificate_or_when_the_request_changed() -> None:
    now = 1000.0
    assert CertificateState(plan=PLAN).due(now) == now
    state = CertificateState(plan=PLAN, pair=_pair(0, 3000), request=request_digest(PLAN))
    assert state.due(now) == 2000
    more_names = msgspec.structs.replace(PLAN, dns_names=("a.example.com", "b.example.com"))
    assert CertificateState(plan=more_names, pair=state.pair, request=state.request).due(now) == now


def test_failures_back_off_exponentially_with_jitter_and_retry_after(tmp_path: Path) -> None:
    manager = CertificateManager(CertificateStore(tmp_path), Challenges(), on_issued=lambda: None)
    state = CertificateState(plan=PLAN)
    delays = []
    for _ in range(4):
        manager._failed(state, "boom", None)
        delays.append(state.next_attempt - time.time())
    for attempt, delay in enumerate(delays):
        assert 5 * 2**attempt * 0.79 <= delay <= 5 * 2**attempt * 1.21
    manager._failed(state, "rate limited", 7200)
    assert state.next_attempt - time.time() > 7100  # the server's Retry-After wins
    assert state.due(time.time()) == state.next_attempt


def _issuer(*solvers: cm.ACMESolver, challenge: str = "http-01") -> IssuerPlan:
    spec = cm.IssuerSpec(
        acme=cm.ACMEIssuer(
            server="https://acme.example/dir",
            private_key_secret_ref=cm.SecretKeySelector(name="k"),
            solvers=solvers,
        )
    )
    return IssuerPlan(ref=REF, spec=spec, challenge=challenge, tsig_secrets=(b"",) * len(solvers))  # type: ignore[arg-type]


DNS = cm.ACMESolver(
    selector=cm.SolverSelector(dns_zones=("example.com",)),
    dns01=cm.DNS01Solver(rfc2136=cm.RFC2136Solver(nameserver="127.0.0.1:5353")),
)
HTTP = cm.ACMESolver(http01=cm.HTTP01Solver())
ONE_NAME = cm.ACMESolver(
    selector=cm.SolverSelector(dns_names=("www.example.com",)), http01=cm.HTTP01Solver()
)


def test_solver_choice_follows_cert_manager_specificity() -> None:
    issuer = _issuer(HTTP, DNS, ONE_NAME)
    challenges = Challenges()
    kind, solver = choose(issuer, challenges, "www.example.com")  # dnsNames beats dnsZones
    assert (kind, type(solver)) == ("http-01", HTTP01)
    kind, solver = choose(issuer, challenges, "api.example.com")  # the zone beats no selector
    assert (kind, type(solver)) == ("dns-01", RFC2136)
    kind, _ = choose(issuer, challenges, "other.org")
    assert kind == "http-01"
    kind, _ = choose(issuer, challenges, "*.example.com")
    assert kind == "dns-01"
    with pytest.raises(ACMEError, match="no solver"):
        choose(_issuer(HTTP), challenges, "*.example.com")  # wildcards need DNS-01
    kind, solver = choose(_issuer(HTTP, challenge="tls-alpn-01"), challenges, "a.example.com")
    assert (kind, type(solver)) == ("tls-alpn-01", TLSALPN01)


TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"


def test_http01_answers_only_known_tokens_shared_through_files(tmp_path: Path) -> None:
    ordering, other = Challenges(tmp_path), Challenges(tmp_path)
    ordering.add_http01(TOKEN, f"{TOKEN}.thumb")
    path = f"/.well-known/acme-challenge/{TOKEN}"
    assert ordering.answer_http01(path) == f"{TOKEN}.thumb".encode()
    assert other.answer_http01(path) == f"{TOKEN}.thumb".encode()  # another worker
    assert stat.S_IMODE((tmp_path / TOKEN).stat().st_mode) == 0o600
    for bad in ("/.well-known/acme-challenge/../../etc/passwd", "/.well-known/acme-challenge/x",
                "/index.html", f"/.well-known/acme-challenge/{TOKEN}/.."):  # fmt: skip
        assert other.answer_http01(bad) is None
    ordering.remove_http01(TOKEN)
    assert other.answer_http01(path) is None


def test_tls_alpn01_only_for_acme_tls_alone() -> None:
    challenges = Challenges()
    challenges.add_tls_alpn01("a.example.com", "token.thumb")
    assert challenges.alpn_context("a.example.com", ("acme-tls/1",)) is not None
    assert challenges.alpn_context("A.example.com.", ("acme-tls/1",)) is not None
    assert challenges.alpn_context("a.example.com", ("h2", "acme-tls/1")) is None
    assert challenges.alpn_context("b.example.com", ("acme-tls/1",)) is None
    assert challenges.alpn_context(None, ("acme-tls/1",)) is None


def test_store_keeps_certificates_private_and_reloads_them(tmp_path: Path) -> None:
    store = CertificateStore(tmp_path / "certificates")
    key = pki.new_key("ECDSA", None)
    chain = pki.sign_local(PLAN, key, time.time(), None)
    info = Issued(request=request_digest(PLAN), issuer="x", not_before=0, not_after=1)
    store.save("default", "web-tls", chain, pki.key_pem(key), info)
    for path in (tmp_path / "certificates").rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    loaded = store.load("default", "web-tls")
    assert loaded is not None
    assert loaded[0].names == ("a.example.com",)
    assert loaded[1] == info
    assert set(store.load_all()) == {("default", "web-tls")}
    with pytest.raises(ValueError, match="unusable name"):
        store.save("../etc", "x", chain, b"", info)


SITE = """\
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: self}
spec: {selfSigned: {}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, annotations: {cert-manager.io/issuer: self}}
spec:
  gatewayClassName: edgegw
  listeners:
  - {name: s, protocol: HTTPS, port: 443, hostname: a.example.com,
     tls: {certificateRefs: [{name: web-tls}]}}
---
apiVersion: v1
kind: Secret
metadata: {name: web-tls}
type: kubernetes.io/tls
data: {tls.crt: "", tls.key: ""}
"""


def _resources(text: str) -> api.Resources:
    return api.build_resources([decode(d) for d in parse("site.yaml", text)])


def test_issued_certificates_replace_their_secret_only_while_planned(tmp_path: Path) -> None:
    store = CertificateStore(tmp_path)
    key = pki.new_key("ECDSA", None)
    plan = msgspec.structs.replace(PLAN, secret_name="web-tls")
    info = Issued(request=request_digest(plan), issuer="x", not_before=0, not_after=1)
    store.save(
        "default", "web-tls", pki.sign_local(plan, key, time.time(), None), pki.key_pem(key), info
    )
    manager = CertificateManager(store, Challenges(), on_issued=lambda: None)

    resources, planned, warnings = manager.resolve(_resources(SITE.replace('""', '"eA=="')))
    (secret,) = resources.secrets
    assert secret.data["tls.key"].startswith(b"-----BEGIN PRIVATE KEY")
    assert [c.secret_name for c in planned.certificates] == ["web-tls"]
    assert warnings == [
        "Secret default/web-tls in site.yaml is replaced by the certificate edgegw issued for it"
    ]

    without = SITE.replace("annotations: {cert-manager.io/issuer: self}", "")
    resources, planned, warnings = manager.resolve(_resources(without.replace('""', '"eA=="')))
    assert planned.certificates == ()
    assert resources.secrets[0].data["tls.key"] == b"x"  # the DIR Secret is back
    assert warnings == []
