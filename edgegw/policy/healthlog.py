"""Active health check events (``healthCheck.active.healthCheckLog``) as Envoy logs them.

Envoy's health checker writes a ``HealthCheckEvent`` per event to its file
sink, one JSON object a line, proto field names, defaults left out. Which
probes make events is Envoy's rule (``HealthCheckerImplBase``), taking into
account that an Envoy host starts unhealthy until its first check, where an
edgegw endpoint is served from the start:

- a probe that makes the endpoint unhealthy: ``eject_unhealthy_event``
  (not on a first check: under Envoy the host was never healthy);
- a failed probe: ``health_check_failure_event`` when it is the first check,
  or when ``failures`` asks for every one;
- a probe that makes the endpoint healthy, or the first check when it
  passes: ``add_healthy_event`` (``first_check`` then);
- any other successful probe: ``successful_health_check_event`` when
  ``success`` asks for every one.

Pure: the caller writes the lines.
"""

from __future__ import annotations

import json
import time
from typing import Any

from edgegw import ir
from edgegw.policy.activehealth import Outcome

_FAILURE_TYPES = {"network": "NETWORK", "unhealthy": "ACTIVE", "retriable": "ACTIVE"}


def events(
    config: ir.HealthCheckLog, outcome: Outcome, *, first: bool, changed: bool
) -> list[tuple[str, dict[str, Any]]]:
    """The events one probe makes: (event field, its body), in Envoy's order."""
    if outcome == "healthy":
        if first or changed:
            return [("add_healthy_event", {"first_check": True} if first else {})]
        return [("successful_health_check_event", {})] if config.success else []
    failure_type = _FAILURE_TYPES.get(outcome, "ACTIVE")
    out: list[tuple[str, dict[str, Any]]] = []
    if changed and not first:
        out.append(("eject_unhealthy_event", {"failure_type": failure_type}))
    if first or config.failures:
        body: dict[str, Any] = {"failure_type": failure_type}
        if first:
            body["first_check"] = True
        out.append(("health_check_failure_event", body))
    return out


def line(
    event: str,
    body: dict[str, Any],
    checker: str,
    cluster: str,
    endpoint: ir.Endpoint,
    wall: float | None = None,
) -> bytes:
    """One ``HealthCheckEvent`` as a JSON line."""
    if endpoint.kind == "unix":
        host: dict[str, Any] = {"pipe": {"path": endpoint.address}}
    else:
        host = {"socket_address": {"address": endpoint.address, "port_value": endpoint.port}}
    record = {
        "health_checker_type": checker,
        "host": host,
        "cluster_name": cluster,
        event: body,
        "timestamp": _timestamp(time.time() if wall is None else wall),
    }
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _timestamp(wall: float) -> str:
    """RFC 3339 in UTC with milliseconds, as protobuf's Timestamp is written in JSON."""
    seconds = int(wall)
    millis = int((wall - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
