"""Golden tests of ``plan_certificates``: ``tests/golden/certificates/<case>.in.yaml`` → out.

Same conventions as ``test_translate_golden`` (``@pki/NAME`` inlines PEM,
``--update-golden`` rewrites the outputs, PEM bytes appear only as a digest),
plus the decode-time checks of cert-manager's YAML: errors name file, line
and field.
"""

from __future__ import annotations

import pytest
import yaml

from edgegw.config.decode import decode
from edgegw.config.parse import parse
from edgegw.errors import ConfigError
from edgegw.translate.certificates import plan_certificates
from tests.unit.test_translate_golden import GOLDEN, _updating, load_case, plain

CASES = sorted(p.name.removesuffix(".in.yaml") for p in (GOLDEN / "certificates").glob("*.in.yaml"))


def render(case: str) -> str:
    resources, _ = load_case(f"certificates/{case}")
    plan = plan_certificates(resources)
    return yaml.safe_dump(plain(plan), sort_keys=False, width=100, allow_unicode=True)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, request: pytest.FixtureRequest) -> None:
    got = render(case)
    out = GOLDEN / "certificates" / f"{case}.out.yaml"
    if _updating(request.config):
        out.write_text(got)
    assert out.exists(), f"no {out.name}; run with --update-golden and review it"
    assert got == out.read_text()


def test_plan_is_deterministic() -> None:
    for case in CASES:
        resources, _ = load_case(f"certificates/{case}")
        assert plan_certificates(resources) == plan_certificates(resources)


def _error(text: str) -> ConfigError:
    (doc,) = parse("certs.yaml", text)
    with pytest.raises(ConfigError) as info:
        decode(doc)
    return info.value


GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
  annotations:
    cert-manager.io/issuer: ca
    {key}: "{value}"
spec:
  gatewayClassName: edgegw
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
"""


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cert-manager.io/duration", "90 days", "invalid duration"),
        ("cert-manager.io/renew-before", "1d", "invalid duration"),
        ("cert-manager.io/private-key-algorithm", "DSA", "must be RSA, ECDSA or Ed25519"),
        ("cert-manager.io/cluster-issuer", "le", "cannot be set together"),
        ("cert-manager.io/issuer-kind", "Foo", "must be Issuer or ClusterIssuer"),
    ],
)
def test_gateway_annotation_errors_name_file_line_field(key: str, value: str, message: str) -> None:
    error = _error(GATEWAY.format(key=key, value=value))
    assert (error.file, error.line, error.field) == ("certs.yaml", 7, f"metadata.annotations.{key}")
    assert message in error.message


ISSUER = """\
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: le}
spec:
  acme:
    server: https://acme.example/dir
    privateKeySecretRef: {name: le-account}
    solvers:
    - dns01:
        cloudflare: {email: me@example.com}
"""


def test_unsupported_solver_is_an_error_at_its_line() -> None:
    error = _error(ISSUER)
    assert (error.line, error.field) == (10, "spec.acme.solvers[0].dns01.cloudflare")
    assert "unknown field" in error.message


def test_certificate_needs_a_name_and_a_valid_duration() -> None:
    base = (
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: c}\nspec:\n"
        "  secretName: c\n  issuerRef: {name: ca}\n"
    )
    assert _error(base).field == "spec.dnsNames"
    error = _error(base + "  dnsNames: [a.example]\n  duration: 30m\n")
    assert (error.line, error.field) == (8, "spec.duration")
    assert "at least 1h" in error.message
    error = _error(base + "  dnsNames: [a.example]\n  privateKey: {algorithm: ECDSA, size: 2048}\n")
    assert error.field == "spec.privateKey.size"


def test_issuer_needs_exactly_one_type() -> None:
    text = "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: i}\nspec: {}\n"
    error = _error(text)
    assert error.field == "spec"
    assert "exactly one of acme, selfSigned and ca" in error.message
