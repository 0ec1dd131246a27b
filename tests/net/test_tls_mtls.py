"""Client certificates per listener: AllowValidOnly and AllowInsecureFallback.

Two listeners share a port; only one validates client certificates, so these
tests also show that the verify mode follows the listener the SNI picked.
"""

from __future__ import annotations

import ssl

import pytest
import trio
import trustme

from edgegw import ir
from edgegw.net import tls
from tests.net.test_tls import afetch, certificate, client_ctx, listener, port_of, serving


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    return trustme.CA(organization_name="client CA")


@pytest.fixture(scope="module")
def rogue_ca() -> trustme.CA:
    return trustme.CA(organization_name="rogue CA")


def mtls_port(ca: trustme.CA, client_ca: trustme.CA, mode: str) -> ir.Port:
    validation = ir.FrontendValidation(ca_pem=client_ca.cert_pem.bytes(), mode=mode)  # type: ignore[arg-type]
    return port_of(
        listener("mtls", "secure.test", certificate(ca, "secure.test"), validation=validation),
        listener("open", "open.test", certificate(ca, "open.test")),
    )


def with_client_cert(ca: trustme.CA, issuer: trustme.CA, name: str) -> ssl.SSLContext:
    ctx = client_ctx(ca)
    issuer.issue_cert(name).configure_cert(ctx)
    return ctx


async def test_allow_valid_only_accepts_a_valid_certificate(
    ca: trustme.CA, client_ca: trustme.CA
) -> None:
    ctx = with_client_cert(ca, client_ca, "alice@example.com")
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(mtls_port(ca, client_ca, "AllowValidOnly"))) as srv:
            reply = await afetch(srv.port, "secure.test", ctx)
    assert reply.body["listener"] == "mtls"
    assert reply.body["verified"] is True
    assert "client CA" not in reply.body["peer"]  # the leaf's subject, not the issuer's
    session = srv.sessions[0]
    assert session.peer_certificate is not None
    assert session.peer_certificate.issuer.rfc4514_string().find("client CA") >= 0


@pytest.mark.parametrize("client_cert", ["none", "rogue"])
async def test_allow_valid_only_refuses_missing_or_invalid(
    ca: trustme.CA, client_ca: trustme.CA, rogue_ca: trustme.CA, client_cert: str
) -> None:
    ctx = client_ctx(ca) if client_cert == "none" else with_client_cert(ca, rogue_ca, "mallory")
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(mtls_port(ca, client_ca, "AllowValidOnly"))) as srv:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await afetch(srv.port, "secure.test", ctx)
            # the other listener on the port asks for no certificate
            reply = await afetch(srv.port, "open.test", ctx)
            await srv.any_refused.wait()
    assert srv.refused == 1
    assert reply.body["listener"] == "open"
    assert reply.body["peer"] is None


@pytest.mark.parametrize(
    ("client_cert", "peer", "verified"),
    [("none", False, False), ("rogue", True, False), ("valid", True, True)],
)
async def test_allow_insecure_fallback_accepts_all(
    ca: trustme.CA,
    client_ca: trustme.CA,
    rogue_ca: trustme.CA,
    client_cert: str,
    peer: bool,
    verified: bool,
) -> None:
    ctx = {
        "none": lambda: client_ctx(ca),
        "rogue": lambda: with_client_cert(ca, rogue_ca, "mallory"),
        "valid": lambda: with_client_cert(ca, client_ca, "alice"),
    }[client_cert]()
    port = mtls_port(ca, client_ca, "AllowInsecureFallback")
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(port)) as srv:
            reply = await afetch(srv.port, "secure.test", ctx)
    assert reply.body["listener"] == "mtls"
    assert (reply.body["peer"] is not None, reply.body["verified"]) == (peer, verified)


async def test_no_resumption_on_a_port_that_validates_clients(
    ca: trustme.CA, client_ca: trustme.CA
) -> None:
    """A session from the open listener must not skip the certificate check of the other."""
    ctx = client_ctx(ca)
    ctx.check_hostname = False
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(mtls_port(ca, client_ca, "AllowValidOnly"))) as srv:
            first = await afetch(srv.port, "open.test", ctx)
            again = await afetch(srv.port, "open.test", ctx, session=first.session)
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await afetch(srv.port, "secure.test", ctx, session=first.session)
    assert not again.reused


async def test_client_certificates_over_tls12(ca: trustme.CA, client_ca: trustme.CA) -> None:
    valid = with_client_cert(ca, client_ca, "alice")
    valid.maximum_version = ssl.TLSVersion.TLSv1_2
    anonymous = client_ctx(ca)
    anonymous.maximum_version = ssl.TLSVersion.TLSv1_2
    with trio.fail_after(10):
        async with serving(tls.build_server_tls(mtls_port(ca, client_ca, "AllowValidOnly"))) as srv:
            reply = await afetch(srv.port, "secure.test", valid)
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await afetch(srv.port, "secure.test", anonymous)
    assert (reply.body["version"], reply.body["verified"]) == ("TLSv1.2", True)
