"""client_context: TLS to backends, verified by hostname or by BackendTLSPolicy SANs."""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
import trustme

from edgegw import ir
from edgegw.net import tls


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclass
class Backend:
    """A stdlib-TLS backend; records the SNI and client certificate it saw."""

    ctx: ssl.SSLContext
    port: int = 0
    server_names: list[str | None] = field(default_factory=list)
    peers: list[dict[str, object] | None] = field(default_factory=list)

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = trio.SSLStream(stream, self.ctx, server_side=True)
        try:
            await conn.do_handshake()
            self.peers.append(conn.getpeercert())
            await conn.send_all(b"hello from backend")
            await conn.aclose()
        except trio.BrokenResourceError:
            pass


@asynccontextmanager
async def backend(
    ca: trustme.CA, *names: str, client_ca: trustme.CA | None = None
) -> AsyncIterator[Backend]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    if client_ca is not None:
        client_ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
    server = Backend(ctx)
    ctx.sni_callback = lambda _obj, name, _ctx: server.server_names.append(name)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
        )
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


async def connect(port: int, policy: ir.BackendTLS) -> trio.SSLStream[trio.SocketStream]:
    """What the upstream pool does: trio.SSLStream, SNI = the policy's hostname."""
    raw = await trio.open_tcp_stream("127.0.0.1", port)
    conn = trio.SSLStream(raw, tls.client_context(policy), server_hostname=policy.hostname)
    await conn.do_handshake()
    return conn


async def test_verifies_by_hostname(ca: trustme.CA) -> None:
    policy = ir.BackendTLS(hostname="backend.internal", ca_pem=ca.cert_pem.bytes())
    with trio.fail_after(10):
        async with backend(ca, "backend.internal") as server:
            conn = await connect(server.port, policy)
            assert await conn.receive_some() == b"hello from backend"
    assert server.server_names == ["backend.internal"]


async def test_wrong_hostname_fails(ca: trustme.CA) -> None:
    policy = ir.BackendTLS(hostname="other.internal", ca_pem=ca.cert_pem.bytes())
    with trio.fail_after(10):
        async with backend(ca, "backend.internal") as server:
            with pytest.raises(trio.BrokenResourceError) as info:
                await connect(server.port, policy)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_wrong_ca_fails(ca: trustme.CA) -> None:
    other = trustme.CA()
    policy = ir.BackendTLS(hostname="backend.internal", ca_pem=other.cert_pem.bytes())
    with trio.fail_after(10):
        async with backend(ca, "backend.internal") as server:
            with pytest.raises(trio.BrokenResourceError) as info:
                await connect(server.port, policy)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_system_store_does_not_trust_a_private_ca(ca: trustme.CA) -> None:
    policy = ir.BackendTLS(hostname="backend.internal")
    with trio.fail_after(10):
        async with backend(ca, "backend.internal") as server:
            with pytest.raises(trio.BrokenResourceError):
                await connect(server.port, policy)


@pytest.mark.parametrize(
    "sans",
    [
        ("backend.internal",),
        ("nope.internal", "backend.internal"),
        ("x.wild.internal",),  # the certificate's *.wild.internal covers it
        ("10.1.2.3",),
    ],
)
async def test_verifies_by_subject_alt_names_instead_of_hostname(
    ca: trustme.CA, sans: tuple[str, ...]
) -> None:
    policy = ir.BackendTLS(
        hostname="svc.ns.svc.cluster.local",  # SNI only, not in the certificate
        ca_pem=ca.cert_pem.bytes(),
        subject_alt_names=sans,
    )
    with trio.fail_after(10):
        async with backend(ca, "backend.internal", "*.wild.internal", "10.1.2.3") as server:
            conn = await connect(server.port, policy)
            assert await conn.receive_some() == b"hello from backend"
    assert server.server_names == ["svc.ns.svc.cluster.local"]


@pytest.mark.parametrize("sans", [("nope.internal",), ("a.b.wild.internal",), ("10.9.9.9",)])
async def test_subject_alt_names_mismatch_fails(ca: trustme.CA, sans: tuple[str, ...]) -> None:
    policy = ir.BackendTLS(
        hostname="backend.internal",  # would match, but the SANs rule
        ca_pem=ca.cert_pem.bytes(),
        subject_alt_names=sans,
    )
    with trio.fail_after(10):
        async with backend(ca, "backend.internal", "*.wild.internal", "10.1.2.3") as server:
            with pytest.raises(trio.BrokenResourceError) as info:
                await connect(server.port, policy)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_subject_alt_names_still_need_the_right_ca(ca: trustme.CA) -> None:
    policy = ir.BackendTLS(
        hostname="backend.internal",
        ca_pem=trustme.CA().cert_pem.bytes(),
        subject_alt_names=("backend.internal",),
    )
    with trio.fail_after(10):
        async with backend(ca, "backend.internal") as server:
            with pytest.raises(trio.BrokenResourceError):
                await connect(server.port, policy)


async def test_client_certificate_and_alpn(ca: trustme.CA) -> None:
    client_ca = trustme.CA()
    issued = client_ca.issue_cert("gateway.edgegw")
    policy = ir.BackendTLS(
        hostname="backend.internal",
        ca_pem=ca.cert_pem.bytes(),
        client_cert_pem=b"".join(blob.bytes() for blob in issued.cert_chain_pems),
        client_key_pem=issued.private_key_pem.bytes(),
        alpn=("h2", "http/1.1"),
    )
    with trio.fail_after(10):
        async with backend(ca, "backend.internal", client_ca=client_ca) as server:
            server.ctx.set_alpn_protocols(["http/1.1"])
            conn = await connect(server.port, policy)
            assert await conn.receive_some() == b"hello from backend"
            assert conn.selected_alpn_protocol() == "http/1.1"
    peer = server.peers[0]
    assert peer is not None
    assert ("DNS", "gateway.edgegw") in peer["subjectAltName"]  # type: ignore[operator]


def test_contexts_are_cached_per_value(ca: trustme.CA) -> None:
    pem = ca.cert_pem.bytes()
    first = tls.client_context(ir.BackendTLS(hostname="a.internal", ca_pem=pem))
    again = tls.client_context(ir.BackendTLS(hostname="a.internal", ca_pem=bytes(pem)))
    other = tls.client_context(ir.BackendTLS(hostname="b.internal", ca_pem=pem))
    assert first is again
    assert first is not other
    assert first.minimum_version == ssl.TLSVersion.TLSv1_2
