"""Stage lags that come from a Prometheus histogram rather than from the log (the gateway's deliveries).

A histogram is cumulative since the process started; the recent distribution is the difference between two
snapshots. `HistogramWindow` keeps snapshots for a window and summarises the difference the way Prometheus'
`histogram_quantile` does (linear interpolation inside a bucket). Pure, apart from `snapshot`, which reads a
live `prometheus_client` histogram.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Histogram

from services.lag.model import Stat


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last
    count: float


def snapshot(histogram: Histogram, at: float) -> Snapshot:
    """The current cumulative buckets of an unlabelled histogram."""
    buckets: list[tuple[float, float]] = []
    count = 0.0
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                count = sample.value
    return Snapshot(at, tuple(sorted(buckets)), count)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus' estimate of quantile `q` from cumulative buckets; 0.0 when empty."""
    if not buckets or buckets[-1][1] <= 0:
        return 0.0
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all that is known
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


class HistogramWindow:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._snapshots: deque[Snapshot] = deque()

    def add(self, snap: Snapshot) -> None:
        self._snapshots.append(snap)
        while len(self._snapshots) > 2 and self._snapshots[1].at <= snap.at - self.window_s:
            self._snapshots.popleft()

    @property
    def ever_observed(self) -> bool:
        return bool(self._snapshots) and self._snapshots[-1].count > 0

    def stat(self) -> Stat:
        """The distribution of what was observed between the oldest and the newest snapshot in the window.
        `max_s` is the upper bound of the highest bucket that received anything."""
        if len(self._snapshots) < 2:
            return Stat()
        old, new = self._snapshots[0], self._snapshots[-1]
        before = dict(old.buckets)
        delta = [(bound, count - before.get(bound, 0.0)) for bound, count in new.buckets]
        total = new.count - old.count
        if total <= 0:
            return Stat()
        top, previous = 0.0, 0.0
        for bound, count in delta:
            if count > previous:
                top = bound if not math.isinf(bound) else top
            previous = count
        return Stat(int(total), histogram_quantile(0.5, delta), histogram_quantile(0.95, delta), top)
