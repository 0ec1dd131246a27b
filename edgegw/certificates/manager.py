"""The certificate life cycle: load, issue, renew, retry, and report as cert-manager would.

Theory of operation
-------------------
Each reload hands the manager the pure plan (``translate.certificates``).
The manager keeps one ``CertificateState`` per planned certificate and, in one task,
repeats: decide (synchronously, from the states and the clock) which
certificate is due first and when; sleep until then or until woken; issue
it. A certificate is due when none is on disk for its request, when its
renewal time has come (``renewBefore``, ``renewBeforePercentage``, else 2/3
of its lifetime), or when its backoff after a failure has passed (5 s
doubling to 1 h, jittered ±20%, never before the server's Retry-After).

Issued certificates go to ``STATE_DIR/certificates/`` and then the gateway
is asked to rebuild its generation (``on_issued``): ``overlay`` puts every
certificate on disk in place of the Secret of the same name, so the next
handshakes get the new certificate while open connections keep theirs. At
start the files already on disk are served without a new order.

With ``--workers N`` only the process holding ``.order.lock`` orders; the
others only serve what is on disk (``refresh`` when files change).

Under ``--cluster`` a `Coordinator` (set by the gateway) elects one node, the
orderer; the others wait. The orderer shares every certificate it issues and
every failure's backoff; each node copies shared certificates to its own
``STATE_DIR/certificates/`` (`edgegw.cluster.certificates`), from where they
are served as above. A node that becomes the orderer re-reads its states
(disk and the shared backoff) first, so renewal and backoff carry over, and
an order in flight is abandoned as soon as the node may have lost the role,
before another node can take it: two nodes never order at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn

import httpx
import msgspec
import trio
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from edgegw import api
from edgegw.admin.metrics import LabelValues
from edgegw.api import certmanager as cm
from edgegw.certificates import pki
from edgegw.certificates.acme import ACMEClient, ACMEError, Key, http_client
from edgegw.certificates.challenges import Challenges
from edgegw.certificates.coordination import Attempts, Coordinator, SharedCertificate
from edgegw.certificates.solvers import choose
from edgegw.certificates.state import (
    CertificateState,
    certificate_status,
    condition,
    iso,
    resource,
)
from edgegw.certificates.store import Account, CertificateStore, Issued, request_digest
from edgegw.certs import KeyPair, load_key_pair
from edgegw.translate import ResourceStatus
from edgegw.translate.certificates import (
    CertificatePlan,
    CertificatesPlan,
    IssuerPlan,
    plan_certificates,
)

log = logging.getLogger("edgegw.certificates")

BACKOFF_BASE = 5.0
BACKOFF_MAX = 3600.0


class CertificateManager:
    """Keeps every planned certificate issued; one per process."""

    def __init__(
        self,
        store: CertificateStore | None,
        challenges: Challenges,
        on_issued: Callable[[], None],
        *,
        may_order: bool = True,
    ) -> None:
        self.store = store
        self.challenges = challenges
        self.on_issued = on_issued
        self.plan = CertificatesPlan()
        self._states: dict[tuple[str, str], CertificateState] = {}
        self._issuer_status: dict[tuple[str, str, str], tuple[bool, str, str, str]] = {}
        self._wake = trio.Event()
        self._lock_fd: int | None = None
        self._temporary: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self.orders = store is not None and may_order and self._take_order_lock()
        self.coordinator: Coordinator | None = None  # set under --cluster

    def _take_order_lock(self) -> bool:
        assert self.store is not None
        self.store.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.store.root / ".order.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            log.info("another process orders certificates; this one serves them")
            return False
        self._lock_fd = fd
        return True

    # --- what the gateway serves ----------------------------------------------------------

    def resolve(
        self, resources: api.Resources
    ) -> tuple[api.Resources, CertificatesPlan, list[str]]:
        """The plan, and ``resources`` with its issued certificates in place of their Secrets.

        Only certificates still planned stand in for a Secret (a Gateway that
        lost its annotation gets its DIR Secret back). A few rounds, because an
        issued certificate can be the CA of another issuer (cert-manager's
        selfSigned → CA → ca Issuer bootstrap). Warnings name the DIR Secrets
        an issued certificate replaces.
        """
        issued = self.store.load_all() if self.store is not None else {}
        plan = plan_certificates(resources)
        current = resources
        for _ in range(3):
            wanted = {(c.namespace, c.secret_name) for c in plan.certificates}
            current = _overlay(resources, {k: v for k, v in issued.items() if k in wanted})
            again = plan_certificates(current)
            if again == plan:
                break
            plan = again
        replaced = [
            f"Secret {s.metadata.namespace}/{s.metadata.name} in {s.source.file} is replaced "
            "by the certificate edgegw issued for it"
            for s in resources.secrets
            if s.source.file and s not in current.secrets
        ]
        return current, plan, replaced

    def with_temporaries(self, resources: api.Resources, every: bool = False) -> api.Resources:
        """A temporary self-signed certificate for each TLS-ALPN-01 certificate not yet issued.

        TLS-ALPN-01 is answered on the HTTPS port, which is only served once
        its listener has a certificate (cert-manager has the same stopgap:
        ``cert-manager.io/issue-temporary-certificate``). Kept in memory only.
        ``every``: for every planned certificate (``edgegw check``, which issues nothing).
        """
        have = {(s.metadata.namespace or "", s.metadata.name) for s in resources.secrets}
        added = []
        for state in self._states.values():
            plan = state.plan
            key = (plan.namespace, plan.secret_name)
            issuer = self.plan.issuer(plan.issuer)
            if key in have or issuer is None or not (every or issuer.challenge == "tls-alpn-01"):
                continue
            if key not in self._temporary:
                leaf = pki.new_key("ECDSA", None)
                chain = pki.sign_local(plan, leaf, time.time(), None)
                self._temporary[key] = (chain, pki.key_pem(leaf))
            added.append(_tls_secret(plan.namespace, plan.secret_name, *self._temporary[key]))
        if not added:
            return resources
        return _with_secrets(resources, [*resources.secrets, *added])

    def update(self, plan: CertificatesPlan) -> None:
        """Take a new plan: keep the state of unchanged certificates, load the others."""
        states: dict[tuple[str, str], CertificateState] = {}
        for cert in plan.certificates:
            key = (cert.namespace, cert.name)
            state = self._states.get(key)
            if state is None or state.plan != cert or not self._leading():
                state = self._load(cert, state)
            states[key] = state
        self.plan = plan
        self._states = states
        self._wake.set()

    def _load(self, plan: CertificatePlan, before: CertificateState | None) -> CertificateState:
        state = CertificateState(plan=plan)
        if before is not None and request_digest(before.plan) == request_digest(plan):
            state = msgspec.structs.replace(before, plan=plan)
        if self.store is not None:
            found = self.store.load(plan.namespace, plan.secret_name)
            if found is not None:
                state.pair, state.request = found[0], found[1].request
        if self.coordinator is not None and not state.issuing:
            _apply_attempts(state, self.coordinator.attempts(plan.namespace, plan.name))
        return state

    def _leading(self) -> bool:
        """Whether this process orders now (and so its states are the truth)."""
        return self.orders and (self.coordinator is None or self.coordinator.leading())

    # --- the loop -------------------------------------------------------------------------

    def _next(self, now: float) -> tuple[float, CertificateState | None]:
        """Decide: the certificate due first, and when (pure but for the states)."""
        best: tuple[float, CertificateState | None] = (now + 3600.0, None)
        for state in self._states.values():
            if state.issuing:
                continue
            when = state.due(now)
            if when < best[0]:
                best = (when, state)
        return best

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Issue and renew until cancelled; a process that does not order only serves."""
        task_status.started()
        if not self.orders:
            await self._follow()
        while True:
            if self.coordinator is not None and not self.coordinator.leading():
                await self._take_over(self.coordinator)
            self._wake = trio.Event()
            now = time.time()
            when, state = self._next(now)
            if state is None or when > now:
                with trio.move_on_after(min(when - now, 3600.0)):
                    await self._until_lost(self._wake.wait)
                continue
            await self._until_lost(functools.partial(self._issue, state))

    async def _take_over(self, coordinator: Coordinator) -> None:
        """Wait to be the orderer; then start from the shared state, not from this node's."""
        await coordinator.wait_leading()
        log.info("this node orders the cluster's certificates")
        self._states = {k: self._load(s.plan, None) for k, s in self._states.items()}
        await self._share_newer(coordinator)

    async def _until_lost(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work``, abandoning it if this node stops being the orderer meanwhile."""
        coordinator = self.coordinator
        if coordinator is None:
            return await work()
        async with trio.open_nursery() as nursery:

            async def guard() -> None:
                await coordinator.wait_lost()
                log.info("this node no longer orders certificates")
                nursery.cancel_scope.cancel()

            nursery.start_soon(guard)
            await work()
            nursery.cancel_scope.cancel()

    async def _share_newer(self, coordinator: Coordinator) -> None:
        """Share what this node holds that is newer than the cluster's copy (or missing)."""
        assert self.store is not None
        for state in self._states.values():
            plan = state.plan
            found = self.store.load(plan.namespace, plan.secret_name)
            shared = coordinator.issued(plan.namespace, plan.secret_name)
            if found is not None and (shared is None or found[1].not_before > shared.not_before):
                await self._publish(coordinator, plan, found[0], found[1])

    async def _follow(self) -> NoReturn:
        """Serve what the ordering process writes: rebuild when the files change."""
        seen = self._files()
        while True:
            await trio.sleep(1.0)
            now = self._files()
            if now != seen:
                seen = now
                self.on_issued()

    def _files(self) -> tuple[tuple[str, int], ...]:
        if self.store is None or not self.store.root.is_dir():
            return ()
        found = []
        for path in sorted(self.store.root.glob("*/*.crt")):
            with contextlib.suppress(OSError):
                found.append((str(path), path.stat().st_mtime_ns))
        return tuple(found)

    async def _issue(self, state: CertificateState) -> None:
        plan = state.plan
        issuer = self.plan.issuer(plan.issuer)
        if issuer is None:
            return
        state.issuing = True
        started = time.monotonic()
        log.info("certificate %s/%s: ordering from %s", plan.namespace, plan.name, issuer.ref.label)
        try:
            key = pki.new_key(plan.key_algorithm, plan.key_size)
            chain = await self._sign(plan, issuer, key)
            pair, info = self._save(plan, chain, pki.key_pem(key))
        except Exception as exc:  # whatever a server or resolver does: retry later
            retry_after = exc.retry_after if isinstance(exc, ACMEError) else None
            if not isinstance(exc, ACMEError | httpx.HTTPError | OSError | ValueError):
                log.exception("certificate %s/%s: unexpected failure", plan.namespace, plan.name)
            self._failed(state, str(exc) or type(exc).__name__, retry_after)
            self.on_issued()  # status shows the failure
            await self._record(state)
            return
        finally:
            state.issuing = False
        state.pair, state.request = pair, info.request
        state.failures, state.next_attempt = 0, 0.0
        log.info(
            "certificate %s/%s issued by %s in %.1f s, valid until %s",
            plan.namespace, plan.name, plan.issuer.label, time.monotonic() - started,
            iso(pair.not_after),
        )  # fmt: skip
        self.on_issued()
        if self.coordinator is not None:
            await self._publish(self.coordinator, plan, pair, info)
            await self._record(state)

    async def _publish(
        self, coordinator: Coordinator, plan: CertificatePlan, pair: KeyPair, info: Issued
    ) -> None:
        """Share a certificate; one not shared now is shared by the next orderer (disk)."""
        shared = SharedCertificate(
            chain=pair.chain_pem.decode(), key=pair.key_pem.decode(), info=info
        )
        try:
            if await coordinator.publish(plan.namespace, plan.secret_name, shared):
                return
            reason = "this node no longer orders"
        except Exception as exc:  # the cluster's store is unreachable: keep it here
            reason = type(exc).__name__
        log.warning(
            "certificate %s/%s is not shared with the cluster yet (%s)",
            plan.namespace, plan.name, reason,
        )  # fmt: skip

    async def _record(self, state: CertificateState) -> None:
        """Share the backoff, so the next orderer honours it (best effort)."""
        if self.coordinator is None:
            return
        attempts = None
        if state.failures:
            attempts = Attempts(
                failures=state.failures, next_attempt=state.next_attempt,
                last_failure=state.last_failure, last_failure_time=state.last_failure_time,
            )  # fmt: skip
        try:
            await self.coordinator.record(state.plan.namespace, state.plan.name, attempts)
        except Exception as exc:  # the backoff is still kept here
            log.debug("cannot share the backoff: %s", type(exc).__name__)

    def _failed(self, state: CertificateState, message: str, retry_after: float | None) -> None:
        state.failures += 1
        state.last_failure = message[:1000]
        state.last_failure_time = time.time()
        delay = min(BACKOFF_BASE * 2 ** (state.failures - 1), BACKOFF_MAX)
        delay *= random.uniform(0.8, 1.2)
        state.next_attempt = time.time() + max(delay, retry_after or 0.0)
        log.warning(
            "certificate %s/%s: issuing failed (%s); retry in %.0f s",
            state.plan.namespace, state.plan.name, state.last_failure,
            state.next_attempt - time.time(),
        )  # fmt: skip

    def _save(self, plan: CertificatePlan, chain: bytes, key: bytes) -> tuple[KeyPair, Issued]:
        pair = load_key_pair(chain, key)
        info = Issued(
            request=request_digest(plan), issuer=plan.issuer.label,
            not_before=pair.not_before, not_after=pair.not_after,
        )  # fmt: skip
        assert self.store is not None
        self.store.save(plan.namespace, plan.secret_name, pair.chain_pem, key, info)
        return pair, info

    async def _sign(self, plan: CertificatePlan, issuer: IssuerPlan, key: Any) -> bytes:
        spec = issuer.spec
        if spec.self_signed is not None:
            return pki.sign_local(plan, key, time.time(), None)
        if spec.ca is not None:
            return pki.sign_local(plan, key, time.time(), (issuer.ca_chain_pem, issuer.ca_key_pem))
        return await self._acme(plan, issuer, key)

    async def _acme(self, plan: CertificatePlan, issuer: IssuerPlan, key: Any) -> bytes:
        spec = spec_acme(issuer)
        assert self.store is not None
        label = issuer.ref.label
        account = self._account(issuer)
        async with http_client(spec) as http:
            client = ACMEClient(http, spec.server, Key(pki.load_key(account.key_pem.encode())))  # type: ignore[arg-type]
            try:
                eab = spec.external_account_binding
                binding = (eab.key_id, issuer.eab_key) if eab is not None else None
                url = await client.register(spec.email, account.url, binding)
            except (ACMEError, httpx.HTTPError) as exc:
                self._issuer_status[_issuer_key(issuer)] = (
                    False, "ErrRegisterACMEAccount", f"Failed to register ACME account: {exc}", ""
                )  # fmt: skip
                raise
            if url != account.url:
                account = msgspec.structs.replace(account, url=url)
                self.store.save_account(label, account)
            coordinator = self.coordinator
            if coordinator is not None and coordinator.account(label, spec.server) != account:
                await coordinator.share_account(label, account)
            registered = "The ACME account was registered with the ACME server"
            self._issuer_status[_issuer_key(issuer)] = (
                True,
                "ACMEAccountRegistered",
                registered,
                url,
            )
            names = plan.dns_names or ((plan.common_name,) if plan.common_name else ())
            return await client.issue(
                names, pki.csr_der(plan, key), lambda n: choose(issuer, self.challenges, n)
            )

    def _account(self, issuer: IssuerPlan) -> Account:
        spec = spec_acme(issuer)
        assert self.store is not None
        found = None
        if self.coordinator is not None:  # the cluster's account, so orders stay under one
            found = self.coordinator.account(issuer.ref.label, spec.server)
        found = found or self.store.load_account(issuer.ref.label, spec.server)
        if found is not None:
            return found
        pem = issuer.account_key_pem or pki.key_pem(ec.generate_private_key(ec.SECP256R1()))
        if not isinstance(pki.load_key(pem), rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("the ACME account key must be RSA or ECDSA")
        account = Account(server=spec.server, key_pem=pem.decode())
        self.store.save_account(issuer.ref.label, account)
        return account

    # --- status and metrics ---------------------------------------------------------------

    def statuses(self, now: float) -> list[ResourceStatus]:
        """Certificate and Issuer statuses in cert-manager's shape (never key material)."""
        out = [certificate_status(s, now) for s in self._states.values()]
        for problem in self.plan.problems:
            cond = condition("Ready", False, problem.reason, problem.message)
            out.append(
                resource(problem.kind, problem.namespace, problem.name, {"conditions": [cond]})
            )
        for issuer in self.plan.issuers:
            out.append(self._issuerresource(issuer))
        return sorted(out, key=lambda r: (r.kind, r.namespace or "", r.name))

    def _issuerresource(self, issuer: IssuerPlan) -> ResourceStatus:
        spec = issuer.spec
        status: dict[str, Any] = {}
        if spec.acme is not None:
            known = self._issuer_status.get(_issuer_key(issuer))
            account = (
                self.store.load_account(issuer.ref.label, spec.acme.server) if self.store else None
            )
            if known is None and account is not None and account.url:
                registered = "The ACME account was registered with the ACME server"
                known = (True, "ACMEAccountRegistered", registered, account.url)
            if known is None:
                cond = condition(
                    "Ready", False, "Pending", "The ACME account is registered at the first order"
                )
            else:
                cond = condition("Ready", known[0], known[1], known[2])
                if known[3]:
                    status["acme"] = {"uri": known[3], "lastRegisteredEmail": spec.acme.email or ""}
        elif spec.ca is not None:
            cond = condition("Ready", True, "KeyPairVerified", "Signing CA verified")
        else:
            cond = condition("Ready", True, "IsReady", "")
        status["conditions"] = [cond]
        return resource(issuer.ref.kind, issuer.ref.namespace, issuer.ref.name, status)

    def expiration_samples(self) -> Iterable[tuple[LabelValues, float]]:
        for state in self._states.values():
            if state.pair is not None:
                yield (state.plan.namespace, state.plan.name), state.pair.not_after

    def ready_samples(self) -> Iterable[tuple[LabelValues, float]]:
        now = time.time()
        for state in self._states.values():
            ready = certificate_status(state, now).status["conditions"][0]["status"]
            for value in ("True", "False", "Unknown"):
                yield (state.plan.namespace, state.plan.name, value), float(ready == value)


def _apply_attempts(state: CertificateState, attempts: Attempts | None) -> None:
    """Take the cluster's backoff for a certificate (none shared: no failures)."""
    state.failures = attempts.failures if attempts else 0
    state.next_attempt = attempts.next_attempt if attempts else 0.0
    state.last_failure = attempts.last_failure if attempts else ""
    state.last_failure_time = attempts.last_failure_time if attempts else 0.0


def _tls_secret(namespace: str, name: str, chain: bytes, key: bytes) -> api.Secret:
    return api.Secret(
        api_version="v1",
        kind="Secret",
        type="kubernetes.io/tls",
        metadata=api.ObjectMeta(name=name, namespace=namespace),
        data={"tls.crt": chain, "tls.key": key},
    )


def _overlay(resources: api.Resources, issued: dict[tuple[str, str], KeyPair]) -> api.Resources:
    secrets = [
        s for s in resources.secrets if (s.metadata.namespace or "", s.metadata.name) not in issued
    ]
    secrets += [_tls_secret(ns, name, p.chain_pem, p.key_pem) for (ns, name), p in issued.items()]
    return _with_secrets(resources, secrets)


def _with_secrets(resources: api.Resources, secrets: list[api.Secret]) -> api.Resources:
    secrets.sort(key=lambda s: (s.metadata.namespace or "", s.metadata.name))
    return msgspec.structs.replace(resources, secrets=tuple(secrets))


def spec_acme(issuer: IssuerPlan) -> cm.ACMEIssuer:
    assert issuer.spec.acme is not None
    return issuer.spec.acme


def _issuer_key(issuer: IssuerPlan) -> tuple[str, str, str]:
    return (issuer.ref.kind, issuer.ref.namespace, issuer.ref.name)
