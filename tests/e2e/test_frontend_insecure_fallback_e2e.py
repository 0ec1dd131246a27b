"""GatewayFrontendClientCertificateValidationInsecureFallback through ``edgegw run`` with curl.

The upstream manifest: a default AllowInsecureFallback validation and a
per-port one on 8443 (another CA), two HTTPS listeners. The Gateway says
InsecureFrontendValidationMode=True/ConfigurationChanged, and on each port a
client with the matching certificate, with the other port's certificate and
with none all get through.
"""

from __future__ import annotations

import base64
from pathlib import Path

import trustme

from tests.e2e.conftest import GATEWAY_CLASS, Echo, Gateway, curl, echoed, free_port
from tests.e2e.test_https import tls_secret


def config(default_port: int, per_port: int, default_ca: bytes, per_port_ca: bytes) -> str:
    def ca_map(name: str, pem: bytes) -> str:
        return f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}, namespace: default}}
binaryData: {{ca.crt: {base64.b64encode(pem).decode()}}}
"""

    def validation(name: str) -> str:
        return (
            "{validation: {mode: AllowInsecureFallback, "
            f'caCertificateRefs: [{{kind: ConfigMap, group: "", name: {name}}}]}}}}'
        )

    cert = "{certificateRefs: [{name: tls-validity-checks-certificate}]}"
    return (
        GATEWAY_CLASS
        + f"""\
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: client-validation-insecure-fallback, namespace: default}}
spec:
  gatewayClassName: edgegw
  tls:
    frontend:
      default: {validation("tls-validity-checks-ca-certificate")}
      perPort:
      - {{port: {per_port}, tls: {validation("tls-validity-checks-per-port-ca-certificate")}}}
  listeners:
  - {{name: https, port: {default_port}, protocol: HTTPS, tls: {cert}}}
  - {{name: https-with-hostname, port: {per_port}, hostname: second-example.org,
     protocol: HTTPS, tls: {cert}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: client-cert-validation-insecure-fallback-test}}
spec:
  parentRefs: [{{name: client-validation-insecure-fallback, sectionName: https}}]
  hostnames: [example.org]
  rules: [{{backendRefs: [{{name: infra-backend-v1, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: client-cert-validation-insecure-fallback-test-no-hostname}}
spec:
  parentRefs: [{{name: client-validation-insecure-fallback, sectionName: https-with-hostname}}]
  rules: [{{backendRefs: [{{name: infra-backend-v2, port: 80}}]}}]
---
{ca_map("tls-validity-checks-ca-certificate", default_ca)}---
{ca_map("tls-validity-checks-per-port-ca-certificate", per_port_ca)}"""
    )


def client_files(tmp: Path, name: str, ca: trustme.CA) -> list[str]:
    issued = ca.issue_cert(f"{name}.client.example")
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return ["--cert", str(cert), "--key", str(key)]


def test_gateway_frontend_client_certificate_validation_insecure_fallback(
    gateway: Gateway, echoes: dict[str, Echo], tmp_path: Path
) -> None:
    server_ca, default_ca, per_port_ca = trustme.CA(), trustme.CA(), trustme.CA()
    ca_file = tmp_path / "server-ca.pem"
    server_ca.cert_pem.write_to_path(str(ca_file))
    default_port, per_port = free_port(), free_port()
    gateway.service("infra-backend-v1", echoes["infra-backend-v1"])
    gateway.service("infra-backend-v2", echoes["infra-backend-v2"])
    gateway.write(
        "secret.yaml",
        tls_secret(
            "tls-validity-checks-certificate", server_ca, "example.org", "second-example.org"
        ),
    )
    gateway.write(
        "gw.yaml",
        config(default_port, per_port, default_ca.cert_pem.bytes(), per_port_ca.cert_pem.bytes()),
    )
    gateway.start()
    status = gateway.resource("Gateway", "client-validation-insecure-fallback")["status"]
    found = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert found["InsecureFrontendValidationMode"] == ("True", "ConfigurationChanged")

    default_client = client_files(tmp_path, "default", default_ca)
    per_port_client = client_files(tmp_path, "per-port", per_port_ca)
    for host, port, backend in [
        ("example.org", default_port, "infra-backend-v1"),
        ("second-example.org", per_port, "infra-backend-v2"),
    ]:
        for identity in (default_client, per_port_client, []):
            result = curl(
                "--cacert",
                str(ca_file),
                "--resolve",
                f"{host}:{port}:127.0.0.1",
                *identity,
                f"https://{host}:{port}/",
            )
            assert result.returncode == 0, (host, identity, result.stderr)
            assert echoed(result.stdout)["pod"] == backend
