"""Active health checks (BackendTrafficPolicy ``healthCheck.active``): judging probes, thresholds.

Pure: ``net/healthcheck.py`` does the probing and reports each outcome here.
The rules are Envoy's (``HealthCheckerImplBase``):

- an answer that is wrong (an HTTP status not in ``expected_statuses``, or
  the expected payload missing) marks the endpoint unhealthy at once; a
  status in ``retriable_statuses`` counts like a network failure instead;
- network failures (refused, reset, timed out) count, and the endpoint is
  unhealthy after ``unhealthy_threshold`` of them in a row;
- an unhealthy endpoint is healthy again after ``healthy_threshold`` good
  answers in a row;
- the first result decides at once, either way. Until then an endpoint is
  served (``pending``): Envoy keeps new endpoints out until their first check,
  but an endpoint here is new on every restart, and refusing traffic for an
  interval after each start would cost more than it protects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgegw import ir

Outcome = Literal["healthy", "unhealthy", "retriable", "network"]
RECEIVE_LIMIT = 1024  # Envoy's response_buffer_size: the payload must be in the first 1 KiB


@dataclass(slots=True)
class ActiveRecord:
    """One endpoint's active health under one checker."""

    healthy: bool = True
    pending: bool = True  # no result yet
    successes: int = 0
    failures: int = 0
    checks: int = 0
    last: Outcome | None = None


def apply(record: ActiveRecord, outcome: Outcome, config: ir.ActiveHealthCheck) -> bool:
    """Take one probe's outcome; True when the endpoint's health changed."""
    record.checks += 1
    record.last = outcome
    before = record.healthy
    first = record.pending
    record.pending = False
    if outcome == "healthy":
        record.failures = 0
        record.successes += 1
        if not record.healthy and (first or record.successes >= config.healthy_threshold):
            record.healthy = True
    else:
        record.successes = 0
        record.failures += 1
        immediate = outcome == "unhealthy" or first
        if record.healthy and (immediate or record.failures >= config.unhealthy_threshold):
            record.healthy = False
    return record.healthy != before


def http_outcome(config: ir.ActiveHealthCheck, status: int, body: bytes) -> Outcome:
    """Judge an HTTP probe's answer: its status and the first bytes of its body."""
    if status in config.expected_statuses:
        if not config.receive or config.receive in body[:RECEIVE_LIMIT]:
            return "healthy"
        return "unhealthy"
    return "retriable" if status in config.retriable_statuses else "unhealthy"


def tcp_outcome(config: ir.ActiveHealthCheck, received: bytes) -> Outcome | None:
    """Judge what a TCP probe has read so far; None while more may still come."""
    if not config.receive or config.receive in received:
        return "healthy"
    return "unhealthy" if len(received) >= RECEIVE_LIMIT else None
