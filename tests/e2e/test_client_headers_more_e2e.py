"""ClientTrafficPolicy ``headers.xForwardedClientCert`` modes that add the client certificate,
and ``headers.lateResponseHeaders``, through ``edgegw run`` with curl over HTTP/1.1 and
HTTP/2, with and without a client certificate (AllowInsecureFallback lets both in). The
certificate's hash, subject and PEM are checked against what ``openssl`` says of the file
curl sent, not against edgegw's own code.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import trustme

from tests.e2e.conftest import GATEWAY_CLASS, Echo, Gateway, curl, echoed, free_port
from tests.e2e.test_https import tls_secret

pytestmark = pytest.mark.e2e

LATE = (
    "lateResponseHeaders: {set: [{name: X-Frame-Options, value: DENY}],"
    " add: [{name: X-Route, value: late}], remove: [content-type],"
    " removeOnMatch: [{type: Prefix, value: x-debug-}]}"
)
MODES = {  # listener → its ClientTrafficPolicy's headers
    "append": "xForwardedClientCert: "
    "{mode: AppendForward, certDetailsToAdd: [DNS, Subject, Chain, Cert, URI]}",
    "set": "xForwardedClientCert: {mode: SanitizeSet}, " + LATE,
    "fwd": "xForwardedClientCert: {mode: ForwardOnly}",
}


def _config(port: int, client_ca: bytes) -> str:
    listeners = "".join(
        f"  - {{name: {name}, port: {port}, protocol: HTTPS, hostname: {name}.example,"
        " tls: {certificateRefs: [{name: server}]}}\n"
        for name in MODES
    )
    docs = [
        f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: edgegw
  tls:
    frontend:
      default:
        validation:
          mode: AllowInsecureFallback
          caCertificateRefs: [{{kind: ConfigMap, group: "", name: client-ca}}]
  listeners:
{listeners}""",
        f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: client-ca, namespace: default}}
binaryData: {{ca.crt: {base64.b64encode(client_ca).decode()}}}
""",
        """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: echo, port: 80}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: X-Route, value: route}, {name: X-Debug-Token, value: secret}]
""",
    ]
    docs += [
        f"""\
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: {name}}}]
  headers: {{{mode}}}
"""
        for name, mode in MODES.items()
    ]
    return GATEWAY_CLASS + "---\n" + "---\n".join(docs)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, list[str], Path]]:
    """The gateway's port, curl's TLS arguments, and the client certificate file (one gateway
    for the module)."""
    tmp_path = tmp_path_factory.mktemp("xfcc")
    gateway = Gateway(tmp_path_factory.mktemp("gw"))
    echo = Echo("echo", tmp_path)
    server_ca, client_root = trustme.CA(), trustme.CA()
    client_ca = client_root.create_child_ca()  # an intermediate: the chain has two
    issued = client_ca.issue_cert("client.example", "alt.example", common_name="client-1")
    cert, key, ca = tmp_path / "client.crt", tmp_path / "client.key", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    server_ca.cert_pem.write_to_path(str(ca))
    port = free_port()
    gateway.service("echo", echo)
    gateway.write("secret.yaml", tls_secret("server", server_ca, *(f"{n}.example" for n in MODES)))
    gateway.write("gw.yaml", _config(port, client_root.cert_pem.bytes()))
    gateway.start()
    try:
        for name in MODES:
            status = gateway.resource("ClientTrafficPolicy", name)["status"]
            assert status["ancestors"][0]["conditions"][0]["status"] == "True", status
        args = ["--cacert", str(ca)]
        for name in MODES:
            args += ["--resolve", f"{name}.example:{port}:127.0.0.1"]
        yield port, args, cert
    finally:
        gateway.stop()
        echo.process.stop()


def _xfcc(port: int, args: list[str], host: str, *extra: str) -> list[str]:
    result = curl(
        *args, *extra, "-H", "X-Forwarded-Client-Cert: By=spoofed", f"https://{host}:{port}/"
    )
    assert result.returncode == 0, result.stderr
    return list(echoed(result.stdout)["headers"].get("x-forwarded-client-cert", []))


def _openssl(cert: Path, *args: str) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.parametrize("protocol", ["--http1.1", "--http2"])
def test_xfcc_modes_with_and_without_a_client_certificate(
    rig: tuple[int, list[str], Path], protocol: str
) -> None:
    port, args, cert = rig
    identity = ["--cert", str(cert), "--key", str(cert.with_suffix(".key"))]
    # without a client certificate every one of these modes removes what the client sent
    for name in MODES:
        assert _xfcc(port, args, f"{name}.example", protocol) == [], name
    assert _xfcc(port, args, "fwd.example", protocol, *identity) == ["By=spoofed"]
    digest = _openssl(cert, "-fingerprint", "-sha256").split("=", 1)[1].replace(":", "").lower()
    assert _xfcc(port, args, "set.example", protocol, *identity) == [f"Hash={digest}"]

    [appended] = _xfcc(port, args, "append.example", protocol, *identity)
    spoofed, element = appended.split(",", 1)
    assert spoofed == "By=spoofed"
    pairs = element.split(";")
    subject = _openssl(cert, "-subject", "-nameopt", "RFC2253").removeprefix("subject=")
    assert pairs[0] == f"Hash={digest}"
    assert pairs[3] == f'Subject="{subject}"'
    assert pairs[4:] == ["URI=", "DNS=client.example", "DNS=alt.example"]
    sent = cert.read_text()  # leaf, then the intermediate
    leaf = sent[: sent.index("-----END CERTIFICATE-----\n") + len("-----END CERTIFICATE-----\n")]
    assert pairs[1].startswith('Cert="')
    assert unquote(pairs[1][6:-1]) == leaf
    assert pairs[2].startswith('Chain="')
    assert unquote(pairs[2][7:-1]) == sent


def _head(port: int, args: list[str], host: str, protocol: str) -> dict[str, list[str]]:
    result = curl(*args, protocol, "-o", "/dev/null", "-D", "-", f"https://{host}:{port}/")
    assert result.returncode == 0, result.stderr
    fields: dict[str, list[str]] = {}
    for line in result.stdout.splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields.setdefault(name.strip().lower(), []).append(value.strip())
    return fields


@pytest.mark.parametrize("protocol", ["--http1.1", "--http2"])
def test_late_response_headers_after_the_routes_own(
    rig: tuple[int, list[str], Path], protocol: str
) -> None:
    port, args, _ = rig
    late = _head(port, args, "set.example", protocol)
    assert late["x-frame-options"] == ["DENY"]
    assert late["x-route"] == ["route", "late"]  # added after the route's modifier ran
    assert "x-debug-token" not in late  # removeOnMatch sees what the route added
    assert "content-type" not in late
    other = _head(port, args, "fwd.example", protocol)  # a listener without the setting
    assert other["x-debug-token"] == ["secret"]
    assert "x-frame-options" not in other
    assert other["content-type"] == ["application/json"]
