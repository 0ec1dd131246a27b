"""ACME under ``--cluster``: one node orders, pebble validates at another, both serve it.

Two ``edgegw run --cluster`` nodes on 127.0.0.2 and 127.0.0.3 (the same ports), a 3-member
etcd, and pebble whose DNS (challtestsrv) sends every name to node B at 127.0.0.3. Node A is
started first, so it is the orderer: the HTTP-01 answer it writes to etcd must be served by
node B. Then A is killed (SIGKILL, no lease revoked) and B renews the certificate.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.acme_rig import Pebble, start_pebble
from tests.e2e.conftest import Echo, Gateway, edgegw_cmd, wait_for
from tests.e2e.test_certificates_acme import _issuer, _site
from tests.etcdrig import EtcdMember, EtcdRig
from tests.ports import free_port

HOST = "app.example.test"
A, B = "127.0.0.2", "127.0.0.3"
VALIDITY = 21  # pebble's certificates: renewed at 2/3 of their life, 14 s after issue


class Session:
    """One keep-alive HTTPS connection to ``address``, trusting only pebble's root."""

    def __init__(self, address: str, port: int, root: bytes) -> None:
        context = ssl.create_default_context(cadata=root.decode())
        sock = socket.create_connection((address, port), timeout=5)
        self.tls = context.wrap_socket(sock, server_hostname=HOST)
        self.conn = http.client.HTTPConnection(HOST, port, timeout=5)
        self.conn.sock = self.tls

    def get(self) -> int:
        self.conn.request("GET", "/")
        response = self.conn.getresponse()
        response.read()
        return response.status

    def certificate(self) -> bytes:
        der = self.tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    def close(self) -> None:
        self.conn.close()


def served(address: str, port: int, root: bytes) -> bytes | None:
    """The certificate a fresh handshake gets from ``address`` (None: no valid one yet)."""
    try:
        session = Session(address, port, root)
    except (OSError, ssl.SSLError):
        return None
    try:
        return session.certificate() if session.get() == 200 else None
    finally:
        session.close()


def listening(address: str, port: int) -> bool:
    with socket.create_connection((address, port), 0.2):
        return True


@pytest.fixture
def etcd() -> Iterator[EtcdRig]:
    root = Path(tempfile.mkdtemp(prefix="egw-etcd-"))
    members = [EtcdMember(f"m{i}", "127.0.0.1", free_port(), free_port()) for i in range(3)]
    rig = EtcdRig(root, members)
    try:
        rig.start_all()
        yield rig
    finally:
        rig.stop_all()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, Gateway]]:
    found = {}
    for name, address in (("a", A), ("b", B)):
        (tmp_path / name).mkdir()
        found[name] = Gateway(tmp_path / name, address)
    yield found
    for node in found.values():
        if node.process is not None and node.process.proc.poll() is None:
            node.stop()


def cluster(node: Gateway) -> dict[str, Any]:
    return dict(node.status()["cluster"])


def log(node: Gateway) -> str:
    assert node.process is not None
    return node.process.output()


def test_one_orderer_shares_and_the_next_renews(
    tmp_path: Path, etcd: EtcdRig, nodes: dict[str, Gateway], echoes: dict[str, Echo]
) -> None:
    http_port, https_port = free_port(), free_port()
    pebble: Pebble = start_pebble(
        tmp_path, http_port=http_port, tls_port=https_port, validity=VALIDITY, address=B
    )
    try:
        site = _site(http_port, https_port, echoes["app"].port)
        flags = ("--cluster", etcd.endpoints, "--lease-ttl", "2")
        for name, node in nodes.items():
            node.write("issuer.yaml", _issuer(pebble))
            node.start(*flags, "--node-name", name)
            # A first: it holds the orderer key before B exists
            wait_for(lambda: cluster(nodes["a"])["certificateOrderer"] == "a", what="orderer")
        # B serves the site (its port 80 open for pebble) before A, which orders at once, has it
        nodes["b"].write("site.yaml", site)
        wait_for(lambda: listening(B, http_port), what="B's HTTP listener")
        nodes["a"].write("site.yaml", site)
        root = pebble.root_pem()

        first = wait_for(lambda: served(A, https_port, root), timeout=30, what="A's certificate")
        wait_for(lambda: served(B, https_port, root) == first, what="B serving A's certificate")
        assert log(nodes["a"]).count("ordering from") == 1, log(nodes["a"])
        assert "ordering from" not in log(nodes["b"])
        assert '"GET /.well-known/acme-challenge/' in log(nodes["b"])  # pebble asked B
        assert '"GET /.well-known/acme-challenge/' not in log(nodes["a"])
        assert "received from the cluster" in log(nodes["b"])
        for node in nodes.values():  # the key went through etcd; it never shows
            for path in ("/api/status", "/api/config"):
                assert b"PRIVATE KEY" not in node.admin(path)[1]
            assert "PRIVATE KEY" not in log(node)
            cert = node.resource("Certificate", "web-tls")["status"]
            assert cert["conditions"][0]["status"] == "True"

        open_on_b = Session(B, https_port, root)
        assert open_on_b.get() == 200
        assert nodes["a"].stop(9) == -9  # no lease revoked: B waits out the TTL
        wait_for(lambda: cluster(nodes["b"])["certificateOrderer"] == "b", what="B orders")
        table = subprocess.run(
            edgegw_cmd("status", "--admin", f"127.0.0.1:{nodes['b'].admin_port}"),
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        assert "certificates ordered by: b" in table
        renewed = wait_for(
            lambda: (c := served(B, https_port, root)) != first and c,
            timeout=VALIDITY + 10,
            what="B renewing the certificate",
        )
        assert renewed
        assert "ordering from" in log(nodes["b"])  # B renewed it, A being dead
        assert open_on_b.get() == 200  # the reload kept the open connection
        assert open_on_b.certificate() == first
        open_on_b.close()
    finally:
        pebble.stop()
