"""Prometheus metrics: a tiny registry and the text exposition format.

A full client library brings threads, process collectors and a registry with
global state; the gateway needs counters, gauges and histograms keyed by a
few labels, updated from one thread per process. Updating is a dict lookup
and an add; rendering happens only when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import TypeVar

LabelValues = tuple[str, ...]

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(value) if isinstance(value, float) and not value.is_integer() else str(int(value))


class Metric:
    """A named family with fixed label names."""

    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)

    def header(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"

    def render(self) -> Iterator[str]:
        raise NotImplementedError


class Counter(Metric):
    """A monotonically rising count per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self.values: dict[LabelValues, float] = {}

    def inc(self, labels: LabelValues = (), amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def render(self) -> Iterator[str]:
        yield from self.header()
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


class Gauge(Counter):
    """A value that goes up and down (open connections, held addresses)."""

    kind = "gauge"

    def set(self, labels: LabelValues, value: float) -> None:
        self.values[labels] = value

    def dec(self, labels: LabelValues = (), amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) - amount


class Histogram(Metric):
    """Observations counted into fixed buckets, plus their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(buckets)
        self.series: dict[LabelValues, list[float]] = {}  # bucket counts…, sum, count

    def observe(self, labels: LabelValues, value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):  # larger values land only in +Inf, i.e. the count
            series[index] += 1
        series[-2] += value
        series[-1] += 1

    def add(self, labels: LabelValues, buckets: list[int], total: float, count: int) -> None:
        """Observations counted elsewhere: per bucket (one more slot for those above every
        bound, which only ``count`` takes), their sum and their count."""
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        for index, n in enumerate(buckets[: len(self.buckets)]):
            series[index] += n
        series[-2] += total
        series[-1] += count

    def render(self) -> Iterator[str]:
        yield from self.header()
        for labels, series in sorted(self.series.items()):
            running = 0.0
            for bound, count in zip(self.buckets, series, strict=False):
                running += count
                le = _labels(self.label_names, labels, f'le="{_number(bound)}"')
                yield f"{self.name}_bucket{le} {_number(running)}"
            inf = _labels(self.label_names, labels, 'le="+Inf"')
            yield f"{self.name}_bucket{inf} {_number(series[-1])}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_number(series[-2])}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {_number(series[-1])}"


M = TypeVar("M", bound=Metric)


class Registry:
    """Every metric the process exports, rendered in registration order."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def add(self, metric: M) -> M:
        self.metrics.append(metric)
        return metric

    def render(self) -> bytes:
        lines = [line for metric in self.metrics for line in metric.render()]
        return ("\n".join(lines) + "\n").encode()
