"""The supervisor: one trio nursery tree owning every listener, the admin API and reloads.

Theory of operation
-------------------
Data flows one way::

    files ─▶ ConfigStore (last good per file) ─▶ Resources
          ─▶ pools.allocate ─▶ translate() (pure) ─▶ ir.Model + statuses
          ─▶ compile per port (routing tables, TLS contexts) ─▶ Generation
          ─▶ SocketSet.reconcile (bind new, keep old) ─▶ PortServer.runtime swap
          ─▶ status (admin API, STATE_DIR/status.yaml, the L2 sidecar)

A reload builds the whole next generation to one side first; only when that
succeeded are sockets reconciled and runtimes swapped, one attribute
assignment per port. If building fails (a bug, not a config error: those are
reported per file by the store), the previous generation keeps serving and
the failure is counted in ``edgegw_config_reloads_total{result="failure"}``.

Shutdown (SIGTERM/SIGINT): every port stops accepting at once and drains for
``--drain-timeout`` seconds; the process then exits 0.

Under ``--cluster`` a `ClusterLink` shares pool allocations through etcd (the allocations
the elected node writes become this node's "previous" ones, then a reload) and adds the
``cluster`` section to ``/api/status``; see `edgegw.cluster.shared`. ACME orders run on one
elected node and certificates reach every node through etcd (`edgegw.cluster.certificates`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, TypeVar

import msgspec
import trio

from edgegw import addresses, ir, pools, statusfile, systemd
from edgegw.admin.redact import redacted
from edgegw.admin.server import open_admin_listeners, serve_admin
from edgegw.api import Resources
from edgegw.certificates.challenges import Challenges
from edgegw.certificates.manager import CertificateManager
from edgegw.certificates.store import CertificateStore
from edgegw.cluster.certificates import ClusterCertificates
from edgegw.cluster.options import ClusterOptions
from edgegw.cluster.session import Session
from edgegw.cluster.shared import AllocationMap, ClusterLink
from edgegw.config.store import ConfigStore, LoadResult
from edgegw.config.watch import serve_reload_triggers
from edgegw.logsetup import setup_logging
from edgegw.net import oidckey, udp
from edgegw.net.dispatch import Dispatcher, compile_runtime
from edgegw.net.etcd import EtcdClient
from edgegw.net.healthcheck import HealthChecks
from edgegw.net.jwks import remotes_of
from edgegw.net.listeners import BindError, BindKey, SocketSet
from edgegw.net.localaddr import local_addresses, static_addresses
from edgegw.net.oidc import providers_of
from edgegw.net.ports import DatagramPortServer, PortRuntime, PortServer, quic_runtimes
from edgegw.observe import Collected, Observer
from edgegw.rebind import RebindSignal, serve_rebinds
from edgegw.status import StatusBook
from edgegw.translate import ResourceStatus, TranslateOptions, translate
from edgegw.workers import run_workers, worker_index

if TYPE_CHECKING:
    from edgegw.net.quic import QuicPortServer

log = logging.getLogger("edgegw")

AnyPortServer: TypeAlias = "PortServer | DatagramPortServer | QuicPortServer"
T = TypeVar("T")


class RunOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``edgegw run`` was told on its command line."""

    config_dir: Path
    admin: str = "127.0.0.1:9901"
    state_dir: Path | None = None
    default_addresses: tuple[str, ...] = ("0.0.0.0", "::")
    controller_name: str = "edgegw.io/gateway-controller"
    log_format: str = "text"
    log_level: str = "info"
    workers: int = 1
    drain_timeout: float = 30.0
    # STATE_DIR/certificates; every worker reads it even where state_dir is None
    certificates_dir: Path | None = None
    cluster: ClusterOptions | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        return cls(
            config_dir=args.config,
            admin=args.admin,
            state_dir=args.state_dir,
            default_addresses=tuple(args.default_address or ("0.0.0.0", "::")),
            controller_name=args.controller_name,
            log_format=args.log_format,
            log_level=args.log_level,
            workers=args.workers,
            drain_timeout=args.drain_timeout,
            cluster=ClusterOptions.from_args(args),
        )


