"""Per-cluster state behind BackendTrafficPolicy ``healthCheck`` and ``circuitBreaker``.

Theory of operation
-------------------
A cluster is Envoy Gateway's: one rule's backend (``ir.ClusterPolicy.cluster``).
``Clusters`` belongs to the ``UpstreamPool`` and keeps, by cluster name, what
must outlive a reload: the passive ``OutlierDetector`` and the circuit
``Breaker``; and, by name too, the table of active health results that the
checker tasks (``net/healthcheck.py``) write and the load balancer reads.

``usable`` is the one health decision, made inside ``UpstreamPool.choose``
for every request kind: endpoints that failed their active check or are
ejected leave the set; when fewer than ``panic_threshold`` percent remain
healthy, Envoy's panic mode balances over all of them again (Envoy Gateway's
default, 50 %, so a backend whose every endpoint fails still gets traffic);
with ``panicThreshold: 0`` an all-unhealthy backend gets none, and the
request is answered 503, Envoy's "no healthy upstream".

``Breaker`` counts a cluster's requests in flight, its HTTP/1.1 connections
and WebSocket tunnels (each holds one connection; per endpoint too when
``perEndpoint.maxConnections`` is set), the requests waiting for one of
those, and its retries in flight. Over a limit the request fails at once
with ``Overflow`` (503); a request that finds ``max_connections`` (or its
endpoint's share) busy waits, one of at most ``max_pending_requests``, for a
connection to be handed back, but never longer than the pool's connect
timeout. With a ``retryBudget``, a retry may start while the retries in
flight are fewer than that percentage of the requests in flight and pending
(at least ``minRetryConcurrency``), Envoy's ``retry_budget``, instead of
``max_parallel_retries``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence

import trio

from edgegw import ir
from edgegw.net.connection import Overflow, describe_endpoint
from edgegw.policy.activehealth import ActiveRecord
from edgegw.policy.outlier import LocalFailure, OutlierDetector

ActiveTable = dict[ir.Endpoint, ActiveRecord]
_MAX_CLUSTERS = 4096


class Breaker:
    """One cluster's circuit-breaker counts."""

    __slots__ = (
        "_lot",
        "connections",
        "limits",
        "overflows",
        "pending",
        "per_endpoint",
        "requests",
        "retries",
    )

    def __init__(self, limits: ir.CircuitBreaker) -> None:
        self.limits = limits
        self.requests = self.connections = self.pending = self.retries = 0
        self.per_endpoint: dict[Hashable, int] = {}  # connections by endpoint (perEndpoint)
        self.overflows: dict[str, int] = {}
        self._lot = trio.lowlevel.ParkingLot()

    def _overflow(self, limit: str) -> Overflow:
        self.overflows[limit] = self.overflows.get(limit, 0) + 1
        return Overflow(f"circuit breaker: {limit} reached")

    async def enter(
        self, connection: bool, wait_limit: float, endpoint: Hashable | None = None
    ) -> None:
        """Count a request (and its connection to ``endpoint``); wait for one if allowed.

        Raises:
            Overflow: a limit is reached.
        """
        limits = self.limits
        if self.requests >= limits.max_parallel_requests:
            raise self._overflow("maxParallelRequests")
        self.requests += 1
        if not connection:
            return
        try:
            if self._full(endpoint):
                await self._wait(wait_limit, endpoint)
        except BaseException:
            self.requests -= 1
            raise
        self.connections += 1
        if limits.per_endpoint_max_connections is not None:
            self.per_endpoint[endpoint] = self.per_endpoint.get(endpoint, 0) + 1

    def _full(self, endpoint: Hashable | None) -> bool:
        limits = self.limits
        if self.connections >= limits.max_connections:
            return True
        per_endpoint = limits.per_endpoint_max_connections
        return per_endpoint is not None and self.per_endpoint.get(endpoint, 0) >= per_endpoint

    async def _wait(self, wait_limit: float, endpoint: Hashable | None) -> None:
        if self.pending >= self.limits.max_pending_requests:
            raise self._overflow("maxPendingRequests")
        self.pending += 1
        try:
            with trio.move_on_after(wait_limit):
                while self._full(endpoint):
                    await self._lot.park()
                return
        finally:
            self.pending -= 1
        raise self._overflow("maxPendingRequests")

    def leave(self, connection: bool, endpoint: Hashable | None = None) -> None:
        self.requests -= 1
        if connection:
            self.connections -= 1
            count = self.per_endpoint.get(endpoint)
            if count is not None:  # counted when it entered (perEndpoint was set then)
                if count > 1:
                    self.per_endpoint[endpoint] = count - 1
                else:
                    del self.per_endpoint[endpoint]
            if self.limits.per_endpoint_max_connections is None:
                self._lot.unpark()
            else:  # the waiter first in line may be waiting for another endpoint
                self._lot.unpark_all()

    def start_retry(self) -> bool:
        """Count a retry in flight; False (and an overflow) over the retry limit or budget."""
        limits = self.limits
        if limits.retry_budget_percent is not None:
            active = self.requests + self.pending
            allowed = max(
                int(limits.retry_budget_percent / 100.0 * active),
                limits.retry_budget_min_concurrency,
            )
            if self.retries >= allowed:
                self._overflow("retryBudget")
                return False
        elif self.retries >= limits.max_parallel_retries:
            self._overflow("maxParallelRetries")
            return False
        self.retries += 1
        return True

    def end_retry(self) -> None:
        self.retries -= 1


