"""Passive health checks (BackendTrafficPolicy ``healthCheck.passive``): Envoy's outlier detection.

Theory of operation
-------------------
One ``OutlierDetector`` per cluster (a rule's backend) counts, per endpoint,
consecutive results as the data plane reports them, and ejects an endpoint
the moment a count reaches its threshold, as Envoy does:

- a response: a 5xx adds to the 5xx count; 502, 503 and 504 also add to the
  gateway-error count (any other 5xx resets it); anything below 500 resets both;
- a local-origin failure (connect refused or timed out, reset, timeout):
  without ``split_local_origin`` it counts as a 503 (504 for a timeout) above;
  with it, it adds to its own count (``consecutive_local_origin``) instead,
  and a successful connect resets that count.

A threshold of 0 never fires (Envoy Gateway sets ``consecutiveGatewayErrors``
to 0 in its own examples, and leaves gateway errors unenforced when unset).

``failure_percentage_threshold`` (Envoy's failure-percentage ejection, which
Envoy Gateway enforces at 100 % when the field is set) looks at whole
intervals instead: every response is counted per endpoint (a 5xx, and without
``split_local_origin`` a local-origin failure, as a failure); at each interval
tick, if at least ``FAILURE_PERCENTAGE_MINIMUM_HOSTS`` endpoints in rotation
had ``FAILURE_PERCENTAGE_REQUEST_VOLUME`` requests or more during the interval
(Envoy's defaults, which Envoy Gateway does not expose), each of those whose
failures were at least the threshold percent of its requests is ejected;
then the counts start again.

An ejection is refused when it would take the ejected share of the cluster
over ``max_ejection_percent`` ((ejected + 1) / endpoints), unless
``always_eject_one`` and none is ejected. An ejected endpoint stays out for
``base_ejection_time * multiplier`` (capped at max(300 s, base)); each
ejection raises the multiplier by one, and each interval that passes with the
endpoint back in lowers it by one, so a flapping endpoint stays out longer
and longer and a recovered one is forgiven over time.

Envoy does that bookkeeping on an interval timer; here it is computed
lazily from the clock whenever an endpoint is looked at: ticks fall at
``origin + k * interval``, an ejection ends at the first tick at or after its
due time, and the ticks since then lower the multiplier. No task, no timer,
and the same answers, which keeps this module pure (the clock is passed in).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

from edgegw import ir

MAX_EJECTION_TIME = 300.0  # Envoy's max_ejection_time default
FAILURE_PERCENTAGE_MINIMUM_HOSTS = 5  # Envoy's failure_percentage_minimum_hosts default
FAILURE_PERCENTAGE_REQUEST_VOLUME = 50  # Envoy's failure_percentage_request_volume default
_GATEWAY_ERRORS = frozenset({502, 503, 504})
LocalFailure = Literal["connect", "timeout", "reset"]


@dataclass(slots=True)
class EndpointRecord:
    """One endpoint's counts and ejection state."""

    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    consecutive_local: int = 0
    multiplier: int = 0
    ejected_at: float | None = None  # None: in rotation
    settled: float = 0.0  # the time up to which ticks were applied
    ejections: int = 0  # total, for the metrics
    requests: int = 0  # in the current interval, for failure_percentage_threshold
    failures: int = 0