def run(options: RunOptions) -> int:
    """``edgegw run``: serve until SIGTERM/SIGINT, then drain and return 0."""
    setup_logging(options.log_format, options.log_level)
    if not options.config_dir.is_dir():
        log.error("config directory %s does not exist", options.config_dir)
        return 2
    index = worker_index()
    if options.workers > 1 and index is None:
        return run_workers(options.workers)
    if options.state_dir is not None:
        certificates = options.state_dir / "certificates"
        options = msgspec.structs.replace(options, certificates_dir=certificates)
    if index not in (None, 0):  # one admin API, state writer and cluster link: worker 0's
        options = msgspec.structs.replace(options, admin="", state_dir=None, cluster=None)
    tune_gc()
    trio.run(serve_gateway, options)
    return 0


GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Run the cyclic collector a thirtieth as often as Python's default.

    Reference counting frees nearly all a request allocates (connections leave no
    cycles: see ``RequestParser.release``), yet at the default threshold (700) the
    collector walks the young generation every few connections and the whole heap,
    a pause of about 25 ms that every request in flight waits out, about once a
    second under load. Measured under wrk for 12 s: 450 ms of collection at the
    default, 19 ms at 20,000, where a young collection takes about 0.1 ms.
    """
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection during a reload; then freeze what it built.

    A reload of 10,000 routes allocates millions of objects; the collector, run by
    whichever thread allocates, walked them all while holding the GIL, 300-600 ms
    at a time, and the event loop stalled for as long. After the reload
    everything alive is moved to the permanent generation (``gc.freeze``), so
    later collections skip the configuration; reference counting still frees
    each old generation, which holds no cycles.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


class Built(NamedTuple):
    """One generation built to one side, before it is swapped in."""

    loaded: LoadResult
    model: ir.Model
    statuses: tuple[ResourceStatus, ...]
    runtimes: dict[BindKey, PortRuntime]
    allocations: dict[tuple[str, str], tuple[str, ...]]
    replaced: tuple[str, ...]  # warnings: Secrets an issued certificate stands in for


class Gateway:
    """The running gateway's state, shared by reloads, ports and the admin API."""

    def __init__(self, options: RunOptions, nursery: trio.Nursery) -> None:
        self.options = options
        self.nursery = nursery
        state_dir = _usable_state_dir(options.state_dir)
        self.state_dir = state_dir
        self.store = ConfigStore(options.config_dir, state_dir)
        self.sockets = SocketSet(reuse_port=options.workers > 1)
        self.ports: dict[BindKey, AnyPortServer] = {}
        self.observer = Observer()
        certificates_dir = options.certificates_dir if state_dir or options.workers > 1 else None
        self.challenges = Challenges(certificates_dir / "http01" if certificates_dir else None)
        self.certificates = CertificateManager(
            CertificateStore(certificates_dir) if certificates_dir else None,
            self.challenges,
            on_issued=self._certificates_changed,
            may_order=state_dir is not None,  # worker 0 orders, the others serve its files
        )
        _watch_certificates(self.observer, self.certificates)
        self.dispatcher = Dispatcher(
            self.observer,
            background=nursery,
            challenges=self.challenges,
            oidc_key=oidckey.load_or_create(
                certificates_dir.parent if certificates_dir else state_dir
            ),
        )
        self.observer.watch_tcp(self.dispatcher.tcp_stats)
        clusters = self.dispatcher.upstreams.clusters
        self.observer.watch_clusters(clusters)
        self.health = HealthChecks(
            clusters.active, clusters.endpoints, self.dispatcher.upstreams.dialer
        )
        self.book = StatusBook()
        self.model = ir.Model()
        self.generation = 0
        self.loaded = False
        self.bind_errors: dict[BindKey, BindError] = {}
        self.allocations: dict[tuple[str, str], tuple[str, ...]] = (
            pools.load_allocations(state_dir) if state_dir else {}
        )
        self.reload_lock = trio.Lock()
        self.cluster: ClusterLink | None = None
        self.runtimes: dict[BindKey, PortRuntime] = {}
        self.last_built: Built | None = None
        self.rebind = RebindSignal()
        self.status_file = statusfile.StatusFile(state_dir) if state_dir else None

    # --- the admin view -------------------------------------------------------------------

    def ready(self) -> bool:
        held, failed = self.sockets.sockets, self.bind_errors
        return self.loaded and all(
            p.bind_key in held or p.bind_key in failed for p in self.model.ports
        )

    def status_document(self) -> dict[str, Any]:
        document = self.book.document
        health = self.dispatcher.upstreams.clusters.status()
        if health:  # endpoints under a BackendTrafficPolicy healthCheck, as this process sees them
            document = {**document, "backendHealth": health}
        if self.cluster is None:
            return document
        return {**document, "cluster": self.cluster.status()}

    def config_document(self) -> dict[str, Any]:
        return {"generation": self.generation, "model": redacted(self.model)}

    def metrics_text(self) -> bytes:
        return self.observer.render()

    # --- reloads --------------------------------------------------------------------------

    async def reload(self, reason: str) -> None:
        """Build the next generation to one side, then swap it in."""
        async with self.reload_lock:
            started = time.monotonic()
            if self.loaded:
                systemd.reloading()
            try:
                with collector_paused():
                    loaded = await _in_thread(self.store.reload)
                    resources, statuses, replaced = self._certify(loaded)
                    built = await _in_thread(self._build, loaded, resources, statuses, replaced)
                    self._bind(built.runtimes)
                    # The status first, then traffic: what serves is never newer than it.
                    await _in_thread(self._publish, built, self.generation + 1)
                    self._apply(built)
                if self.status_file is not None:
                    self.status_file.submit(self.book.document)
                self.loaded = True  # ready once the status is there too
            except Exception:
                log.exception(
                    "reload (%s) failed; the previous configuration keeps serving", reason
                )
                self.observer.reloaded("failure")
                return
            self._log_problems(built)
            self.observer.reloaded("success")
            systemd.ready(
                f"generation {self.generation}: {len(self.ports)} ports, "
                f"{len(loaded.errors)} config errors"
            )
            log.info(
                "reload %d (%s) in %.0f ms: %d errors, %d warnings",
                self.generation,
                reason,
                (time.monotonic() - started) * 1000,
                len(loaded.errors),
                len(loaded.warnings),
            )

    def _certificates_changed(self) -> None:
        self.nursery.start_soon(self.reload, "certificates")

    def _certify(
        self, loaded: LoadResult
    ) -> tuple[Resources, tuple[ResourceStatus, ...], tuple[str, ...]]:
        """Certificates edgegw issued stand in for their Secrets (on the loop: it wakes orders)."""
        resources, plan, replaced = self.certificates.resolve(loaded.resources)
        self.certificates.update(plan)  # wakes the orders, which run after this swap
        resources = self.certificates.with_temporaries(resources)
        return resources, tuple(self.certificates.statuses(time.time())), tuple(replaced)

    def _build(
        self,
        loaded: LoadResult,
        resources: Resources,
        certificate_statuses: tuple[ResourceStatus, ...],
        replaced: tuple[str, ...],
    ) -> Built:
        """The next generation, built in a worker thread: all of it is pure."""
        assignments = addresses.assign(resources, self.allocations, self.options.controller_name)
        result = translate(
            resources,
            TranslateOptions(
                controller_name=self.options.controller_name,
                default_addresses=self.options.default_addresses,
                pool_assignments=assignments,
                local_addresses=local_addresses(static_addresses(loaded.resources.gateways)),
                generation=self.generation + 1,
                now=time.time(),
            ),
        )
        runtimes = {p.bind_key: compile_runtime(p) for p in result.model.ports}
        runtimes.update(quic_runtimes(runtimes))  # HTTP/3's UDP sockets
        allocations = {k: a.addresses for k, a in assignments.items() if a.addresses}
        statuses = (*result.statuses, *certificate_statuses)
        return Built(loaded, result.model, statuses, runtimes, allocations, replaced)

    def _apply(self, built: Built) -> None:
        """Swap the built generation in: on the event loop, and quick."""
        if self.dispatcher.jwks is not None:  # before the swap: new JWKS start fetching
            self.dispatcher.jwks.reconcile(remotes_of(built.model))
        if self.dispatcher.oidc is not None:  # new providers start their discovery
            self.dispatcher.oidc.reconcile(providers_of(built.model))
        self._swap_runtimes(built.runtimes)
        self.health.reconcile(built.model)  # checkers kept, started or stopped
        self.runtimes = built.runtimes
        self.last_built = built
        if self.bind_errors:
            self.rebind.poke()
        self.generation += 1
        self.model = built.model
        self.allocations = built.allocations
        self.observer.config_errors(len(built.loaded.errors))
        self.observer.addresses_allocated(sum(len(a) for a in self.allocations.values()))
        if self.cluster is not None:
            self.nursery.start_soon(self.cluster.publish, dict(self.allocations))

    def _publish(self, built: Built, generation: int) -> None:
        """Status for the admin API (in a worker thread: 10,000 routes take seconds)."""
        self.book.publish(generation, built.loaded, built.statuses, built.model, self.bind_errors)
        self._persist(built.allocations)

    @staticmethod
    def _log_problems(built: Built) -> None:
        for warning in (*built.loaded.warnings, *built.replaced):
            log.warning("%s", warning)
        for error in built.loaded.errors:
            log.error("%s", error)

    def _bind(self, runtimes: dict[BindKey, PortRuntime]) -> None:
        """Stop the ports no longer wanted, bind the new ones and note what failed."""
        for key in set(self.ports) - set(runtimes):
            self.ports.pop(key).stop(self.options.drain_timeout)
        _, errors = self.sockets.reconcile(runtimes)
        self.bind_errors = {
            k: e
            for k, e in self.bind_errors.items()
            if k in runtimes and k not in self.sockets.sockets
        }
        self.bind_errors.update(errors)
        for key, error in errors.items():
            log.error("cannot bind %s: %s", key, error.message)

    def _swap_runtimes(self, runtimes: dict[BindKey, PortRuntime]) -> None:
        """New routing tables for the ports kept; servers for the ports just bound."""
        for key, runtime in runtimes.items():
            server = self.ports.get(key)
            if server is not None:
                server.runtime = runtime
            elif key in self.sockets.sockets:
                self.ports[key] = server = self._new_port_server(key, runtime)
                self.nursery.start_soon(self._serve_port, server)

    def has_bind_errors(self) -> bool:
        return bool(self.bind_errors)

    async def retry_binds(self) -> None:
        """Bind what failed before; serve and publish what now succeeds (``rebind``)."""
        async with self.reload_lock:
            bound = []
            for key in list(self.bind_errors):
                error = self.sockets.retry(key)
                if error is not None:
                    self.bind_errors[key] = error
                    continue
                del self.bind_errors[key]
                self.ports[key] = server = self._new_port_server(key, self.runtimes[key])
                self.nursery.start_soon(self._serve_port, server)
                bound.append(key)
            if bound and self.last_built is not None:
                log.info("bound %s now that it is free", ", ".join(map(str, bound)))
                await _in_thread(self._publish, self.last_built, self.generation)
                if self.status_file is not None:
                    self.status_file.submit(self.book.document)

    def _new_port_server(self, key: BindKey, runtime: PortRuntime) -> AnyPortServer:
        sock = self.sockets.sockets[key]
        if key[0] == "udp" and runtime.port.transport == "tcp":  # HTTP/3 beside HTTPS
            from edgegw.net.quic import QuicPortServer  # aioquic loads only for HTTP/3

            quic_server = QuicPortServer(key, sock, runtime)
            self.dispatcher.attach_quic(quic_server)
            return quic_server
        if key[0] == "udp":
            options = udp.UDPOptions(dialer=self.dispatcher.upstreams.dialer)
            self.observer.watch_udp(options.stats)
            relay = functools.partial(udp.serve_udp, options=options)
            return DatagramPortServer(sock, runtime, relay)
        server = PortServer(sock, runtime)
        services = self.dispatcher.attach(server)
        server.handler = functools.partial(self.dispatcher.handle, services=services)
        return server

    async def _serve_port(self, server: AnyPortServer) -> None:
        try:
            await server.serve()
        finally:
            if self.ports.get(server.key) is server:
                self.ports.pop(server.key)

    def _persist(self, allocations: dict[tuple[str, str], tuple[str, ...]]) -> None:
        """Allocations (small); ``serve_status_file`` writes the status file."""
        if self.state_dir is None:
            return
        try:
            pools.save_allocations(self.state_dir, allocations)
        except OSError as exc:
            log.warning("cannot write to state dir %s: %s", self.state_dir, exc)

    async def adopt(self, allocations: AllocationMap) -> None:
        """Take the cluster's pool allocations as the previous ones, then reload."""
        async with self.reload_lock:
            self.allocations = dict(allocations)
        await self.reload("cluster allocations")

    # --- shutdown -------------------------------------------------------------------------

    async def drain(self) -> None:
        """Stop accepting everywhere, let in-flight work finish within the grace period."""
        grace = self.options.drain_timeout
        systemd.stopping()
        log.info("draining %d ports for up to %.0f s", len(self.ports), grace)
        servers = list(self.ports.values())
        for server in servers:
            server.stop(grace)
        self.sockets.close_all()
        with trio.move_on_after(grace + 1):
            for server in servers:
                await server.done.wait()


