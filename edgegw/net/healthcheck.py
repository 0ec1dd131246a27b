"""Active health checks: one task per checker, in the data plane's nursery, kept across reloads.

Theory of operation
-------------------
``plan_checks`` (pure) reads a generation's model and lists every cluster
with a health check, with its endpoints. ``HealthChecks.reconcile`` runs on
the event loop when a generation is swapped in: a *checker* is one active
check configuration applied to one set of endpoints (and the backend's TLS),
so rules sharing a backend and a check share one task. Checkers still
wanted keep running untouched (their results and timing carry on); new ones
start, seeded with the results their endpoints already had under the same
configuration; the rest are cancelled. The clusters' tables are then pointed
at their checkers' results, all in one synchronous step, so a request never
sees a half-applied reload. Connections are never involved: probes use their
own connections, never the pool's.

A checker probes all its endpoints at once, each under ``timeout``, then
sleeps ``interval`` (Envoy arms its interval timer when the previous probe
ends), after an initial random delay of up to ``initial_jitter``. Probes are
HTTP/1.1 (``Connection: close``, as Envoy's default HTTP/1 health checker),
TCP (connect, send, read until the expected bytes came) or gRPC (one
``Health/Check`` call on an HTTP/2 connection of its own, TLS with ALPN h2
where the backend has TLS; ``proto/grpchealth.py``); their outcomes go to
``policy.activehealth``. A probe never touches request traffic: the load
balancer reads the results table and nothing else. With a ``healthCheckLog``
the probe's events (``policy/healthlog.py``) are appended to its file, one
line per cluster the checker serves, through a non-blocking descriptor kept
open while a check names the file: a full pipe loses lines, never stalls a
probe.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NoReturn

import msgspec
import trio

from edgegw import ir
from edgegw.net.clusters import ActiveTable
from edgegw.net.dial import Dialer
from edgegw.net.dns import ResolveError
from edgegw.net.tls_client import client_context
from edgegw.policy import healthlog
from edgegw.policy.activehealth import ActiveRecord, Outcome, apply, http_outcome, tcp_outcome
from edgegw.proto.events import DataReceived, MessageEnded, ResponseReceived
from edgegw.proto.grpchealth import HealthCall
from edgegw.proto.http1 import ProtocolError, ResponseParser, serialize_request_head

log = logging.getLogger("edgegw.health")

CheckerKey = tuple[ir.ActiveHealthCheck, tuple[ir.Endpoint, ...], "ir.BackendTLS | None"]
_READ = 4096


@dataclass(frozen=True, slots=True)
class ClusterCheck:
    """A cluster with a health check in the current generation."""

    policy: ir.ClusterPolicy
    endpoints: tuple[ir.Endpoint, ...]
    tls: ir.BackendTLS | None


def plan_checks(model: ir.Model) -> dict[str, ClusterCheck]:
    """Every cluster with an active or passive check, by name (pure)."""
    out: dict[str, ClusterCheck] = {}
    for backend in _backends(model):
        policy = backend.cluster
        if policy is None or (policy.active is None and policy.passive is None):
            continue
        out[policy.cluster] = ClusterCheck(policy, backend.endpoints, backend.tls)
    return out


def _backends(model: ir.Model) -> Iterator[ir.Backend]:
    for port in model.ports:
        for listener in port.listeners:
            for route in listener.http_routes:
                for rule in route.rules:
                    yield from rule.backends


@dataclass
class _Checker:
    table: ActiveTable
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    clusters: tuple[str, ...] = ()  # the clusters it checks for, named in its log lines


class HealthChecks:
    """The checker tasks, started and stopped by ``reconcile``."""

    def __init__(
        self,
        tables: dict[str, ActiveTable],
        endpoints: dict[str, tuple[ir.Endpoint, ...]],
        dialer: Dialer,
    ) -> None:
        self._tables = tables  # the pool's ``Clusters.active``, rebound in place
        self._endpoints = endpoints
        self._dialer = dialer
        self._checkers: dict[CheckerKey, _Checker] = {}
        self._nursery: trio.Nursery | None = None
        self._waiting: dict[str, ClusterCheck] | None = None
        self._logs: dict[str, int] = {}  # healthCheckLog path → open descriptor
        self._log_failed: set[str] = set()  # paths already warned about
        self.probes = 0  # probes made, for tests

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Run the checkers until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._waiting is not None:
                self._apply(self._waiting)
            task_status.started()
            await trio.sleep_forever()
        raise AssertionError("unreachable")

    def reconcile(self, model: ir.Model) -> None:
        """Start, keep and stop checkers for ``model``'s clusters (synchronous)."""
        wanted = plan_checks(model)
        if self._nursery is None:
            self._waiting = wanted
            self._point(wanted, {})
            return
        self._apply(wanted)

    def _apply(self, wanted: dict[str, ClusterCheck]) -> None:
        assert self._nursery is not None
        keys: dict[str, CheckerKey] = {}
        for name, check in wanted.items():
            if check.policy.active is not None:
                keys[name] = (check.policy.active, check.endpoints, check.tls)
        old = self._checkers
        new: dict[CheckerKey, _Checker] = {}
        for key in dict.fromkeys(keys.values()):
            checker = old.get(key)
            if checker is None:
                checker = _Checker(_seeded(key, old))
                self._nursery.start_soon(self._run, key, checker)
            new[key] = checker
        for key, checker in old.items():
            if key not in new:
                checker.scope.cancel()
        for key, checker in new.items():
            checker.clusters = tuple(sorted(name for name, k in keys.items() if k == key))
        self._close_logs({key[0].log.path for key in new if key[0].log is not None})
        self._checkers = new
        self._point(wanted, {name: new[key].table for name, key in keys.items()})

    def _point(self, wanted: dict[str, ClusterCheck], tables: dict[str, ActiveTable]) -> None:
        self._tables.clear()
        self._tables.update(tables)
        self._endpoints.clear()
        self._endpoints.update({name: check.endpoints for name, check in wanted.items()})

    async def _run(self, key: CheckerKey, checker: _Checker) -> None:
        config, endpoints, tls = key
        with checker.scope:
            if config.initial_jitter:
                await trio.sleep(random.uniform(0, config.initial_jitter))
            while True:
                async with trio.open_nursery() as nursery:
                    for endpoint in endpoints:
                        nursery.start_soon(self._check, config, endpoint, tls, checker)
                await trio.sleep(config.interval)

    async def _check(
        self,
        config: ir.ActiveHealthCheck,
        endpoint: ir.Endpoint,
        tls: ir.BackendTLS | None,
        checker: _Checker,
    ) -> None:
        outcome = await probe(self._dialer, config, endpoint, tls)
        self.probes += 1
        table = checker.table
        record = table.get(endpoint)
        if record is None:
            record = table[endpoint] = ActiveRecord()
        first = record.pending
        changed = apply(record, outcome, config)
        if changed:
            state = "healthy" if record.healthy else "unhealthy"
            log.info(
                "health check: %s:%s is %s (%s)", endpoint.address, endpoint.port, state, outcome
            )
        if config.log is not None:
            made = healthlog.events(config.log, outcome, first=first, changed=changed)
            lines = [
                healthlog.line(event, body, config.kind, cluster, endpoint)
                for event, body in made
                for cluster in checker.clusters
            ]
            if lines:
                self._write_log(config.log.path, b"".join(lines))

    def _write_log(self, path: str, data: bytes) -> None:
        """Append to a healthCheckLog file; a failure is logged, never raised."""
        fd = self._logs.get(path)
        try:
            if fd is None:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
                fd = self._logs[path] = os.open(path, flags, 0o644)
            os.write(fd, data)
        except OSError as exc:
            if path not in self._log_failed:  # once, not once per probe
                self._log_failed.add(path)
                log.warning("healthCheckLog %s: %s", path, exc)

    def _close_logs(self, keep: set[str]) -> None:
        self._log_failed &= keep
        for path in [p for p in self._logs if p not in keep]:
            os.close(self._logs.pop(path))


