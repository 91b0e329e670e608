"""The report and its three views agree: JSON, the terminal table, Prometheus gauges; stage histograms."""

from __future__ import annotations

import dataclasses
import math
import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.lag.exporter import COUNTERS, GAUGES, LagExporter
from services.lag.model import (
    GroupLag,
    LagReport,
    OrdersView,
    PartitionLag,
    RestingOrders,
    StageLag,
    Stat,
    StuckOrder,
    TopicLag,
)
from services.lag.stages import HistogramWindow, Snapshot, histogram_quantile
from services.lag.terminal import from_api, no_answer, render


def report() -> LagReport:
    partitions = (
        PartitionLag(
            "p.orders.events", 0, 90, 100, 10, 4.25, "STOPPED", "no progress", log_end=101, updated_age_s=9.0
        ),
        PartitionLag("p.orders.events", 1, None, 0, 0, 0.0, "OK", "caught up"),
    )
    stuck = StuckOrder("0b8f1e9a-0000-4000-8000-000000000001", "submitted", 1_700_000_000.0, 45.0, 30.0, 0)
    orders = OrdersView(
        in_flight={"pending": 1, "routing": 0, "building": 0, "submitted": 3},
        seen={"pending": 9, "routing": 8, "building": 8, "submitted": 8, "confirmed": 5, "failed": 0},
        rate_per_s={"pending": 1.5, "confirmed": 1.0, "failed": 0.0},
        dwell={"pending": Stat(8, 0.01, 0.02, 0.03)},
        oldest_s={"pending": 0.5, "routing": 0.0, "building": 0.0, "submitted": 45.0},
        stuck=(stuck,),
        stuck_by_status={"pending": 0, "routing": 0, "building": 0, "submitted": 1},
        thresholds_s={"pending": 30.0, "routing": 14.0, "building": 14.0, "submitted": 30.0},
        tracked=4,
        gaps=0,
    )
    return LagReport(
        seq=7,
        sampled_at=1_700_000_045.0,
        took_s=0.012,
        interval_s=2.0,
        window_s=30.0,
        scope="deployment",
        groups=(
            GroupLag(
                "projection:orders",
                "projection",
                "STOPPED",
                "p.orders.events[0]: no progress",
                0,
                "silent",
                partitions,
            ),
        ),
        topics=(TopicLag("p.orders.events", 2, 100, 1, 3.5),),
        stages=(
            StageLag("ingress_to_router", Stat(8, 0.004, 0.009, 0.01), "log"),
            StageLag("log_to_projector", Stat(3, 2.0, 4.0, 4.25), "kafka+postgres", current_s=4.25),
            StageLag("log_to_gateway", Stat(), "gateway", pending="no deliveries"),
        ),
        orders=orders,
    )


def test_json_shape() -> None:
    body = report().to_json()
    assert body["seq"] == 7 and body["sampled_at"] == "2023-11-14T22:14:05.000Z"
    group = body["groups"][0]
    assert (group["group"], group["lag"], group["time_lag_s"], group["members"]) == (
        "projection:orders",
        10,
        4.25,
        0,
    )
    assert group["partitions"][0] | {"updated_age_s": 9.0} == group["partitions"][0]
    assert body["orders"]["stuck"]["count"] == 1 and body["orders"]["in_flight_total"] == 4
    assert body["stages"][2]["pending"] == "no deliveries"
    assert body["stages"][0]["label"] == "ingress → router"


def test_terminal_view_shows_the_same_numbers() -> None:
    text = render(report().to_json())
    assert "lag sample #7" in text
    row = next(line for line in text.splitlines() if line.split()[:2] == ["p.orders.events", "0"])
    assert row.split() == ["p.orders.events", "0", "90", "100", "10", "4.25s", "STOPPED"]
    assert "projection:orders: STOPPED" in text
    assert "0b8f1e9a-0000-4000-8000-000000000001  submitted" in text
    assert "pending" in next(line for line in text.splitlines() if line.startswith("log → gateway"))