def _watch_certificates(observer: Observer, manager: CertificateManager) -> None:
    """cert-manager's certificate metrics, named under ``edgegw_``, read when scraped."""
    observer.registry.add(
        Collected(
            "gauge",
            "edgegw_certificate_expiration_timestamp_seconds",
            "The date after which the certificate expires (POSIX seconds).",
            ("namespace", "name"),
            manager.expiration_samples,
        )
    )
    observer.registry.add(
        Collected(
            "gauge",
            "edgegw_certificate_ready_status",
            "The Ready condition of the certificate.",
            ("namespace", "name", "condition"),
            manager.ready_samples,
        )
    )


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a reload step in a worker thread, which shutdown abandons rather than waits for.

    Every step is pure or writes atomically (temporary file, then rename), so a step
    left running when the process exits leaves nothing half done.
    """
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


def _usable_state_dir(state_dir: Path | None) -> Path | None:
    if state_dir is None:
        return None
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("state dir %s is not usable (%s); running without one", state_dir, exc)
        return None
    return state_dir if os.access(state_dir, os.W_OK) else None


async def serve_gateway(options: RunOptions) -> None:
    """Run the gateway until SIGTERM or SIGINT, then drain.

    The signals are read from the start: a first reload of a large directory takes
    seconds, and SIGTERM meanwhile must still end the process.
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as stop_signals:
        async with contextlib.AsyncExitStack() as stack:
            client = None
            if options.cluster is not None:  # entered first: closed after every task using it
                client = await stack.enter_async_context(options.cluster.client())
            nursery = await stack.enter_async_context(trio.open_nursery())
            gateway = Gateway(options, nursery)
            nursery.start_soon(gateway.observer.access_log.run)
            nursery.start_soon(gateway.health.serve)
            if options.cluster is not None and client is not None:
                await _join_cluster(gateway, options.cluster, client)
            if gateway.status_file is not None:
                nursery.start_soon(statusfile.serve_status_file, gateway.status_file)
            admin_listeners = await open_admin_listeners(options.admin) if options.admin else []
            # SIGHUP and the watcher first: READY=1 (sent by the first reload) invites
            # `systemctl reload`, and SIGHUP's default action would end the process.
            await nursery.start(serve_reload_triggers, options.config_dir, gateway.reload)
            nursery.start_soon(_start_serving, gateway, admin_listeners)
            nursery.start_soon(serve_rebinds, gateway, gateway.rebind)
            async for signum in stop_signals:
                log.info("received %s", signal.Signals(signum).name)
                break
            await gateway.drain()
            if gateway.cluster is not None:  # the allocator role moves at once
                with trio.move_on_after(options.cluster.lease_ttl if options.cluster else 1):
                    await gateway.cluster.session.revoke()
            if gateway.status_file is not None:
                with trio.move_on_after(5):
                    await statusfile.flush(gateway.status_file)
            nursery.cancel_scope.cancel()


async def _join_cluster(gateway: Gateway, cluster: ClusterOptions, client: EtcdClient) -> None:
    """Start the cluster link; wait briefly for etcd so the first reload uses its allocations."""
    session = Session(client, cluster.node, cluster.lease_ttl, speaker=False)
    link = ClusterLink(session, gateway.adopt)
    manager = gateway.certificates
    shared = ClusterCertificates(
        session, manager.store, gateway._certificates_changed, manager.orders, gateway.challenges
    )
    link.certificates = manager.coordinator = gateway.challenges.shared = shared
    await gateway.nursery.start(link.serve)
    await link.wait_synced()
    if link.adopted is not None:
        gateway.allocations = dict(link.adopted)
    gateway.cluster = link


async def _start_serving(gateway: Gateway, admin_listeners: list[trio.SocketListener]) -> None:
    """The first reload, then certificates and the admin API (``/readyz`` never before it)."""
    await gateway.reload("start")
    await gateway.nursery.start(gateway.certificates.run)
    if admin_listeners:
        await gateway.nursery.start(serve_admin, admin_listeners, gateway)
    await gateway.nursery.start(systemd.serve_watchdog)
    log.info("edgegw serving %s, admin on %s", gateway.options.config_dir, gateway.options.admin)
