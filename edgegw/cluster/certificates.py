"""ACME under ``--cluster``: one node orders, every node serves, all through etcd.

Theory of operation
-------------------
The gateways campaign for ``edgegw/certificates/orderer`` the way they campaign for the
allocator: a transaction that creates the key, bound to the node's lease, only if it does not
exist. The holder is the *orderer* while its lease is certainly alive (`Session.healthy`, which
turns false a margin before etcd could expire the lease): the certificate manager orders only
then, and abandons an order in flight as soon as `leading` turns false, so it has stopped before
another node can win the key. When the orderer dies its lease expires, the key vanishes, the
watch tells every node, and the next campaign takes over; SIGTERM revokes the lease, so that
happens at once.

What the orderer learns it writes to etcd, fenced by a comparison on the orderer key's lease
(a node that lost the role writes nothing):

- each issued certificate, chain *and private key*, under ``issued/NS/SECRET``. Every node
  (the orderer too) copies a shared certificate newer than its own to its
  ``STATE_DIR/certificates/`` and rebuilds its TLS contexts (`on_copied`), which a reload
  does without closing a connection;
- each Certificate's failures and next attempt under ``attempts/``, so a new orderer keeps the
  backoff instead of ordering again at once;
- the ACME account, so orders stay under one account;
- each pending HTTP-01 / TLS-ALPN-01 answer under ``challenges/``, bound to the orderer's lease.
  Every gateway registers under ``gateways/`` and, once its copy of etcd (the session's watch)
  holds an answer, says so under ``seen/``; `put` returns once every registered gateway has
  (or after `PROPAGATION_DEADLINE`), so whichever node the ACME server reaches answers from its
  own copy, without waiting.
  With ``--workers N`` only worker 0 has that copy: it mirrors the answers into the files the
  other workers read (`Challenges.mirror`).

Everything is read from the session's copy of ``edgegw/`` (`Session.kvs`), so lookups never
wait on etcd. Values are never logged. Nothing is encrypted: there is no key to encrypt with
that the nodes would not also have to share, so etcd must be reachable only by the nodes
(README "Two or three boxes").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
import trio

from edgegw.certificates.challenges import Challenges
from edgegw.certificates.coordination import Attempts, SharedCertificate
from edgegw.certificates.store import Account, CertificateStore, Issued
from edgegw.cluster import keys
from edgegw.cluster.session import Session
from edgegw.net.etcd import Compare, Delete, EtcdError, Put

log = logging.getLogger(__name__)

LOST_POLL = 0.1
PROPAGATION_DEADLINE = 2.0
S = TypeVar("S")


@dataclass(slots=True)
class ClusterCertificates:
    """This node's part in the cluster's certificates: campaign, copy, share; see above."""

    session: Session
    store: CertificateStore | None
    on_copied: Callable[[], None] = lambda: None
    may_order: bool = True
    challenges: Challenges | None = None
    _copied: dict[bytes, int] = field(default_factory=dict)
    _mirrored: set[bytes] = field(default_factory=set)
    _registered: int = 0
    _changed: trio.Event = field(default_factory=trio.Event)

    # --- the orderer ----------------------------------------------------------------------

    def leading(self) -> bool:
        session = self.session
        kv = session.kvs.get(keys.ORDERER)
        return (
            kv is not None
            and bool(session.lease)
            and kv.lease == session.lease
            and kv.value == session.node.encode()
            and session.healthy()
        )

    def orderer(self) -> str | None:
        """The node that orders now, as this node last saw it."""
        kv = self.session.kvs.get(keys.ORDERER)
        return kv.value.decode(errors="replace") if kv is not None else None

    async def wait_leading(self) -> None:
        while not self.leading():
            await self._next_change()

    async def wait_lost(self) -> None:
        while self.leading():
            await self._next_change()

    async def _next_change(self) -> None:
        # the lease's health can turn without any event: look again every LOST_POLL
        with trio.move_on_after(LOST_POLL):
            await self._changed.wait()

    async def step(self) -> None:
        """After any change in etcd: campaign, copy new certificates here, wake waiters."""
        try:
            await self._register()
            await self._campaign()
        except EtcdError as exc:
            log.debug("cannot campaign for the certificates: %s", exc)
        self._copy()
        fresh = self._mirror_answers()
        self._changed.set()
        self._changed = trio.Event()
        try:
            await self._acknowledge(fresh)
        except EtcdError as exc:  # the orderer waits a little, then goes on
            log.debug("cannot acknowledge a challenge answer: %s", exc)

    async def _register(self) -> None:
        session = self.session
        if session.lease and session.lease != self._registered:
            await session.client.put(keys.gateway_key(session.node), b"", lease=session.lease)
            self._registered = session.lease

    async def _campaign(self) -> None:
        session = self.session
        if not self.may_order or not session.lease or not session.healthy():
            return
        if keys.ORDERER in session.kvs:
            return
        put = Put(keys.ORDERER, session.node.encode(), session.lease)
        result = await session.client.txn([Compare(keys.ORDERER, "CREATE", 0)], [put])
        if result.succeeded:
            log.info("%s: this gateway orders the cluster's certificates", session.node)

    def _fence(self) -> list[Compare]:
        """Comparisons that hold only while this node holds the orderer key."""
        lease = self.session.lease
        return [
            Compare(keys.ORDERER, "LEASE", lease),
            Compare(keys.ORDERER, "VALUE", self.session.node.encode()),
        ]

    # --- issued certificates --------------------------------------------------------------

    def _copy(self) -> None:
        """Copy each shared certificate newer than this node's to disk; rebuild if any."""
        if self.store is None:
            return
        copied = False
        for key, kv in list(self.session.kvs.items()):
            if not key.startswith(keys.ISSUED) or self._copied.get(key) == kv.mod_revision:
                continue
            self._copied[key] = kv.mod_revision
            copied |= self._copy_one(key[len(keys.ISSUED) :].decode(errors="replace"), kv.value)
        if copied:
            self.on_copied()

    def _copy_one(self, name: str, raw: bytes) -> bool:
        assert self.store is not None
        namespace, _, secret = name.partition("/")
        try:
            shared = msgspec.json.decode(raw, type=SharedCertificate)
            found = self.store.load(namespace, secret)
            if found is not None and found[1].not_before >= shared.info.not_before:
                return False
            self.store.save(
                namespace, secret, shared.chain.encode(), shared.key.encode(), shared.info
            )
        except (msgspec.DecodeError, ValueError, OSError) as exc:
            log.warning("cannot use the shared certificate %s: %s", name, type(exc).__name__)
            return False
        log.info("certificate for Secret %s received from the cluster", name)
        return True

    def _mirror_answers(self) -> set[bytes]:
        """Mirror new and withdrawn answers for the other workers; returns the new ones."""
        kvs = self.session.kvs
        present = {key for key in kvs if key.startswith(keys.CHALLENGES)}
        fresh = present - self._mirrored
        for key in fresh | (self._mirrored - present):
            kind, _, ident = key[len(keys.CHALLENGES) :].decode(errors="replace").partition("/")
            if self.challenges is not None:
                self.challenges.mirror(kind, ident, kvs[key].value if key in kvs else None)
        self._mirrored = present
        return fresh

    async def _acknowledge(self, fresh: set[bytes]) -> None:
        """Tell the orderer this gateway answers these challenges now."""
        session = self.session
        for key in fresh if session.lease else ():
            kind, _, ident = key[len(keys.CHALLENGES) :].decode(errors="replace").partition("/")
            seen = keys.seen_key(kind, ident, session.node)
            await session.client.put(seen, b"", lease=session.lease)

    def issued(self, namespace: str, secret: str) -> Issued | None:
        shared = _decode(self.session, keys.issued_key(namespace, secret), SharedCertificate)
        return shared.info if shared is not None else None

    async def publish(self, namespace: str, secret: str, shared: SharedCertificate) -> bool:
        put = Put(keys.issued_key(namespace, secret), msgspec.json.encode(shared))
        result = await self.session.client.txn(self._fence(), [put])
        return result.succeeded

    # --- backoff and account --------------------------------------------------------------

    def attempts(self, namespace: str, name: str) -> Attempts | None:
        return _decode(self.session, keys.attempts_key(namespace, name), Attempts)

    async def record(self, namespace: str, name: str, attempts: Attempts | None) -> None:
        key = keys.attempts_key(namespace, name)
        if attempts is None and key not in self.session.kvs:
            return
        op = Delete(key) if attempts is None else Put(key, msgspec.json.encode(attempts))
        await self.session.client.txn(self._fence(), [op])

    def account(self, issuer: str, server: str) -> Account | None:
        found = _decode(self.session, keys.account_key(issuer, server), Account)
        return found if found is not None and found.server == server else None

    async def share_account(self, issuer: str, account: Account) -> None:
        put = Put(keys.account_key(issuer, account.server), msgspec.json.encode(account))
        await self.session.client.txn(self._fence(), [put])

    # --- challenge answers ----------------------------------------------------------------

    def get(self, kind: str, ident: str) -> bytes | None:
        kv = self.session.kvs.get(keys.challenge_key(kind, ident))
        return kv.value if kv is not None else None

    async def put(self, kind: str, ident: str, value: bytes) -> None:
        key = keys.challenge_key(kind, ident)
        await self.session.client.put(key, value, lease=self.session.lease)
        with trio.move_on_after(PROPAGATION_DEADLINE):
            while missing := self._not_seen(kind, ident):
                await self._next_change()
        if missing:
            log.warning("challenge answer not seen by %s in time", ", ".join(sorted(missing)))

    def _not_seen(self, kind: str, ident: str) -> set[str]:
        """The live gateways that have not said they hold this answer."""
        kvs = self.session.kvs
        gateways = {k[len(keys.GATEWAYS) :].decode() for k in kvs if k.startswith(keys.GATEWAYS)}
        return {node for node in gateways if keys.seen_key(kind, ident, node) not in kvs}

    async def delete(self, kind: str, ident: str) -> None:
        seen = keys.seen_key(kind, ident, "")
        acks = [key for key in self.session.kvs if key.startswith(seen)]
        try:
            for key in (keys.challenge_key(kind, ident), *acks):
                await self.session.client.delete(key)
        except EtcdError as exc:  # bound to the lease: it goes with the node at worst
            log.debug("cannot withdraw a challenge answer: %s", exc)


def _decode(session: Session, key: bytes, kind: type[S]) -> S | None:
    kv = session.kvs.get(key)
    if kv is None:
        return None
    try:
        return msgspec.json.decode(kv.value, type=kind)
    except msgspec.DecodeError:
        log.warning("ignoring an unreadable value at %s in etcd", key.decode(errors="replace"))
        return None
