"""`ClusterCertificates` on a real etcd: one orderer, fenced writes, copies on every node."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path

import trio
import trustme

from edgegw.certificates.challenges import Challenges
from edgegw.certificates.coordination import Attempts, SharedCertificate
from edgegw.certificates.store import CertificateStore, Issued
from edgegw.certs import load_key_pair
from edgegw.cluster.certificates import ClusterCertificates
from edgegw.cluster.session import Session
from edgegw.cluster.shared import ClusterLink
from edgegw.net.etcd import EtcdClient
from tests.etcdrig import EtcdRig


def _certificate() -> SharedCertificate:
    leaf = trustme.CA().issue_cert("app.example.test")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    pair = load_key_pair(chain, leaf.private_key_pem.bytes())
    info = Issued(request="r", issuer="Issuer x", not_before=pair.not_before,
                  not_after=pair.not_after)  # fmt: skip
    return SharedCertificate(chain=chain.decode(), key=pair.key_pem.decode(), info=info)


async def _adopt(_: object) -> None:
    pass


async def test_only_the_orderer_writes_and_every_node_gets_a_copy(
    etcd: EtcdRig, tmp_path: Path
) -> None:
    url = [etcd.members[0].client_url]
    tag = uuid.uuid4().hex[:6]
    copied: list[str] = []
    with trio.fail_after(20):
        async with EtcdClient(url) as c1, EtcdClient(url) as c2, trio.open_nursery() as nursery:
            nodes = []
            for name, client in (("a", c1), ("b", c2)):
                session = Session(client, f"{name}-{tag}", speaker=False)
                store = CertificateStore(tmp_path / name)
                on_copied = functools.partial(copied.append, name)
                challenges = Challenges(tmp_path / name / "http01")
                shared = ClusterCertificates(session, store, on_copied, challenges=challenges)
                link = ClusterLink(session, _adopt, certificates=shared)
                await nursery.start(link.serve)
                await link.wait_synced()
                nodes.append(shared)
                await nodes[0].wait_leading()
            a, b = nodes
            assert a.orderer() == b.orderer() == f"a-{tag}"

            certificate = _certificate()
            assert await a.publish("default", "web-tls", certificate)
            assert not await b.publish("default", "web-tls", _certificate())  # fenced
            while len(copied) < 1 or b.store is None or b.store.load("default", "web-tls") is None:
                await trio.sleep(0.02)
            assert b.store.load("default", "web-tls")[1] == certificate.info  # type: ignore[index]
            assert b.issued("default", "web-tls") == certificate.info

            token = f"token-{tag}-0123456789"
            await a.put("http01", token, b"answer")
            assert b.get("http01", token) == b"answer"  # already there
            worker = Challenges(tmp_path / "b" / "http01")  # another worker of b: its files
            path = f"/.well-known/acme-challenge/{token}"
            while worker.answer_http01(path) != b"answer":
                await trio.sleep(0.02)

            backoff = Attempts(failures=2, next_attempt=123.0, last_failure="refused")
            await a.record("default", "web", backoff)
            while b.attempts("default", "web") != backoff:
                await trio.sleep(0.02)

            await a.session.revoke()  # the orderer leaves: its answers go, the other orders
            await b.wait_leading()
            assert b.get("http01", token) is None
            while worker.answer_http01(path) is not None:
                await trio.sleep(0.02)
            await b.record("default", "web", None)
            nursery.cancel_scope.cancel()
