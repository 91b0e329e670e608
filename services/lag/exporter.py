"""The lag monitor's latest report as Prometheus gauges (`/metrics` of the API process).

A custom collector rather than labelled `Gauge`s: each scrape renders the report as it is, so a group,
partition or stage that disappeared is not exported with a stale value forever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.lag.model import LagReport
from services.lag.rules import SEVERITY, Status

PARTITION = ["group", "topic", "partition"]

# name -> help; the Grafana dashboard test checks its queries against these and the services' metrics.
GAUGES: dict[str, str] = {
    "oee_consumer_lag_offsets": "Offset lag: last stable offset minus committed offset",
    "oee_consumer_lag_seconds": "Time lag: age of the oldest unread record (0 when caught up)",
    "oee_consumer_committed_offset": "Committed offset (projections: stored next offset)",
    "oee_consumer_group_lag_offsets": "Offset lag summed over the group's partitions",
    "oee_consumer_group_lag_seconds": "Largest time lag among the group's partitions",
    "oee_consumer_group_status": "Group status: 0 OK, 1 WARN, 2 STALL, 3 STOPPED, 4 ERR (docs/lag.md)",
    "oee_consumer_group_members": "Members of the group (projections: 1 while the projector checks in)",
    "oee_topic_end_offset": "Last stable offset of a partition (what read_committed readers can reach)",
    "oee_topic_unstable_offsets": "High watermark minus last stable offset: offsets held by open transactions",
    "oee_topic_rate_per_second": "Records appended to the topic per second (recent)",
    "oee_stage_lag_seconds": "Pipeline stage lag from event times, by stage and stat (p50, p95, max, current)",
    "oee_orders_in_flight": "Orders in each non-terminal status, from the event log",
    "oee_orders_stuck": "Orders in a status longer than its threshold",
    "oee_orders_resting": "Resting limit and sniper orders (waiting for the market) in the projection, by type",
    "oee_orders_resting_oldest_seconds": "How long the longest-resting order has waited (projection)",
    "oee_order_status_oldest_seconds": "Age of the oldest order in each non-terminal status",
    "oee_order_dwell_seconds": "How long orders stayed in a status (recent transitions), by stat",
    "oee_lag_sample_duration_seconds": "How long the last lag sample took",
    "oee_lag_sample_seq": "Sequence number of the last lag sample",
}
COUNTERS: dict[str, str] = {
    "oee_orders_seen": "Events moving an order to a status, seen by the lag monitor since it started",
}


class LagExporter(Collector):
    def __init__(self, latest: Callable[[], LagReport | None]) -> None:
        self._latest = latest

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # the series depend on the report: nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        report = self._latest()
        if report is None:
            return
        g = {name: GaugeMetricFamily(name, text, labels=_labels(name)) for name, text in GAUGES.items()}
        seen = CounterMetricFamily("oee_orders_seen", COUNTERS["oee_orders_seen"], labels=["status"])
        for group in report.groups:
            for p in group.partitions:
                labels = [group.group, p.topic, str(p.partition)]
                g["oee_consumer_lag_offsets"].add_metric(labels, p.lag)
                g["oee_consumer_lag_seconds"].add_metric(labels, p.time_lag_s)
                if p.committed is not None:
                    g["oee_consumer_committed_offset"].add_metric(labels, p.committed)
            g["oee_consumer_group_lag_offsets"].add_metric([group.group], group.lag)
            g["oee_consumer_group_lag_seconds"].add_metric([group.group], group.time_lag_s)
            g["oee_consumer_group_status"].add_metric([group.group], SEVERITY[Status(group.status)])
            if group.members is not None:
                g["oee_consumer_group_members"].add_metric([group.group], group.members)
        ends = {(p.topic, p.partition): p for grp in report.groups for p in grp.partitions}
        for (topic, partition), p in sorted(ends.items()):
            g["oee_topic_end_offset"].add_metric([topic, str(partition)], p.end)
            if p.log_end is not None:
                g["oee_topic_unstable_offsets"].add_metric([topic, str(partition)], max(0, p.log_end - p.end))
        for t in report.topics:
            g["oee_topic_rate_per_second"].add_metric([t.topic], t.rate_per_s)
        for s in report.stages:
            if s.pending:
                continue
            for stat, value in (("p50", s.stat.p50_s), ("p95", s.stat.p95_s), ("max", s.stat.max_s)):
                g["oee_stage_lag_seconds"].add_metric([s.stage, stat], value)
            if s.current_s is not None:
                g["oee_stage_lag_seconds"].add_metric([s.stage, "current"], s.current_s)
        if report.orders is not None:
            o = report.orders
            for status, n in o.in_flight.items():
                g["oee_orders_in_flight"].add_metric([status], n)
                g["oee_orders_stuck"].add_metric([status], o.stuck_by_status.get(status, 0))
                g["oee_order_status_oldest_seconds"].add_metric([status], o.oldest_s.get(status, 0.0))
            for status, d in o.dwell.items():
                for stat, value in (("p50", d.p50_s), ("p95", d.p95_s), ("max", d.max_s)):
                    g["oee_order_dwell_seconds"].add_metric([status, stat], value)
            for status, n in o.seen.items():
                seen.add_metric([status], n)
        if report.resting is not None:
            for order_type, n in report.resting.by_type.items():
                g["oee_orders_resting"].add_metric([order_type], n)
            g["oee_orders_resting_oldest_seconds"].add_metric([], report.resting.oldest_age_s)
        g["oee_lag_sample_duration_seconds"].add_metric([], report.took_s)
        g["oee_lag_sample_seq"].add_metric([], report.seq)
        yield from g.values()
        yield seen


def _labels(name: str) -> list[str]:
    if name in ("oee_consumer_lag_offsets", "oee_consumer_lag_seconds", "oee_consumer_committed_offset"):
        return PARTITION
    if name.startswith("oee_consumer_group_"):
        return ["group"]
    if name in ("oee_topic_end_offset", "oee_topic_unstable_offsets"):
        return ["topic", "partition"]
    if name == "oee_topic_rate_per_second":
        return ["topic"]
    if name == "oee_stage_lag_seconds":
        return ["stage", "stat"]
    if name in ("oee_orders_in_flight", "oee_orders_stuck", "oee_order_status_oldest_seconds"):
        return ["status"]
    if name == "oee_orders_resting":
        return ["type"]
    if name == "oee_order_dwell_seconds":
        return ["status", "stat"]
    return []
