"""Where edgegw keeps its state in etcd, and the values' shapes.

Every key lives under ``edgegw/``:

- ``edgegw/members/NODE``: a speaker that is alive, bound to its lease; the value lists the
  addresses it can announce (JSON `MemberValue`).
- ``edgegw/owners/ADDRESS``: the node announcing the address, bound to that node's lease, so it
  vanishes with the node.
- ``edgegw/allocator``: the node whose gateway writes pool allocations, bound to its lease.
- ``edgegw/allocations``: every Gateway's pool addresses (JSON `Allocations`), no lease.
- ``edgegw/certificates/orderer``: the node whose gateway orders ACME certificates, bound to
  its lease.
- ``edgegw/certificates/issued/NAMESPACE/SECRET``: an issued certificate *with its private key*
  (JSON `SharedCertificate`), no lease.
- ``edgegw/certificates/attempts/NAMESPACE/NAME``: a Certificate's failures and backoff (JSON
  `Attempts`), no lease; deleted on success.
- ``edgegw/certificates/accounts/DIGEST``: the ACME account (with its key) per issuer and server.
- ``edgegw/certificates/challenges/KIND/ID``: a pending HTTP-01 token's or TLS-ALPN-01 name's
  answer, bound to the orderer's lease.
- ``edgegw/certificates/seen/KIND/ID/NODE``: NODE's gateway can answer that challenge now,
  bound to NODE's lease.
- ``edgegw/gateways/NODE``: a live gateway (``edgegw run --cluster``), bound to its lease.

Private keys are stored as they are: etcd must be reachable only by the edgegw nodes
(``etcds://`` with client certificates, and etcd's own access control), as a Kubernetes
cluster's Secrets rely on access to its etcd.
"""

from __future__ import annotations

import hashlib

import msgspec

PREFIX = b"edgegw/"
MEMBERS = PREFIX + b"members/"
OWNERS = PREFIX + b"owners/"
ALLOCATOR = PREFIX + b"allocator"
ALLOCATIONS = PREFIX + b"allocations"
CERTIFICATES = PREFIX + b"certificates/"
ORDERER = CERTIFICATES + b"orderer"
ISSUED = CERTIFICATES + b"issued/"
ATTEMPTS = CERTIFICATES + b"attempts/"
ACCOUNTS = CERTIFICATES + b"accounts/"
CHALLENGES = CERTIFICATES + b"challenges/"
SEEN = CERTIFICATES + b"seen/"
GATEWAYS = PREFIX + b"gateways/"


class MemberValue(msgspec.Struct, frozen=True):
    """What a speaker says about itself: the addresses it can announce here."""

    addresses: tuple[str, ...] = ()


class GatewayAllocation(msgspec.Struct, frozen=True):
    """One Gateway's pool addresses."""

    namespace: str
    name: str
    addresses: tuple[str, ...]


class Allocations(msgspec.Struct, frozen=True):
    """The allocations the elected gateway wrote, and which node wrote them."""

    node: str
    gateways: tuple[GatewayAllocation, ...] = ()


def member_key(node: str) -> bytes:
    return MEMBERS + node.encode()


def owner_key(address: str) -> bytes:
    return OWNERS + address.encode()


def issued_key(namespace: str, secret: str) -> bytes:
    return ISSUED + f"{namespace}/{secret}".encode()


def attempts_key(namespace: str, name: str) -> bytes:
    return ATTEMPTS + f"{namespace}/{name}".encode()


def account_key(issuer: str, server: str) -> bytes:
    return ACCOUNTS + hashlib.sha256(f"{issuer}\0{server}".encode()).hexdigest()[:24].encode()


def challenge_key(kind: str, ident: str) -> bytes:
    return CHALLENGES + f"{kind}/{ident}".encode()


def seen_key(kind: str, ident: str, node: str) -> bytes:
    return SEEN + f"{kind}/{ident}/{node}".encode()


def gateway_key(node: str) -> bytes:
    return GATEWAYS + node.encode()