def _seeded(key: CheckerKey, old: dict[CheckerKey, _Checker]) -> ActiveTable:
    """Results the endpoints already had under the same check, so a reload forgets nothing."""
    config, endpoints, _ = key
    wanted = set(endpoints)
    table: ActiveTable = {}
    for (other, _, _), checker in old.items():
        if other == config:
            for endpoint, record in checker.table.items():
                if endpoint in wanted:
                    table.setdefault(endpoint, record)
    return table


# --- probes ------------------------------------------------------------------------------------


async def probe(
    dialer: Dialer, config: ir.ActiveHealthCheck, endpoint: ir.Endpoint, tls: ir.BackendTLS | None
) -> Outcome:
    """One probe of ``endpoint``, never longer than ``config.timeout``."""
    target = msgspec.structs.replace(endpoint, port=config.port) if config.port else endpoint
    with trio.move_on_after(config.timeout):
        try:
            stream = await dialer.open_stream(target)
        except (OSError, ResolveError):
            return "network"
        try:
            if tls is not None:
                stream = await dialer.start_tls(stream, _context(config, tls), tls.hostname)
            if config.kind == "TCP":
                return await _tcp(stream, config)
            if config.kind == "GRPC":
                return await _grpc(stream, config, target, tls is not None)
            return await _http(stream, config, target)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            return "network"
        except ProtocolError:
            return "unhealthy"
        finally:
            await trio.aclose_forcefully(stream)
    return "network"  # timed out


