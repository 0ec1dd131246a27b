"""``policy/healthlog``: which probes make events (Envoy's rules) and how a line looks."""

from __future__ import annotations

import json

import pytest

from edgegw import ir
from edgegw.policy.healthlog import events, line

ALL = ir.HealthCheckLog()
TRANSITIONS = ir.HealthCheckLog(failures=False, success=False)


@pytest.mark.parametrize(
    ("config", "outcome", "first", "changed", "expected"),
    [
        (TRANSITIONS, "healthy", True, False, [("add_healthy_event", {"first_check": True})]),
        (TRANSITIONS, "healthy", False, True, [("add_healthy_event", {})]),
        (TRANSITIONS, "healthy", False, False, []),
        (ALL, "healthy", False, False, [("successful_health_check_event", {})]),
        (
            TRANSITIONS,
            "network",
            True,
            True,  # a first failure: under Envoy the host was never healthy, so no ejection
            [("health_check_failure_event", {"failure_type": "NETWORK", "first_check": True})],
        ),
        (
            TRANSITIONS,
            "unhealthy",
            False,
            True,
            [("eject_unhealthy_event", {"failure_type": "ACTIVE"})],
        ),
        (TRANSITIONS, "network", False, False, []),  # below the threshold
        (
            ALL,
            "retriable",
            False,
            False,
            [("health_check_failure_event", {"failure_type": "ACTIVE"})],
        ),
        (
            ALL,
            "network",
            False,
            True,
            [
                ("eject_unhealthy_event", {"failure_type": "NETWORK"}),
                ("health_check_failure_event", {"failure_type": "NETWORK"}),
            ],
        ),
    ],
)
def test_events(
    config: ir.HealthCheckLog,
    outcome: str,
    first: bool,
    changed: bool,
    expected: list[tuple[str, dict[str, object]]],
) -> None:
    assert events(config, outcome, first=first, changed=changed) == expected  # type: ignore[arg-type]


def test_line_is_envoys_health_check_event() -> None:
    endpoint = ir.Endpoint(address="192.0.2.7", port=8080)
    raw = line("eject_unhealthy_event", {"failure_type": "ACTIVE"}, "HTTP", "c1", endpoint, 0.25)
    assert raw.endswith(b"\n")
    assert json.loads(raw) == {
        "health_checker_type": "HTTP",
        "host": {"socket_address": {"address": "192.0.2.7", "port_value": 8080}},
        "cluster_name": "c1",
        "eject_unhealthy_event": {"failure_type": "ACTIVE"},
        "timestamp": "1970-01-01T00:00:00.250Z",
    }
    unix = line("add_healthy_event", {}, "TCP", "c", ir.Endpoint(kind="unix", address="/s"), 0)
    assert json.loads(unix)["host"] == {"pipe": {"path": "/s"}}
