"""Counters and histograms whose numbers live in Redis, so that every process adds to the same
totals: a task created by one web process, finished by a worker on another host, is counted
once, and any web process's /metrics shows it, before and after any of them restarts.

All numbers are fields of one hash. A field is the JSON of `[metric name, label values, part]`
where part is "count", "sum" or, for a histogram, the upper bound of the one bucket an
observation fell in (the buckets are made cumulative when read).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

KEY = "pt:metrics"


@dataclass(frozen=True)
class SharedMetric:
    """A counter, or a histogram when `buckets` are given (upper bounds, in seconds)."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def add(self, pipe, values: tuple[str, ...]) -> None:
        pipe.hincrby(*self.counter(values), 1)

    def counter(self, values: tuple[str, ...]) -> tuple[str, str]:
        """The hash and field counting these label values, for a script to add to."""
        return KEY, self._field(values, "count")

    def observe(self, pipe, values: tuple[str, ...], amount: float) -> None:
        bound = next((b for b in self.buckets if amount <= b), math.inf)
        pipe.hincrby(KEY, self._field(values, floatToGoString(bound)), 1)
        pipe.hincrby(KEY, self._field(values, "count"), 1)
        pipe.hincrbyfloat(KEY, self._field(values, "sum"), amount)

    def _field(self, values: tuple[str, ...], part: str) -> str:
        return json.dumps([self.name, list(values), part])

    def family(self, parts: dict[tuple[str, ...], dict[str, float]]):
        """The metric family for Prometheus, from {label values: {part: number}}."""
        if not self.buckets:
            family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
            for values, numbers in sorted(parts.items()):
                family.add_metric(values, numbers.get("count", 0))
            return family
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, numbers in sorted(parts.items()):
            family.add_metric(values, self._cumulative(numbers), numbers.get("sum", 0.0))
        return family

    def _cumulative(self, numbers: dict[str, float]) -> list[tuple[str, float]]:
        total, buckets = 0.0, []
        for bound in (*self.buckets, math.inf):
            total += numbers.get(floatToGoString(bound), 0)
            buckets.append((floatToGoString(bound), total))
        return buckets


def families(raw: dict[bytes, bytes], metrics: tuple[SharedMetric, ...]) -> list:
    """Every metric's family from the hash as HGETALL returns it."""
    by_metric: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
    for field, value in raw.items():
        name, values, part = json.loads(field)
        by_metric[name][tuple(values)][part] = float(value)
    return [metric.family(by_metric[metric.name]) for metric in metrics]