class Clusters:
    """Health and limits of every cluster a BackendTrafficPolicy made, by cluster name."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.detectors: dict[str, OutlierDetector] = {}
        self.breakers: dict[str, Breaker] = {}
        self.active: dict[str, ActiveTable] = {}  # written by the checker supervisor
        self.endpoints: dict[str, tuple[ir.Endpoint, ...]] = {}  # for metrics and status

    # --- health ------------------------------------------------------------------------------

    def detector(self, policy: ir.ClusterPolicy, count: int | None) -> OutlierDetector | None:
        """The cluster's outlier detector, made anew when its settings change.

        ``count``: the cluster's endpoints now (None: as last seen).
        """
        config = policy.passive
        if config is None:
            return None
        found = self.detectors.get(policy.cluster)
        if found is None or (found.config is not config and found.config != config):
            if len(self.detectors) >= _MAX_CLUSTERS:
                self.detectors.clear()
            found = self.detectors[policy.cluster] = OutlierDetector(config, self._clock())
        if count is not None:
            found.endpoints = count
        return found

    def usable(
        self,
        policy: ir.ClusterPolicy,
        endpoints: Sequence[ir.Endpoint],
        exclude: frozenset[ir.Endpoint],
    ) -> list[ir.Endpoint]:
        """The endpoints to balance over: healthy ones, or all of them in panic; [] for none."""
        table = self.active.get(policy.cluster) if policy.active is not None else None
        detector = self.detector(policy, len(endpoints))
        now = self._clock()
        healthy = [
            e
            for e in endpoints
            if (table is None or (r := table.get(e)) is None or r.healthy)
            and (detector is None or not detector.is_ejected(e, now))
        ]
        if len(healthy) * 100 < policy.panic_threshold * len(endpoints):
            healthy = list(endpoints)  # panic: Envoy balances over every endpoint
        if exclude:
            return [e for e in healthy if e not in exclude] or healthy
        return healthy

    def is_healthy(self, policy: ir.ClusterPolicy, endpoint: ir.Endpoint) -> bool:
        table = self.active.get(policy.cluster) if policy.active is not None else None
        record = table.get(endpoint) if table is not None else None
        if record is not None and not record.healthy:
            return False
        detector = self.detectors.get(policy.cluster) if policy.passive is not None else None
        return detector is None or not detector.is_ejected(endpoint, self._clock())

    def report_status(self, policy: ir.ClusterPolicy, endpoint: ir.Endpoint, status: int) -> None:
        detector = self.detector(policy, None)  # a pinned endpoint skips ``usable``
        if detector is not None:
            detector.on_status(endpoint, status, self._clock())

    def report_failure(
        self, policy: ir.ClusterPolicy, endpoint: ir.Endpoint, kind: LocalFailure
    ) -> None:
        detector = self.detector(policy, None)
        if detector is not None:
            detector.on_local_failure(endpoint, kind, self._clock())

    def report_connected(self, policy: ir.ClusterPolicy, endpoint: ir.Endpoint) -> None:
        detector = self.detector(policy, None)
        if detector is not None:
            detector.on_connected(endpoint, self._clock())

    # --- limits ------------------------------------------------------------------------------

    def breaker(self, policy: ir.ClusterPolicy) -> Breaker | None:
        limits = policy.circuit_breaker
        if limits is None:
            return None
        found = self.breakers.get(policy.cluster)
        if found is None:
            if len(self.breakers) >= _MAX_CLUSTERS:
                self.breakers = {k: b for k, b in self.breakers.items() if b.requests}
            found = self.breakers[policy.cluster] = Breaker(limits)
        found.limits = limits  # a reload may change them; the counts carry on
        return found

    # --- what metrics and status read ---------------------------------------------------------

    def health_samples(self) -> Iterator[tuple[tuple[str, str], float]]:
        """1 per healthy endpoint, 0 per unhealthy or ejected one, by (cluster, endpoint)."""
        for cluster, endpoints in self.endpoints.items():
            table = self.active.get(cluster)
            detector = self.detectors.get(cluster)
            now = self._clock()
            for endpoint in endpoints:
                record = table.get(endpoint) if table is not None else None
                ok = record is None or record.healthy
                ok = ok and (detector is None or not detector.is_ejected(endpoint, now))
                yield (cluster, describe_endpoint(endpoint)), 1.0 if ok else 0.0

    def ejection_samples(self) -> Iterator[tuple[tuple[str, str], float]]:
        for cluster, detector in self.detectors.items():
            for endpoint, record in detector.records.items():
                if record.ejections and isinstance(endpoint, ir.Endpoint):
                    yield (cluster, describe_endpoint(endpoint)), float(record.ejections)

    def overflow_samples(self) -> Iterator[tuple[tuple[str, str], float]]:
        for cluster, breaker in self.breakers.items():
            for limit, count in breaker.overflows.items():
                yield (cluster, limit), float(count)

    def status(self) -> list[dict[str, object]]:
        """Per cluster and endpoint: healthy or not, and why (the admin API's answer)."""
        out: list[dict[str, object]] = []
        now = self._clock()
        for cluster, endpoints in sorted(self.endpoints.items()):
            table = self.active.get(cluster) or {}
            detector = self.detectors.get(cluster)
            for endpoint in endpoints:
                record = table.get(endpoint)
                ejected = detector is not None and detector.is_ejected(endpoint, now)
                active = None if record is None else ("healthy" if record.healthy else "unhealthy")
                if record is not None and record.pending:
                    active = "pending"
                out.append(
                    {
                        "cluster": cluster,
                        "endpoint": describe_endpoint(endpoint),
                        "healthy": (record is None or record.healthy) and not ejected,
                        "active": active,
                        "ejected": ejected,
                    }
                )
        return out
