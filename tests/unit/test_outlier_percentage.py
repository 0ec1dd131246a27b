"""Passive health ``failurePercentageThreshold``: Envoy's failure-percentage ejection, judged
per interval with its default minimum of 5 endpoints and 50 requests each."""

from __future__ import annotations

from edgegw import ir
from edgegw.policy.outlier import OutlierDetector

HOSTS = [ir.Endpoint(address=f"192.0.2.{i}", port=80) for i in range(1, 7)]


def _detector(threshold: int | None = 50, **kw: object) -> OutlierDetector:
    config = ir.PassiveHealthCheck(
        **{  # type: ignore[arg-type]
            "interval": 1.0,
            "base_ejection_time": 10.0,
            "max_ejection_percent": 100,
            "consecutive_5xx": 0,  # only the percentage can eject here
            "failure_percentage_threshold": threshold,
            **kw,
        }
    )
    detector = OutlierDetector(config, origin=0.0)
    detector.endpoints = len(HOSTS)
    return detector


def _load(d: OutlierDetector, hosts: int, requests: int, bad: dict[int, int], at: float) -> None:
    """``requests`` per endpoint at time ``at``; ``bad[i]`` of endpoint i's answer 500."""
    for i in range(hosts):
        for n in range(requests):
            d.on_status(HOSTS[i], 500 if n < bad.get(i, 0) else 200, at)


def test_ejected_at_the_tick_when_failures_reach_the_threshold() -> None:
    d = _detector(50)
    _load(d, 5, 50, {0: 25, 1: 24}, 0.5)  # 50 % and 48 %
    assert not d.is_ejected(HOSTS[0], 0.99)  # judged at the tick, not before
    assert d.is_ejected(HOSTS[0], 1.0)
    assert not d.is_ejected(HOSTS[1], 1.0)
    assert d.records[HOSTS[0]].ejections == 1
    assert d.is_ejected(HOSTS[0], 10.5)  # base ejection time from the tick: back at 11.0
    assert not d.is_ejected(HOSTS[0], 11.0)


def test_needs_five_endpoints_with_fifty_requests_each() -> None:
    few_hosts = _detector(10)
    _load(few_hosts, 4, 100, {0: 100}, 0.5)
    assert not few_hosts.is_ejected(HOSTS[0], 1.5)
    low_volume = _detector(10)
    _load(low_volume, 5, 49, {0: 49}, 0.5)  # every endpoint one short of the volume
    assert not low_volume.is_ejected(HOSTS[0], 1.5)
    one_short = _detector(10)
    _load(one_short, 5, 50, {0: 50}, 0.5)
    one_short.records[HOSTS[4]].requests -= 1  # four endpoints with volume: too few
    assert not one_short.is_ejected(HOSTS[0], 1.5)


def test_each_interval_is_judged_on_its_own() -> None:
    d = _detector(50)
    _load(d, 5, 30, {0: 30}, 0.5)  # 30 requests before the tick at 1.0 ...
    _load(d, 5, 30, {0: 30}, 1.5)  # ... and 30 after: neither interval has the volume
    assert not d.is_ejected(HOSTS[0], 2.0)
    _load(d, 5, 50, {0: 30}, 2.5)  # 60 % within [2, 3)
    assert d.is_ejected(HOSTS[0], 3.2)


def test_quiet_intervals_in_between_judge_nothing_new() -> None:
    d = _detector(50)
    _load(d, 5, 50, {0: 50}, 0.5)
    assert d.on_status(HOSTS[5], 200, 7.3) is False  # first event after six silent ticks
    assert d.is_ejected(HOSTS[0], 7.3)  # ejected at the tick 1.0, still out
    assert d.records[HOSTS[0]].ejected_at == 1.0
    assert d.records[HOSTS[0]].requests == 0


def test_unset_threshold_counts_nothing_and_max_percent_still_bounds() -> None:
    off = _detector(None)
    _load(off, 5, 50, {0: 50}, 0.5)
    assert not off.is_ejected(HOSTS[0], 1.5)
    assert off.records[HOSTS[0]].requests == 0
    bounded = _detector(50, max_ejection_percent=20)  # one of six at most
    _load(bounded, 6, 50, {0: 50, 1: 50}, 0.5)
    assert bounded.ejected_count(1.0) == 1


def test_local_failures_count_unless_split() -> None:
    mixed = _detector(50)
    for i in range(5):
        for n in range(50):
            if i == 0 and n < 25:
                mixed.on_local_failure(HOSTS[i], "connect", 0.5)
            else:
                mixed.on_status(HOSTS[i], 200, 0.5)
    assert mixed.is_ejected(HOSTS[0], 1.0)
    split = _detector(50, split_local_origin=True, consecutive_local_origin=0)
    for i in range(5):
        for n in range(50):
            if i == 0 and n < 25:
                split.on_local_failure(HOSTS[i], "connect", 0.5)
            split.on_status(HOSTS[i], 200, 0.5)
    assert not split.is_ejected(HOSTS[0], 1.0)  # Envoy Gateway enforces the external count only
