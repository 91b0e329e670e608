"""The sliding windows the status rules and the rates look at, kept in memory by the process that samples.

Pure: the caller passes the time. Keys are whatever identifies a series (`(group, topic, partition)` for
observations, a topic for end offsets); a series that stops being fed disappears once its samples age out,
so a deleted group or topic does not linger.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

from services.lag.model import Stat
from services.lag.rules import Observation

K = TypeVar("K", bound=Hashable)


class SampleWindow(Generic[K]):
    """Observations per key, no older than `window_s` (the newest is always kept)."""

    def __init__(self, window_s: float, max_samples: int = 1000) -> None:
        self.window_s = window_s
        self.max_samples = max_samples
        self._series: dict[K, deque[Observation]] = {}

    def add(self, key: K, observation: Observation) -> list[Observation]:
        """Record `observation` and return the key's window, oldest first."""
        series = self._series.setdefault(key, deque(maxlen=self.max_samples))
        series.append(observation)
        cutoff = observation.at - self.window_s
        while len(series) > 1 and series[0].at < cutoff:
            series.popleft()
        return list(series)

    def get(self, key: K) -> list[Observation]:
        return list(self._series.get(key, ()))

    def prune(self, now: float) -> None:
        """Forget series whose newest sample is older than the window (they are no longer sampled)."""
        cutoff = now - self.window_s
        for key in [k for k, s in self._series.items() if not s or s[-1].at < cutoff]:
            del self._series[key]

    def __len__(self) -> int:
        return len(self._series)


class Rate:
    """Events per second of a growing count (end offsets, orders seen) over the last `window_s`."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._points: deque[tuple[float, float]] = deque()

    def add(self, at: float, total: float) -> None:
        self._points.append((at, total))
        while len(self._points) > 2 and self._points[1][0] <= at - self.window_s:
            self._points.popleft()

    def per_second(self) -> float:
        if len(self._points) < 2:
            return 0.0
        (t0, v0), (t1, v1) = self._points[0], self._points[-1]
        if t1 <= t0 or v1 < v0:  # a restart of the count (topic recreated): no rate rather than a wrong one
            return 0.0
        return (v1 - v0) / (t1 - t0)


class EventRate:
    """Events per second by event time: how many of them occurred in the last `window_s` before `now`.

    By event time rather than by when they were read, so reading a backlog (the order view's warm-up, a
    catch-up after a pause) does not show as a burst of throughput."""

    def __init__(self, window_s: float = 10.0, cap: int = 200_000) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=cap)

    def add(self, at: float) -> None:
        self._times.append(at)

    def per_second(self, now: float) -> float:
        cutoff = now - self.window_s
        while self._times and self._times[0] <= cutoff:
            self._times.popleft()
        return sum(1 for t in self._times if cutoff < t <= now) / self.window_s  # out-of-order ones too


class Recent:
    """Durations observed in the last `window_s` (by the time they were observed), at most `cap` of them."""

    def __init__(self, window_s: float, cap: int) -> None:
        self.window_s = window_s
        self._items: deque[tuple[float, float]] = deque(maxlen=cap)

    def add(self, at: float, seconds: float) -> None:
        self._items.append((at, max(0.0, seconds)))

    def stat(self, now: float) -> Stat:
        cutoff = now - self.window_s
        while self._items and self._items[0][0] < cutoff:
            self._items.popleft()
        values = [v for _, v in self._items]
        if not values:
            return Stat()
        p50, p95 = quantiles(values)
        return Stat(len(values), p50, p95, max(values))


def quantiles(values: Sequence[float], qs: Sequence[float] = (0.5, 0.95)) -> list[float]:
    """Nearest-rank quantiles of `values` (0.0 for none): cheap and exact enough for a few thousand."""
    if not values:
        return [0.0 for _ in qs]
    ordered = sorted(values)
    n = len(ordered)
    return [ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] for q in qs]
