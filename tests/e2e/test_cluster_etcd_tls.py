"""``--cluster etcds://`` against an etcd that serves clients over TLS and wants their certificate.

The CA, the member's and the node's certificates come from trustme; etcd runs with
``--client-cert-auth``, so only a node holding ``--cluster-cert``/``--cluster-key`` gets in.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trustme

from edgegw.net.etcd import EtcdClient, EtcdUnavailable, TLSFiles
from tests.e2e.conftest import Gateway, wait_for
from tests.etcdrig import EtcdMember, EtcdRig, EtcdTLS
from tests.ports import free_port


@pytest.fixture
def etcd_tls() -> Iterator[EtcdRig]:
    root = Path(tempfile.mkdtemp(prefix="egw-etcd-tls-"))
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("edgegw-node")
    files = EtcdTLS(root / "ca.pem", root / "server.pem", root / "server.key",
                    root / "client.pem", root / "client.key")  # fmt: skip
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    rig = EtcdRig(root, [EtcdMember("m1", "127.0.0.1", free_port(), free_port())], tls=files)
    try:
        rig.start_all()
        yield rig
    finally:
        rig.stop_all()
        shutil.rmtree(root, ignore_errors=True)


async def test_the_client_needs_the_ca_and_its_certificate(etcd_tls: EtcdRig) -> None:
    tls = etcd_tls.tls
    assert tls is not None
    url = [etcd_tls.members[0].client_url]
    with trio.fail_after(15):
        files = TLSFiles(str(tls.ca), str(tls.client_cert), str(tls.client_key))
        async with EtcdClient(url, files, timeout=1) as client:
            await client.put(b"edgegw-test/tls", b"v")
            assert [kv.value for kv in (await client.range(b"edgegw-test/tls"))[1]] == [b"v"]
        for refused in (TLSFiles(str(tls.ca)), TLSFiles()):  # no client certificate; no CA
            async with EtcdClient(url, refused, timeout=1) as client:
                with pytest.raises(EtcdUnavailable):
                    await client.range(b"edgegw-test/tls")


def test_run_joins_over_etcds(tmp_path: Path, etcd_tls: EtcdRig) -> None:
    tls = etcd_tls.tls
    assert tls is not None
    node = Gateway(tmp_path)
    try:
        node.start("--cluster", etcd_tls.endpoints, "--node-name", "n1",
                   "--cluster-ca", str(tls.ca), "--cluster-cert", str(tls.client_cert),
                   "--cluster-key", str(tls.client_key))  # fmt: skip
        cluster = wait_for(
            lambda: (c := node.status()["cluster"])["allocator"] == "n1" and c["etcd"] and c,
            what="the node in the cluster over TLS",
        )
        assert cluster["etcdReachable"] is True
        assert [m["healthy"] for m in cluster["etcd"]] == [True]
        assert cluster["etcd"][0]["endpoint"].startswith("https://")
    finally:
        if node.process is not None:
            node.stop()