def test_prometheus_gauges_parse_and_carry_the_same_numbers() -> None:
    registry = CollectorRegistry()
    latest: list[LagReport | None] = [None]
    registry.register(LagExporter(lambda: latest[0]))
    assert generate_latest(registry) == b""  # nothing before the first sample
    latest[0] = report()
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert set(families) == set(GAUGES) | {n.removesuffix("_total") for n in COUNTERS} | {"oee_orders_seen"}

    def value(name: str, **labels: str) -> float:
        return next(
            s.value for s in families[name].samples if all(s.labels.get(k) == v for k, v in labels.items())
        )

    assert value("oee_consumer_lag_offsets", group="projection:orders", partition="0") == 10
    assert value("oee_consumer_lag_seconds", group="projection:orders", partition="0") == 4.25
    assert value("oee_consumer_group_status", group="projection:orders") == 3
    assert value("oee_topic_unstable_offsets", partition="0") == 1
    assert value("oee_stage_lag_seconds", stage="log_to_projector", stat="current") == 4.25
    assert value("oee_orders_stuck", status="submitted") == 1
    assert value("oee_lag_sample_seq") == 7
    assert not [s for s in families["oee_stage_lag_seconds"].samples if s.labels["stage"] == "log_to_gateway"]


def test_histogram_quantile_like_prometheus() -> None:
    buckets = [(0.1, 10.0), (0.5, 60.0), (1.0, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, buckets) == 0.1 + 0.4 * (50 - 10) / 50
    assert histogram_quantile(0.95, buckets) == 0.5 + 0.5 * (95 - 60) / 40
    assert histogram_quantile(0.5, []) == 0.0
    assert histogram_quantile(0.99, [(1.0, 1.0), (math.inf, 10.0)]) == 1.0


def test_histogram_window_summarises_what_happened_inside_it() -> None:
    w = HistogramWindow(window_s=10)
    w.add(Snapshot(0.0, ((0.5, 100.0), (1.0, 100.0), (math.inf, 100.0)), 100.0))
    assert w.stat() == Stat()
    w.add(Snapshot(5.0, ((0.5, 100.0), (1.0, 110.0), (math.inf, 110.0)), 110.0))
    stat = w.stat()
    assert (stat.count, stat.max_s) == (10, 1.0) and 0.5 < stat.p50_s <= 1.0
    assert w.ever_observed


async def test_the_terminal_reads_the_api_once_or_watching() -> None:
    import io

    import httpx
    import orjson

    from services import config
    from services.lag.terminal import show

    seqs = iter(range(7, 100))

    def api(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/lag"
        body = report().to_json() | {"seq": next(seqs)}
        return httpx.Response(200, content=orjson.dumps(body))

    settings = config.load({})
    async with httpx.AsyncClient(transport=httpx.MockTransport(api)) as client:
        once, as_json, watched = io.StringIO(), io.StringIO(), io.StringIO()
        assert await show(settings, "http://api", out=once, client=client) == 0
        assert await show(settings, "http://api", out=as_json, client=client, as_json=True) == 0
        assert await show(settings, "http://api", out=watched, client=client, watch=0.0, times=3) == 0
    assert once.getvalue().startswith("lag sample #7 ")
    assert orjson.loads(as_json.getvalue())["seq"] == 8
    assert [line.split()[2] for line in watched.getvalue().splitlines() if line.startswith("lag sample")] == [
        "#9", "#10", "#11",
    ]  # fmt: skip


def test_resting_orders_in_the_json_the_terminal_and_the_gauges() -> None:
    resting = RestingOrders({"limit": 4, "sniper": 1}, 7200.0)
    sample = dataclasses.replace(report(), resting=resting)
    body = sample.to_json()
    assert body["resting"] == {"count": 5, "by_type": {"limit": 4, "sniper": 1}, "oldest_s": 7200.0}
    assert body["orders"]["stuck"]["count"] == 1  # resting orders are never among the stuck
    line = next(line for line in render(body).splitlines() if line.startswith("resting orders"))
    assert line.endswith(": 5 (limit 4, sniper 1; oldest 7200s)")
    assert "- (no projection)" in render(report().to_json())  # an API without a projection says so

    registry = CollectorRegistry()
    registry.register(LagExporter(lambda: sample))
    samples = {
        (s.name, s.labels.get("type")): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }
    assert samples[("oee_orders_resting", "limit")] == 4 and samples[("oee_orders_resting", "sniper")] == 1
    assert samples[("oee_orders_resting_oldest_seconds", None)] == 7200.0


async def test_an_api_that_does_not_answer_is_named_with_the_reason() -> None:
    """`oee lag` with the API stopped said "did not answer ()": the reason is the refused connect itself."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.HTTPError) as failed:
            await from_api(url, http)
    said = no_answer(url, failed.value)
    assert said.startswith(f"the API at {url} did not answer (ConnectionRefusedError: "), said
    assert no_answer(url, httpx.ReadError("")) == f"the API at {url} did not answer (ReadError: no details)"
