"""What the data plane reports: Prometheus metrics and the access log.

The data plane calls an observer at the end of each request and on upstream
failures; this module turns those calls into ``/metrics`` series and access
log lines. Label values are only names from the config (listener, route,
backend) and status classes, never request data, so series stay bounded.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from edgegw.admin.metrics import Counter, Gauge, Histogram, Registry
from edgegw.net.proxy import RequestRecord

access_log = logging.getLogger("edgegw.access")


def _status_class(status: int) -> str:
    return f"{status // 100}xx" if status else "none"


class Observer:
    """Metrics registry plus access log; one per process."""

    def __init__(self) -> None:
        registry = self.registry = Registry()
        route_labels = ("listener", "route", "backend", "code")
        self.requests = registry.add(
            Counter("edgegw_http_requests_total", "HTTP requests served.", route_labels)
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
        self.connections = registry.add(
            Gauge("edgegw_connections_active", "Client connections open now.", ("port",))
        )
        self.connections_total = registry.add(
            Counter("edgegw_connections_total", "Client connections accepted.", ("port",))
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

    # --- the data plane's calls -------------------------------------------------------------

    def request_done(self, record: RequestRecord) -> None:
        """One finished HTTP request: count it, time it, log it."""
        listener = record.listener
        route = _route(record)
        self.requests.inc((listener, route, record.backend or "", _status_class(record.status)))
        self.latency.observe((listener, route), record.duration)
        if record.bytes_in:
            self.bytes_in.inc((listener,), record.bytes_in)
        if record.bytes_out:
            self.bytes_out.inc((listener,), record.bytes_out)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                '%s %s "%s %s" %d %d %.1fms route=%s backend=%s upstream=%s',
                record.client,
                listener,
                record.method,
                record.path,
                record.status,
                record.bytes_out,
                record.duration * 1000,
                route or "-",
                record.backend or "-",
                record.upstream or "-",
                extra={"fields": _fields(record)},
            )

    def upstream_error(self, backend: str, upstream: str, kind: str) -> None:
        del upstream  # per-endpoint series would grow with every endpoint ever seen
        self.upstream_errors.inc((backend, kind))

    def connection_opened(self, port: str) -> None:
        self.connections.inc((port,))
        self.connections_total.inc((port,))

    def connection_closed(self, port: str) -> None:
        self.connections.dec((port,))

    # --- the control plane's calls ------------------------------------------------------------

    def reloaded(self, result: str) -> None:
        self.reloads.inc((result,))

    def config_errors(self, count: int) -> None:
        self.errors.set((), count)

    def addresses_allocated(self, count: int) -> None:
        self.addresses.set((), count)

    def render(self) -> bytes:
        return self.registry.render()


def _fields(record: RequestRecord) -> dict[str, Any]:
    return {
        "client": record.client,
        "listener": record.listener,
        "route": _route(record),
        "backend": record.backend,
        "upstream": record.upstream,
        "method": record.method,
        "path": record.path,
        "status": record.status,
        "duration_ms": round(record.duration * 1000, 2),
        "bytes_in": record.bytes_in,
        "bytes_out": record.bytes_out,
    }


def _route(record: RequestRecord) -> str:
    return f"{record.route_namespace}/{record.route_name}" if record.route_name else ""
