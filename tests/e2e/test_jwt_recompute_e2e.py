"""SecurityPolicy jwt ``recomputeRoute`` through ``edgegw run``: a rule matching a header that
only a verified claim can set, reached over HTTP/1.1 and HTTP/2 with curl (Envoy Gateway's
"JWT claim based routing")."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tests.e2e.conftest import Echo, Gateway, curl, echoed, free_port, http_gateway

pytestmark = pytest.mark.e2e
KEY = ec.generate_private_key(ec.SECP256R1())
ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: NAME, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [NAME.test]
  rules:
  - name: acme
    matches: [{path: {type: PathPrefix, value: /t}, headers: [{name: x-tenant, value: acme}]}]
    backendRefs: [{name: acme, port: 80}]
  - name: others
    matches: [{path: {type: PathPrefix, value: /t}}]
    backendRefs: [{name: others, port: 80}]
"""


def _policy(name: str, recompute: bool) -> str:
    jwks = json.dumps({"keys": [{**json.loads(ECAlgorithm.to_jwk(KEY.public_key())), "kid": "k"}]})
    return f"""\
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {name}}}]
  jwt:
    providers:
    - name: idp
      recomputeRoute: {str(recompute).lower()}
      claimToHeaders: [{{header: x-tenant, claim: tenant}}]
      localJWKS: {{type: Inline, inline: '{jwks}'}}
"""


def _token(tenant: str) -> str:
    claims = {"sub": "alice", "tenant": tenant, "exp": time.time() + 600}
    return pyjwt.encode(claims, KEY, algorithm="ES256", headers={"kid": "k"})


def _pod(port: int, protocol: str, tenant: str, *extra: str, route: str = "tenants") -> str:
    result = curl(
        "-f",
        protocol,
        "-H",
        f"Authorization: Bearer {_token(tenant)}",
        "--resolve",
        f"{route}.test:{port}:127.0.0.1",
        *extra,
        f"http://{route}.test:{port}/t",
    )
    assert result.returncode == 0, result.stderr
    return str(echoed(result.stdout)["pod"])


def test_claim_headers_choose_the_rule(gateway: Gateway, tmp_path: Path) -> None:
    echoes = [Echo(name, tmp_path) for name in ("acme", "others")]
    try:
        port = free_port()
        for echo in echoes:
            gateway.service(echo.name, echo)
        gateway.write("gateway.yaml", http_gateway(port))
        gateway.write("route.yaml", ROUTE.replace("NAME", "tenants"))
        gateway.write("plain.yaml", ROUTE.replace("NAME", "plain"))
        gateway.write("policy.yaml", _policy("tenants", True) + "---\n" + _policy("plain", False))
        gateway.start()
        for name in ("tenants", "plain"):
            status = gateway.resource("SecurityPolicy", name)["status"]
            assert status["ancestors"][0]["conditions"][0]["status"] == "True", status
        for protocol in ("--http1.1", "--http2-prior-knowledge"):
            assert _pod(port, protocol, "acme") == "acme"  # routed again on the claim
            assert _pod(port, protocol, "globex") == "others"
            # the client's own header is replaced by the claim before routing again
            assert _pod(port, protocol, "globex", "-H", "x-tenant: acme") == "others"
        # the same rules and claims without recomputeRoute: the first match stands
        assert _pod(port, "--http1.1", "acme", route="plain") == "others"
    finally:
        for echo in echoes:
            echo.process.stop()
