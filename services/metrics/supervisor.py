"""The supervisor's metrics, from its snapshot: restarts, crash loops and what runs, per component.

The supervisor serves them on `SUPERVISOR_METRICS_PORT`; the API serves the same series from the snapshot
file the supervisor keeps (so one scrape of the API shows them too). A component is a service (`venue`,
`router`, `projector`, `api`), a broker node (`kafka`, `kafka-2`, ...) or the database (`postgres`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Snapshot = Mapping[str, Any]


class SupervisorCollector(Collector):
    """Collects from `snapshot()` at scrape time; nothing when it returns None (no supervisor runs)."""

    def __init__(self, snapshot: Callable[[], Snapshot | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        if not snapshot:
            return
        labels = ["component", "kind"]
        restarts = CounterMetricFamily(
            "oee_supervisor_restarts",
            "Times the supervisor started a component again after it exited",
            labels=labels,
        )
        hung = CounterMetricFamily(
            "oee_supervisor_hung",
            "Times the supervisor SIGKILLed a service that did not answer its liveness probe (each also a restart)",
            labels=labels,
        )
        probe_failures = GaugeMetricFamily(
            "oee_supervisor_liveness_failures",
            "Liveness probes the service failed in a row, now (0 while it answers)",
            labels=labels,
        )
        up = GaugeMetricFamily(
            "oee_supervisor_component_up", "1 while the component runs and is ready", labels=labels
        )
        looping = GaugeMetricFamily(
            "oee_supervisor_crash_looping",
            "1 while the component restarted at least the crash-loop threshold within the window",
            labels=labels,
        )
        recent = GaugeMetricFamily(
            "oee_supervisor_recent_restarts", "Restarts within the crash-loop window", labels=labels
        )
        last_exit = GaugeMetricFamily(
            "oee_supervisor_last_exit_timestamp_seconds",
            "When the component last exited (unix time)",
            labels=labels,
        )
        for c in snapshot.get("components", ()):
            key = [str(c["name"]), str(c["kind"])]
            restarts.add_metric(key, float(c.get("restarts", 0)))
            if c.get("probe"):
                hung.add_metric(key, float(c.get("hung", 0)))
                probe_failures.add_metric(key, float(c.get("probe_failures", 0)))
            up.add_metric(key, 1.0 if c.get("state") == "running" else 0.0)
            looping.add_metric(key, 1.0 if c.get("crash_loop") else 0.0)
            recent.add_metric(key, float(c.get("recent_restarts", 0)))
            if c.get("last_exit_at") is not None:
                last_exit.add_metric(key, float(c["last_exit_at"]))
        yield from (restarts, hung, probe_failures, up, looping, recent, last_exit)
