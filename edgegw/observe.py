"""What the data plane reports: Prometheus metrics and the access log.

The data plane calls an observer at the end of each request and on upstream
failures; this module turns those calls into ``/metrics`` series and access
log lines. Label values are only names from the config (listener, route,
backend) and status classes, never request data, so series stay bounded.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from edgegw.accesslog import AccessLog
from edgegw.admin.metrics import (
    DEFAULT_BUCKETS,
    Counter,
    Gauge,
    Histogram,
    LabelValues,
    Metric,
    Registry,
)
from edgegw.net.clusters import Clusters
from edgegw.net.context import RequestRecord
from edgegw.net.tcp import RelayStats
from edgegw.net.udp import UDPStats

_STATUS_CLASSES = {code: f"{code // 100}xx" for code in range(100, 600)}


def _status_class(status: int) -> str:
    """``2xx`` and so on, without formatting a string per request."""
    found = _STATUS_CLASSES.get(status)
    if found is None:
        return f"{status // 100}xx" if status else "none"
    return found


class Collected(Metric):
    """A family whose samples are read from the data plane's counters when scraped.

    The L4 relays count into plain attributes (``RelayStats``, ``UDPStats``)
    on their hot paths; nothing here runs until ``/metrics`` is asked for.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        help_text: str,
        labels: Sequence[str],
        samples: Callable[[], Iterable[tuple[LabelValues, float]]],
    ) -> None:
        super().__init__(name, help_text, labels)
        self.kind = kind
        self._samples = samples

    def render(self) -> Iterator[str]:
        values: dict[LabelValues, float] = {}
        for labels, value in self._samples():
            values[labels] = values.get(labels, 0) + value
        yield from Counter.render(self._as_counter(values))

    def _as_counter(self, values: dict[LabelValues, float]) -> Counter:
        counter = Gauge(self.name, self.help, self.label_names)
        counter.kind = self.kind
        counter.values = values
        return counter


_SeriesKey = tuple[str, str, str, str, int, str]


class _Series:
    """What the requests of one kind (listener, route, backend, status, protocol) added up
    to since ``Observer._fold`` last moved it into the metric families, and their labels."""

    __slots__ = (
        "buckets",
        "bytes_in",
        "bytes_out",
        "count",
        "duration_sum",
        "latency",
        "protocol",
        "requests",
        "route",
    )

    def __init__(
        self, requests: LabelValues, protocol: LabelValues, latency: LabelValues, route: str
    ) -> None:
        self.requests, self.protocol, self.latency, self.route = requests, protocol, latency, route
        self.reset()

    def reset(self) -> None:
        self.count = self.bytes_in = self.bytes_out = 0
        self.duration_sum = 0.0
        self.buckets = [0] * (len(DEFAULT_BUCKETS) + 1)  # the last: above every bound


