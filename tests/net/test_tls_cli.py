"""Real third-party clients against accept_tls: ``openssl s_client`` and ``curl``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import trio
import trustme

from edgegw import ir
from edgegw.net import tls
from tests.net.test_tls import certificate, listener, port_of, serving

pytestmark = pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("curl")), reason="needs openssl and curl"
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    return trustme.CA(organization_name="edgegw client CA")


@pytest.fixture(scope="module")
def port(ca: trustme.CA, client_ca: trustme.CA) -> ir.Port:
    validation = ir.FrontendValidation(ca_pem=client_ca.cert_pem.bytes())
    return port_of(
        listener("exact", "api.example.com", certificate(ca, "api.example.com")),
        listener("wildcard", "*.example.com", certificate(ca, "*.example.com")),
        listener(
            "mtls",
            "secure.example.com",
            certificate(ca, "secure.example.com"),
            validation=validation,
        ),
        listener("default", None, certificate(ca, "default.test")),
    )


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_bytes(ca.cert_pem.bytes())
    return str(path)


async def s_client(port: int, ca_file: str, *args: str) -> str:
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", ca_file, *args]
    done = await trio.run_process(
        cmd,
        stdin=b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


@pytest.mark.parametrize(
    ("server_name", "listener_name"),
    [("api.example.com", "exact"), ("www.example.com", "wildcard"), ("default.test", "default")],
)
async def test_s_client_servername_gets_a_verified_certificate(
    port: ir.Port, ca_file: str, server_name: str, listener_name: str
) -> None:
    with trio.fail_after(20):
        async with serving(tls.build_server_tls(port)) as server:
            out = await s_client(
                server.port,
                ca_file,
                "-servername",
                server_name,
                "-verify_hostname",
                server_name,
                "-verify_return_error",
                "-ign_eof",
            )
    assert "Verify return code: 0 (ok)" in out
    assert f'"listener": "{listener_name}"' in out
    assert "No client certificate CA names sent" in out  # open listeners ask for none


async def test_s_client_sees_the_client_ca_names_of_the_mtls_listener_only(
    port: ir.Port, ca_file: str
) -> None:
    with trio.fail_after(20):
        async with serving(tls.build_server_tls(port)) as server:
            out = await s_client(
                server.port, ca_file, "-servername", "secure.example.com", "-ign_eof"
            )
    assert "Acceptable client certificate CA names" in out
    assert "edgegw client CA" in out
    assert '"listener"' not in out  # refused: no certificate


async def test_s_client_alpn(port: ir.Port, ca_file: str) -> None:
    with trio.fail_after(20):
        async with serving(tls.build_server_tls(port, alpn=("h2", "http/1.1"))) as server:
            out = await s_client(
                server.port, ca_file, "-servername", "api.example.com", "-alpn", "h2,http/1.1"
            )
    assert "ALPN protocol: h2" in out


async def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        ["curl", "-sS", "--max-time", "10", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("host", "listener_name"), [("api.example.com", "exact"), ("foo.example.com", "wildcard")]
)
async def test_curl_with_resolve_and_cacert(
    port: ir.Port, ca_file: str, host: str, listener_name: str
) -> None:
    with trio.fail_after(20):
        async with serving(tls.build_server_tls(port)) as server:
            done = await curl(
                "--resolve",
                f"{host}:{server.port}:127.0.0.1",
                "--cacert",
                ca_file,
                f"https://{host}:{server.port}/",
            )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["listener"] == listener_name
    assert body["alpn"] == "http/1.1"


async def test_curl_client_certificate(
    port: ir.Port, ca_file: str, client_ca: trustme.CA, tmp_path: Path
) -> None:
    issued = client_ca.issue_cert("curl-client")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    key.write_bytes(issued.private_key_pem.bytes())
    host = "secure.example.com"
    with trio.fail_after(20):
        async with serving(tls.build_server_tls(port)) as server:
            base = ["--resolve", f"{host}:{server.port}:127.0.0.1", "--cacert", ca_file]
            url = f"https://{host}:{server.port}/"
            without = await curl(*base, url)
            with_cert = await curl(*base, "--cert", str(cert), "--key", str(key), url)
    assert without.returncode != 0
    assert with_cert.returncode == 0, with_cert.stderr
    assert json.loads(with_cert.stdout)["verified"] is True
