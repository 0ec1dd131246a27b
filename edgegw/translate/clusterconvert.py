"""BackendTrafficPolicy ``healthCheck`` and ``circuitBreaker`` → ``ir.ClusterPolicy``.

Pure, like the rest of ``translate/``. Defaults are the ones Envoy Gateway
documents (its CRD defaults, which a plain box without an API server must
apply itself): active timeout 1s, interval 3s, unhealthyThreshold 3,
healthyThreshold 1, expected status 200; passive interval 3s,
consecutive5XxErrors 5, consecutiveLocalOriginFailures 5, baseEjectionTime
30s, maxEjectionPercent 10, consecutiveGatewayErrors off unless set (Envoy
Gateway only enforces gateway errors when the field is set); panicThreshold
50; every circuit-breaker limit 1024 and maxRequestsPerConnection unlimited.
A value that is not a uint32 is refused with Envoy Gateway's own message.
"""

from __future__ import annotations

from typing import Any

from edgegw import ir
from edgegw.api import envoypolicies as ep

MIN_INTERVAL = 0.01  # an active check every 10 ms at most: a config cannot make a busy loop
_UINT32 = 2**32 - 1


class ClusterProblem(Exception):
    """A healthCheck or circuitBreaker field that cannot be carried out."""


def cluster_policy(spec: ep.BackendTrafficPolicySpec) -> ir.ClusterPolicy | None:
    """The policy's cluster settings (``cluster`` left empty for the rule to fill), or None.

    Raises:
        ClusterProblem: the message names the field.
    """
    health, breaker = spec.health_check, spec.circuit_breaker
    if health is None and breaker is None:
        return None
    return ir.ClusterPolicy(
        cluster="",
        active=_active(health.active) if health and health.active else None,
        passive=_passive(health.passive) if health and health.passive else None,
        panic_threshold=health.panic_threshold if health else 50,
        circuit_breaker=_breaker(breaker) if breaker else None,
    )


def _active(spec: ep.ActiveHealthCheck) -> ir.ActiveHealthCheck:
    common: dict[str, Any] = {
        "timeout": _secs(spec.timeout, 1.0),
        "interval": max(_secs(spec.interval, 3.0), MIN_INTERVAL),
        "initial_jitter": _secs(spec.initial_jitter, 0.0),
        "unhealthy_threshold": spec.unhealthy_threshold,
        "healthy_threshold": spec.healthy_threshold,
        "port": (spec.overrides.port or 0) if spec.overrides else 0,
        "log": _log(spec.health_check_log) if spec.health_check_log else None,
    }
    if spec.tcp is not None:
        tcp = spec.tcp
        return ir.ActiveHealthCheck(
            kind="TCP",
            send=tcp.send.payload() if tcp.send else b"",
            receive=tcp.receive.payload() if tcp.receive else b"",
            **common,
        )
    if spec.type == "GRPC":
        service = spec.grpc.service if spec.grpc is not None else None
        return ir.ActiveHealthCheck(kind="GRPC", grpc_service=service or "", **common)
    http = spec.http
    assert http is not None  # the model checks type against http and tcp
    method = (http.method or "GET").upper()
    body = http.request_body.payload() if http.request_body else b""
    if body and method not in ("POST", "PUT"):
        raise ClusterProblem(
            "spec.healthCheck.active.http.requestBody: "
            "The requestBody field can only be set when method is POST or PUT."
        )
    return ir.ActiveHealthCheck(
        kind="HTTP",
        method=method,
        path=http.path,
        host=http.hostname or "",
        expected_statuses=tuple(sorted(set(http.expected_statuses))) or (200,),
        retriable_statuses=tuple(sorted(set(http.retriable_statuses))),
        send=body,
        receive=http.expected_response.payload() if http.expected_response else b"",
        **common,
    )


def _log(spec: ep.HealthCheckLog) -> ir.HealthCheckLog:
    """Envoy Gateway's mapping: Failure / Success log every probe of that outcome,
    FailureSeriesStart / HealthyTransition only Envoy's default events; no matches: all."""
    sink = spec.sinks[0].file if spec.sinks else None
    return ir.HealthCheckLog(
        path=sink.path if sink is not None else "/dev/stdout",
        failures=not spec.matches or "Failure" in spec.matches,
        success=not spec.matches or "Success" in spec.matches,
    )


def _passive(spec: ep.PassiveHealthCheck) -> ir.PassiveHealthCheck:
    return ir.PassiveHealthCheck(
        split_local_origin=spec.split_external_local_origin_errors,
        interval=max(_secs(spec.interval, 3.0), 0.001),
        consecutive_local_origin=spec.consecutive_local_origin_failures,
        consecutive_gateway=spec.consecutive_gateway_errors or 0,
        consecutive_5xx=spec.consecutive5xx_errors,
        base_ejection_time=_secs(spec.base_ejection_time, 30.0),
        max_ejection_percent=spec.max_ejection_percent,
        always_eject_one=spec.always_eject_one_endpoint,
        failure_percentage_threshold=spec.failure_percentage_threshold,
    )


def _breaker(spec: ep.CircuitBreaker) -> ir.CircuitBreaker:
    limits = {
        "max_connections": ("MaxConnections", spec.max_connections, 1024),
        "max_parallel_requests": ("MaxParallelRequests", spec.max_parallel_requests, 1024),
        "max_pending_requests": ("MaxPendingRequests", spec.max_pending_requests, 1024),
        "max_parallel_retries": ("MaxParallelRetries", spec.max_parallel_retries, 1024),
        "max_requests_per_connection": (
            "MaxRequestsPerConnection",
            spec.max_requests_per_connection,
            0,
        ),
    }
    values: dict[str, int] = {}
    for field, (name, value, default) in limits.items():
        if value is not None and not 0 <= value <= _UINT32:
            raise ClusterProblem(f"CircuitBreaker: invalid {name} value {value}.")
        values[field] = default if value is None else value
    per_endpoint = spec.per_endpoint.max_connections if spec.per_endpoint else None
    if per_endpoint is not None and not 0 <= per_endpoint <= _UINT32:
        raise ClusterProblem(f"CircuitBreaker: invalid PerEndpoint.MaxConnections {per_endpoint}.")
    budget = spec.retry_budget
    return ir.CircuitBreaker(
        **values,
        per_endpoint_max_connections=per_endpoint,
        retry_budget_percent=(
            100.0 * budget.percent.numerator / budget.percent.denominator if budget else None
        ),
        retry_budget_min_concurrency=budget.min_retry_concurrency if budget else 3,
    )


def _secs(value: float | None, default: float) -> float:
    return float(value) if value is not None else default