class Observer:
    """Metrics registry plus access log; one per process."""

    def __init__(self) -> None:
        self._series: dict[_SeriesKey, _Series] = {}
        registry = self.registry = Registry()
        route_labels = ("listener", "route", "backend", "code")
        self.requests = registry.add(
            Counter("edgegw_http_requests_total", "HTTP requests served.", route_labels)
        )
        self.protocols = registry.add(
            Counter(
                "edgegw_http_requests_by_protocol_total",
                "HTTP requests served, by the client's protocol (http/1.1, h2, h3).",
                ("listener", "protocol"),
            )
        )
        self.latency = registry.add(
            Histogram(
                "edgegw_http_request_duration_seconds",
                "Time from request head to the end of the response.",
                ("listener", "route"),
            )
        )
        self.bytes_in = registry.add(
            Counter(
                "edgegw_http_request_bytes_total", "Request body bytes received.", ("listener",)
            )
        )
        self.bytes_out = registry.add(
            Counter("edgegw_http_response_bytes_total", "Response body bytes sent.", ("listener",))
        )
        self.upstream_errors = registry.add(
            Counter(
                "edgegw_upstream_errors_total",
                "Upstream connect failures, timeouts and broken exchanges.",
                ("backend", "kind"),
            )
        )
        self.policy_decisions = registry.add(
            Counter(
                "edgegw_policy_decisions_total",
                "Envoy Gateway policy checks by kind (basic, apikey, authorization, extAuth, "
                "jwt, rateLimit, clientIPDetection, security) and outcome (allow, deny, error).",
                ("kind", "policy", "outcome"),
            )
        )
        self.jwks_fetches = registry.add(
            Counter(
                "edgegw_jwks_fetches_total",
                "Remote JWKS fetches of SecurityPolicy jwt providers by result.",
                ("uri", "result"),
            )
        )
        self.compression_in = registry.add(
            Counter(
                "edgegw_compression_input_bytes_total",
                "Response bytes before compression (ratio: output / input).",
                ("encoding",),
            )
        )
        self.compression_out = registry.add(
            Counter(
                "edgegw_compression_output_bytes_total",
                "Response bytes after compression.",
                ("encoding",),
            )
        )
        self.connections = registry.add(
            Gauge("edgegw_connections_active", "Client connections open now.", ("port",))
        )
        self.connections_total = registry.add(
            Counter("edgegw_connections_total", "Client connections accepted.", ("port",))
        )
        self.connections_refused = registry.add(
            Counter(
                "edgegw_connections_refused_total",
                "Client connections closed over a ClientTrafficPolicy connectionLimit.",
                ("port",),
            )
        )
        self.reloads = registry.add(
            Counter("edgegw_config_reloads_total", "Config reloads by result.", ("result",))
        )
        self.errors = registry.add(
            Gauge("edgegw_config_errors", "Config errors in the current generation.")
        )
        self.addresses = registry.add(
            Gauge("edgegw_addresses_allocated", "Addresses held from IPAddressPools.")
        )
        self.started = registry.add(Gauge("edgegw_start_time_seconds", "Process start time."))
        self.started.set((), time.time())
        self.tcp_stats: list[RelayStats] = []
        self.udp_stats: list[UDPStats] = []
        self.clusters: list[Clusters] = []
        self._add_l4_metrics()
        self._add_cluster_metrics()
        self.access_log = AccessLog()

    # --- L4: read from the relays' counters at scrape time ---------------------------------

    def watch_tcp(self, stats: RelayStats) -> None:
        """Export a TCP/TLS relay's counters (per listener and route) in ``/metrics``."""
        self.tcp_stats.append(stats)

    def watch_udp(self, stats: UDPStats) -> None:
        """Export a UDP port's counters (per listener and route) in ``/metrics``."""
        self.udp_stats.append(stats)

    def watch_clusters(self, clusters: Clusters) -> None:
        """Export BackendTrafficPolicy health and circuit-breaker state in ``/metrics``."""
        self.clusters.append(clusters)

    def _add_cluster_metrics(self) -> None:
        """Read from the pool's ``Clusters`` when scraped (labels: cluster names, endpoints)."""
        each = self.clusters
        families: list[tuple[str, str, str, Sequence[str], Callable[[], Any]]] = [
            ("gauge", "edgegw_backend_endpoint_healthy",
             "1 while an endpoint under a BackendTrafficPolicy healthCheck is in rotation, "
             "0 while its active check fails or passive health ejected it.",
             ("cluster", "endpoint"),
             lambda: (s for c in each for s in c.health_samples())),
            ("counter", "edgegw_backend_ejections_total",
             "Passive health check (outlier detection) ejections of an endpoint.",
             ("cluster", "endpoint"),
             lambda: (s for c in each for s in c.ejection_samples())),
            ("counter", "edgegw_circuit_breaker_overflows_total",
             "Requests refused (503) or retries skipped by a circuitBreaker limit.",
             ("cluster", "limit"),
             lambda: (s for c in each for s in c.overflow_samples())),
        ]  # fmt: skip
        for kind, name, help_text, labels, samples in families:
            self.registry.add(Collected(kind, name, help_text, labels, samples))

    def _add_l4_metrics(self) -> None:
        route = ("listener", "route")
        tcp = self._tcp_routes
        udp = self._udp_routes
        families: list[tuple[str, str, str, Sequence[str], Callable[[], Any]]] = [
            ("counter", "edgegw_tcp_connections_total",
             "TCP/TLS connections relayed to a backend.", route,
             lambda: ((k, s.connections) for k, s in tcp())),
            ("gauge", "edgegw_tcp_connections_active",
             "TCP/TLS connections being relayed now.", route,
             lambda: ((k, s.active) for k, s in tcp())),
            ("counter", "edgegw_tcp_bytes_total",
             "Bytes relayed; direction up is client to backend.", (*route, "direction"),
             lambda: self._directions(tcp())),
            ("counter", "edgegw_tcp_upstream_errors_total",
             "Failed connects to a route's backends.", route,
             lambda: ((k, s.upstream_errors) for k, s in tcp())),
            ("counter", "edgegw_tcp_rejected_total",
             "Connections closed unserved (no route or backend, limit, bad PROXY header or "
             "ClientHello), by listener, or by port when no listener was chosen.", ("listener",),
             lambda: (((w,), n) for s in self.tcp_stats for w, n in s.rejections.items())),
            ("counter", "edgegw_udp_sessions_total",
             "UDP sessions (client address and port) opened.", route,
             lambda: ((k, s.sessions_opened) for k, s in udp())),
            ("gauge", "edgegw_udp_sessions_active", "UDP sessions open now.", route,
             lambda: ((k, s.sessions) for k, s in udp())),
            ("counter", "edgegw_udp_datagrams_total",
             "Datagrams relayed; direction up is client to backend.", (*route, "direction"),
             lambda: self._datagrams(udp())),
            ("counter", "edgegw_udp_bytes_total",
             "UDP payload bytes relayed.", (*route, "direction"),
             lambda: self._directions(udp())),
            ("counter", "edgegw_udp_upstream_errors_total",
             "ICMP errors and failed connects on a route's sessions.", route,
             lambda: ((k, s.upstream_errors) for k, s in udp())),
            ("counter", "edgegw_udp_dropped_total",
             "Datagrams dropped (no route or backend, session limit, full buffers).", (),
             lambda: (((), s.dropped) for s in self.udp_stats)),
        ]  # fmt: skip
        for kind, name, help_text, labels, samples in families:
            self.registry.add(Collected(kind, name, help_text, labels, samples))

    def _tcp_routes(self) -> Iterator[tuple[LabelValues, RelayStats]]:
        for stats in self.tcp_stats:
            yield from stats.routes.items()

    def _udp_routes(self) -> Iterator[tuple[LabelValues, UDPStats]]:
        for stats in self.udp_stats:
            yield from stats.routes.items()

    @staticmethod
    def _directions(
        routes: Iterable[tuple[LabelValues, RelayStats | UDPStats]],
    ) -> Iterator[tuple[LabelValues, float]]:
        for key, stats in routes:
            yield (*key, "up"), stats.bytes_up
            yield (*key, "down"), stats.bytes_down

    @staticmethod
    def _datagrams(
        routes: Iterable[tuple[LabelValues, UDPStats]],
    ) -> Iterator[tuple[LabelValues, float]]:
        for key, stats in routes:
            yield (*key, "up"), stats.datagrams_up
            yield (*key, "down"), stats.datagrams_down

    # --- the data plane's calls -------------------------------------------------------------

    def request_done(self, record: RequestRecord) -> None:
        """One finished HTTP request: count it, time it, log it.

        Counted into its ``_Series`` (one per listener, route, backend, status and
        protocol): a few adds on one object, where the metric families would
        take a tuple and two dict operations per series; ``render`` folds them
        into the families.
        """
        key = (
            record.listener,
            record.route_namespace,
            record.route_name,
            record.backend,
            record.status,
            record.protocol,
        )
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key, record)
        series.count += 1
        duration = record.duration
        series.duration_sum += duration
        series.buckets[bisect_left(DEFAULT_BUCKETS, duration)] += 1
        if record.bytes_in:
            series.bytes_in += record.bytes_in
        if record.bytes_out:
            series.bytes_out += record.bytes_out
        if record.encoding:
            self.compression_in.inc((record.encoding,), record.uncompressed)
            self.compression_out.inc((record.encoding,), record.compressed)
        if self.access_log.enabled:
            self.access_log.write(record, series.route)

    def _new_series(self, key: _SeriesKey, record: RequestRecord) -> _Series:
        if len(self._series) > 4096:  # routes and backends come and go with reloads
            self._fold()
            self._series.clear()
        listener, route = record.listener, _route(record)
        series = self._series[key] = _Series(
            (listener, route, record.backend or "", _status_class(record.status)),
            (listener, record.protocol),
            (listener, route),
            route,
        )
        return series

    def _fold(self) -> None:
        """Move what each ``_Series`` counted since the last fold into the metric families."""
        for series in self._series.values():
            if series.count:
                listener = series.latency[:1]
                self.requests.inc(series.requests, series.count)
                self.protocols.inc(series.protocol, series.count)
                self.latency.add(series.latency, series.buckets, series.duration_sum, series.count)
                if series.bytes_in:
                    self.bytes_in.inc(listener, series.bytes_in)
                if series.bytes_out:
                    self.bytes_out.inc(listener, series.bytes_out)
                series.reset()

    def upstream_error(self, backend: str, upstream: str, kind: str) -> None:
        del upstream  # per-endpoint series would grow with every endpoint ever seen
        self.upstream_errors.inc((backend, kind))

    def policy_decision(self, kind: str, policy: str, outcome: str) -> None:
        self.policy_decisions.inc((kind, policy, outcome))

    def jwks_fetched(self, uri: str, result: str) -> None:
        self.jwks_fetches.inc((uri, result))

    def connection_opened(self, port: str) -> None:
        self.connections.inc((port,))
        self.connections_total.inc((port,))

    def connection_closed(self, port: str) -> None:
        self.connections.dec((port,))

    def connection_refused(self, port: str) -> None:
        self.connections_refused.inc((port,))

    # --- the control plane's calls ------------------------------------------------------------

    def reloaded(self, result: str) -> None:
        self.reloads.inc((result,))

    def config_errors(self, count: int) -> None:
        self.errors.set((), count)

    def addresses_allocated(self, count: int) -> None:
        self.addresses.set((), count)

    def render(self) -> bytes:
        self._fold()
        return self.registry.render()


_route_labels: dict[tuple[str, str], str] = {}


def _route(record: RequestRecord) -> str:
    """``namespace/name`` of the route, made once per route rather than per request."""
    if not record.route_name:
        return ""
    key = (record.route_namespace, record.route_name)
    label = _route_labels.get(key)
    if label is None:
        if len(_route_labels) > 4096:  # routes come and go with reloads
            _route_labels.clear()
        label = _route_labels[key] = f"{key[0]}/{key[1]}"
    return label