class OutlierDetector:
    """Consecutive-error ejection for the endpoints of one cluster."""

    def __init__(self, config: ir.PassiveHealthCheck, origin: float) -> None:
        self.config = config
        self.origin = origin
        self.records: dict[Hashable, EndpointRecord] = {}
        self.endpoints = 0  # how many the cluster has, for max_ejection_percent
        # the tick at which the current interval's counts are judged (None: not counted)
        self._judge_at = (
            None if config.failure_percentage_threshold is None else origin + config.interval
        )

    def record(self, endpoint: Hashable, now: float) -> EndpointRecord:
        found = self.records.get(endpoint)
        if found is None:
            if len(self.records) > 4096:  # endpoints come and go with reloads
                self.records = {k: r for k, r in self.records.items() if r.ejected_at is not None}
            found = self.records[endpoint] = EndpointRecord(settled=now)
        return found

    # --- what the data plane reports ---------------------------------------------------------

    def on_status(self, endpoint: Hashable, status: int, now: float) -> bool:
        """A response with ``status``; True when it ejected the endpoint."""
        if self._judge_at is not None:
            self._count(endpoint, status >= 500, now)
        rec = self.record(endpoint, now)
        self._settle(rec, now)
        if status < 500:
            rec.consecutive_5xx = rec.consecutive_gateway = 0
            return False
        config = self.config
        fired = False
        if status in _GATEWAY_ERRORS:
            rec.consecutive_gateway += 1
            fired = rec.consecutive_gateway == config.consecutive_gateway
        else:
            rec.consecutive_gateway = 0
        rec.consecutive_5xx += 1
        fired = fired or rec.consecutive_5xx == config.consecutive_5xx
        return fired and self._eject(rec, now)

    def on_local_failure(self, endpoint: Hashable, kind: LocalFailure, now: float) -> bool:
        """A connect failure, reset or timeout; True when it ejected the endpoint."""
        if not self.config.split_local_origin:
            return self.on_status(endpoint, 504 if kind == "timeout" else 503, now)
        rec = self.record(endpoint, now)
        self._settle(rec, now)
        rec.consecutive_local += 1
        if rec.consecutive_local == self.config.consecutive_local_origin:
            return self._eject(rec, now)
        return False

    def on_connected(self, endpoint: Hashable, now: float) -> None:
        """A successful connect: resets the local-origin count (split mode only)."""
        if self.config.split_local_origin:
            rec = self.records.get(endpoint)
            if rec is not None:
                rec.consecutive_local = 0

    # --- what the load balancer asks ---------------------------------------------------------

    def is_ejected(self, endpoint: Hashable, now: float) -> bool:
        if self._judge_at is not None and now >= self._judge_at:
            self._judge(now)
        rec = self.records.get(endpoint)
        if rec is None or rec.ejected_at is None:
            return False
        self._settle(rec, now)
        return rec.ejected_at is not None

    def ejected_count(self, now: float) -> int:
        if self._judge_at is not None and now >= self._judge_at:
            self._judge(now)
        count = 0
        for rec in self.records.values():
            if rec.ejected_at is not None:
                self._settle(rec, now)
                count += rec.ejected_at is not None
        return count

    # --- failure percentage ------------------------------------------------------------------

    def _count(self, endpoint: Hashable, failed: bool, now: float) -> None:
        assert self._judge_at is not None
        if now >= self._judge_at:
            self._judge(now)  # the interval this falls into begins after the tick
        rec = self.record(endpoint, now)
        rec.requests += 1
        rec.failures += failed

    def _judge(self, now: float) -> None:
        """The tick at ``_judge_at`` has passed: judge its interval's counts, start anew."""
        tick = self._judge_at
        assert tick is not None
        assert self.config.failure_percentage_threshold is not None
        threshold = self.config.failure_percentage_threshold
        interval = self.config.interval
        self._judge_at = tick + interval * (1 + math.floor((now - tick) / interval + 1e-9))
        counted = []
        for rec in self.records.values():
            if rec.requests >= FAILURE_PERCENTAGE_REQUEST_VOLUME:
                self._settle(rec, tick)
                if rec.ejected_at is None:
                    counted.append(rec)
        if len(counted) >= FAILURE_PERCENTAGE_MINIMUM_HOSTS:
            for rec in counted:
                if 100.0 * rec.failures / rec.requests >= threshold:
                    self._eject(rec, tick)
        for rec in self.records.values():
            rec.requests = rec.failures = 0

    # --- the rules ---------------------------------------------------------------------------

    def _eject(self, rec: EndpointRecord, now: float) -> bool:
        rec.consecutive_5xx = rec.consecutive_gateway = rec.consecutive_local = 0
        if rec.ejected_at is not None:
            return False
        config = self.config
        ejected = self.ejected_count(now)
        total = max(self.endpoints, len(self.records), 1)
        allowed = 100.0 * (ejected + 1) / total <= config.max_ejection_percent
        if not allowed and not (config.always_eject_one and ejected == 0):
            return False
        rec.ejected_at = now
        rec.ejections += 1
        base = config.base_ejection_time
        if rec.multiplier * base < self._max_time() + base:
            rec.multiplier += 1
        return True

    def _max_time(self) -> float:
        return max(MAX_EJECTION_TIME, self.config.base_ejection_time)

    def ejection_time(self, rec: EndpointRecord) -> float:
        """How long the current ejection lasts (before rounding up to a tick)."""
        return min(self.config.base_ejection_time * rec.multiplier, self._max_time())

    def _settle(self, rec: EndpointRecord, now: float) -> None:
        """Apply the interval ticks in (rec.settled, now]: un-ejections and forgiveness."""
        if now <= rec.settled:
            return
        if rec.ejected_at is not None:
            due = self._tick_at_or_after(rec.ejected_at + self.ejection_time(rec))
            if due > now:
                rec.settled = now
                return
            rec.ejected_at = None
            rec.settled = due  # the tick that un-ejected it lowers nothing
            rec.consecutive_5xx = rec.consecutive_gateway = 0
        ticks = self._ticks_between(rec.settled, now)
        rec.multiplier = max(0, rec.multiplier - ticks)
        rec.settled = now

    def _tick_at_or_after(self, when: float) -> float:
        interval = self.config.interval
        k = max(1, math.ceil((when - self.origin) / interval - 1e-9))
        return self.origin + k * interval

    def _ticks_between(self, start: float, end: float) -> int:
        """Ticks in (start, end]."""
        interval = self.config.interval
        first = math.floor((start - self.origin) / interval + 1e-9)
        last = math.floor((end - self.origin) / interval + 1e-9)
        return max(0, last - first)
