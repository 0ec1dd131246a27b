"""The certificate manager under a `Coordinator`: it orders only while elected, and honours
the backoff the cluster shares (a fake coordinator stands in for etcd; the issuer is local)."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from edgegw.certificates.challenges import Challenges
from edgegw.certificates.coordination import Attempts, SharedCertificate
from edgegw.certificates.manager import CertificateManager
from edgegw.certificates.store import Account, CertificateStore, Issued
from tests.unit.test_certificates_lifecycle import SITE, _resources


class FakeCoordinator:
    def __init__(self) -> None:
        self.elected = False
        self.shared_attempts: dict[tuple[str, str], Attempts] = {}
        self.published: list[tuple[str, str, SharedCertificate]] = []
        self.recorded: list[Attempts | None] = []
        self.waits = 0  # how often the manager began waiting to be elected

    def leading(self) -> bool:
        return self.elected

    async def wait_leading(self) -> None:
        self.waits += 1
        while not self.elected:
            await trio.sleep(0.01)

    async def wait_lost(self) -> None:
        while self.elected:
            await trio.sleep(0.01)

    def issued(self, namespace: str, secret: str) -> Issued | None:
        found = [s.info for ns, name, s in self.published if (ns, name) == (namespace, secret)]
        return found[-1] if found else None

    async def publish(self, namespace: str, secret: str, shared: SharedCertificate) -> bool:
        self.published.append((namespace, secret, shared))
        return self.elected

    def attempts(self, namespace: str, name: str) -> Attempts | None:
        return self.shared_attempts.get((namespace, name))

    async def record(self, namespace: str, name: str, attempts: Attempts | None) -> None:
        self.recorded.append(attempts)

    def account(self, issuer: str, server: str) -> Account | None:
        return None

    async def share_account(self, issuer: str, account: Account) -> None:
        pass


async def test_orders_only_while_elected_and_after_the_shared_backoff(tmp_path: Path) -> None:
    coordinator = FakeCoordinator()
    coordinator.shared_attempts[("default", "web-tls")] = Attempts(
        failures=3, next_attempt=time.time() + 3600, last_failure="refused"
    )
    store = CertificateStore(tmp_path)
    manager = CertificateManager(store, Challenges(), on_issued=lambda: None)
    manager.coordinator = coordinator
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, plan, _ = manager.resolve(_resources(SITE))
            manager.update(plan)
            await nursery.start(manager.run)
            await trio.sleep(0.2)  # an observation window: an order would have been made
            assert store.load("default", "web-tls") is None  # not elected: no order

            coordinator.elected = True  # elected, but the cluster's backoff runs for an hour
            await trio.sleep(0.2)  # an observation window, as above
            assert store.load("default", "web-tls") is None
            (status,) = [s for s in manager.statuses(time.time()) if s.kind == "Certificate"]
            assert status.status["failedIssuanceAttempts"] == 3

            waits = coordinator.waits
            coordinator.elected = False  # another node orders meanwhile; the backoff ends
            del coordinator.shared_attempts[("default", "web-tls")]
            while coordinator.waits == waits:  # the manager noticed and waits to be elected
                await trio.sleep(0.01)
            coordinator.elected = True
            while not coordinator.published:
                await trio.sleep(0.01)
            ((namespace, secret, shared),) = coordinator.published
            assert (namespace, secret) == ("default", "web-tls")
            found = store.load("default", "web-tls")
            assert found is not None
            assert found[1] == shared.info
            assert coordinator.recorded == [None]  # success clears the cluster's backoff
            nursery.cancel_scope.cancel()