def _context(config: ir.ActiveHealthCheck, tls: ir.BackendTLS) -> ssl.SSLContext:
    """The backend's TLS context; a gRPC check offers ALPN h2 only, as gRPC needs."""
    if config.kind == "GRPC" and tls.alpn != ("h2",):
        tls = msgspec.structs.replace(tls, alpn=("h2",))
    return client_context(tls)


def _authority(config: ir.ActiveHealthCheck, target: ir.Endpoint) -> str:
    if config.host:
        return config.host
    if ":" in target.address:
        return f"[{target.address}]:{target.port}"
    return f"{target.address}:{target.port}"


async def _grpc(
    stream: trio.abc.Stream, config: ir.ActiveHealthCheck, target: ir.Endpoint, tls: bool
) -> Outcome:
    call = HealthCall(_authority(config, target), tls=tls, service=config.grpc_service)
    while True:
        out = call.data_to_send()
        if out:
            await stream.send_all(out)
        verdict = call.receive_data(bytes(await stream.receive_some(_READ)))
        if verdict is not None:
            return verdict


async def _tcp(stream: trio.abc.Stream, config: ir.ActiveHealthCheck) -> Outcome:
    if config.send:
        await stream.send_all(config.send)
    received = b""
    while True:
        outcome = tcp_outcome(config, received)
        if outcome is not None:
            return outcome
        data = await stream.receive_some(_READ)
        if not data:
            return "unhealthy"
        received += data


async def _http(
    stream: trio.abc.Stream, config: ir.ActiveHealthCheck, target: ir.Endpoint
) -> Outcome:
    host = _authority(config, target)
    fields = [
        (b"host", host.encode()),
        (b"user-agent", b"edgegw-health-check"),
        (b"connection", b"close"),
    ]
    if config.send or config.method in ("POST", "PUT"):
        fields.append((b"content-length", b"%d" % len(config.send)))
    await stream.send_all(
        serialize_request_head(config.method.encode(), config.path.encode(), fields) + config.send
    )
    parser = ResponseParser(config.method.encode())
    status, body = 0, b""
    while True:
        event = parser.next_event()
        if event is None:
            data = await stream.receive_some(_READ)
            if not data and not status:
                return "network"  # closed before any answer, as a reset
            parser.receive_data(data)
        elif isinstance(event, ResponseReceived):
            status = event.status_code
            if not config.receive:
                return http_outcome(config, status, b"")
        elif isinstance(event, DataReceived):
            body += event.data
            if len(body) >= 1024:
                return http_outcome(config, status, body)
        elif isinstance(event, MessageEnded):
            return http_outcome(config, status, body)
