"""Upstream BackendTLSPolicy tests judged on ``translate()``: status, and the TLS each backend gets.

Golden case ``tests/golden/backendtlspolicy-conformance.in.yaml``. Upstream
sends requests too; here the IR says what those requests meet: an invalid
policy makes its backend answer 500 (``invalid``), and of two conflicting
policies the winner's ``hostname`` is the SNI and name verified. Verified
TLS to a real backend is in ``tests/e2e/test_backend_tls.py``.
"""

from __future__ import annotations

from typing import Any

from edgegw import ir
from edgegw.translate import translate
from tests.unit.test_listenerset_conformance import has
from tests.unit.test_translate_golden import load_case

NS = "gateway-conformance-infra"


def translated() -> tuple[dict[str, Any], dict[str, ir.Backend]]:
    resources, options = load_case("backendtlspolicy-conformance")
    result = translate(resources, options)
    policies = {s.name: s.status for s in result.statuses if s.kind == "BackendTLSPolicy"}
    backends = {
        b.name.removeprefix(f"{NS}/"): b
        for port in result.model.ports
        for listener in port.listeners
        for route in listener.http_routes
        for rule in route.rules
        for b in rule.backends
    }
    return policies, backends


def conditions(policies: dict[str, Any], name: str) -> list[dict[str, Any]]:
    (ancestor,) = policies[name]["ancestors"]
    assert ancestor["ancestorRef"]["name"] == "same-namespace"
    return list(ancestor["conditions"])


def test_backendtlspolicy_invalid_ca_certificate_ref() -> None:
    policies, backends = translated()
    for name in ("nonexistent-ca-certificate-ref", "malformed-ca-certificate-ref"):
        found = conditions(policies, name)
        assert has(found, "Accepted", "False", "NoValidCACertificate")
        assert has(found, "ResolvedRefs", "False", "InvalidCACertificateRef")
        assert backends[f"backendtlspolicy-{name}-test:443"].invalid  # answered 500


def test_backendtlspolicy_invalid_kind() -> None:
    policies, backends = translated()
    found = conditions(policies, "invalid-kind")
    assert has(found, "Accepted", "False", "NoValidCACertificate")
    assert has(found, "ResolvedRefs", "False", "InvalidKind")
    assert backends["backendtlspolicy-invalid-kind-test:443"].invalid


def test_backendtlspolicy_conflict_resolution() -> None:
    policies, backends = translated()
    for kind in ("without", "with"):
        winner = conditions(policies, f"conflicted-{kind}-section-name-1")
        loser = conditions(policies, f"conflicted-{kind}-section-name-2")
        assert has(winner, "Accepted", "True", "Accepted")
        assert has(loser, "Accepted", "False", "Conflicted")
        tls = backends[f"backendtlspolicy-conflicted-{kind}-section-name-test:443"].tls
        assert tls is not None
        assert tls.hostname == "other.example.com"  # the winner's
    for name in ("not-conflicted-with-section-name", "not-conflicted-without-section-name"):
        assert has(conditions(policies, name), "Accepted", "True", "Accepted")
    for port, hostname in ((443, "other.example.com"), (8443, "abc.example.com")):
        tls = backends[f"backendtlspolicy-not-conflicted-test:{port}"].tls
        assert tls is not None
        assert tls.hostname == hostname  # sectionName's policy on 443, the Service-wide on 8443
