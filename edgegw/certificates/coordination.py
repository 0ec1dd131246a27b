"""What the certificate manager asks of a cluster (``--cluster``): who orders, what is shared.

Without ``--cluster`` the manager needs none of this and the node orders alone. Under
``--cluster`` `edgegw.cluster.certificates` implements both protocols on etcd; the manager and
`Challenges` only see these shapes, so ``certificates`` does not import ``cluster``.

- `Coordinator`: one node at a time is the *orderer*. Only it orders; it shares what it issued
  and its failures (the backoff), so the next orderer continues where it stopped and no two
  nodes order the same certificate at once.
- `SharedAnswers`: pending ACME challenge answers visible to every node, since the ACME server
  may reach any of them.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from edgegw.certificates.store import Account, Issued


class Attempts(msgspec.Struct, frozen=True, kw_only=True):
    """The failures of one certificate's orders so far: the backoff every orderer honours."""

    failures: int
    next_attempt: float
    last_failure: str = ""
    last_failure_time: float = 0.0


class SharedCertificate(msgspec.Struct, frozen=True, kw_only=True):
    """An issued certificate as every node receives it: chain, private key, and its record."""

    chain: str
    key: str
    info: Issued


class Coordinator(Protocol):
    """The elected orderer and the certificate state shared between nodes."""

    def leading(self) -> bool:
        """Whether this node is the orderer now (and certainly still holds the role)."""
        ...

    async def wait_leading(self) -> None:
        """Return once this node is the orderer."""
        ...

    async def wait_lost(self) -> None:
        """Return once this node is no longer the orderer (an order in flight stops then)."""
        ...

    def issued(self, namespace: str, secret: str) -> Issued | None:
        """The record of the certificate the cluster shares for this Secret, if any."""
        ...

    async def publish(self, namespace: str, secret: str, shared: SharedCertificate) -> bool:
        """Share an issued certificate; False when this node is not the orderer any more."""
        ...

    def attempts(self, namespace: str, name: str) -> Attempts | None:
        """The shared backoff of one Certificate, if it failed lately."""
        ...

    async def record(self, namespace: str, name: str, attempts: Attempts | None) -> None:
        """Share a Certificate's backoff (None: it succeeded)."""
        ...

    def account(self, issuer: str, server: str) -> Account | None:
        """The ACME account the cluster uses with this issuer and server, if known."""
        ...

    async def share_account(self, issuer: str, account: Account) -> None:
        """Share the ACME account so the next orderer orders under the same one."""
        ...


class SharedAnswers(Protocol):
    """Challenge answers written by the orderer, read by whichever node the server reaches."""

    def get(self, kind: str, ident: str) -> bytes | None:
        """The answer of ``kind`` (``http01``, ``tlsalpn01``) for ``ident``, if pending."""
        ...

    async def put(self, kind: str, ident: str, value: bytes) -> None:
        """Offer an answer; returns once every reachable member of the cluster has it."""
        ...

    async def delete(self, kind: str, ident: str) -> None:
        """Withdraw an answer."""
        ...
