"""The order view (pure): status counts, dwell, stage durations from event times, stuck orders."""

from __future__ import annotations

import uuid

import pytest

from services.lag.orders import OrderTracker

THRESHOLDS = {"pending": 30.0, "routing": 14.0, "building": 14.0, "submitted": 30.0}
LIFECYCLE = ["OrderRequested", "OrderRouting", "OrderBuilding", "OrderSubmitted", "OrderConfirmed"]


def feed(
    tracker: OrderTracker, order_id: str, times: list[float], types: list[str] = LIFECYCLE, partition: int = 0
) -> None:
    for seq, (kind, at) in enumerate(zip(types, times, strict=False), start=1):
        tracker.apply(order_id, seq, kind, at, partition)


def oid() -> str:
    return str(uuid.uuid4())


def test_a_finished_order_leaves_stage_and_dwell_durations_and_no_trace_in_flight() -> None:
    t = OrderTracker(stats_window_s=60)
    feed(t, oid(), [100.0, 100.5, 101.0, 101.0, 103.5])
    view = t.view(104.0, THRESHOLDS)
    assert view.in_flight == {"pending": 0, "routing": 0, "building": 0, "submitted": 0}
    assert view.seen == {
        "pending": 1,
        "routing": 1,
        "building": 1,
        "submitted": 1,
        "confirmed": 1,
        "failed": 0,
        "open": 0,
        "triggered": 0,
        "expired": 0,
        "cancelled": 0,
    }
    assert t.stage("ingress_to_router", 104.0).max_s == 0.5
    assert t.stage("router_quote", 104.0).max_s == 0.5
    assert t.stage("venue_execution", 104.0).max_s == 2.5
    assert t.stage("end_to_end", 104.0).max_s == 3.5
    assert view.dwell["pending"].count == 1 and view.dwell["pending"].max_s == 0.5
    assert view.dwell["submitted"].max_s == 2.5
    assert view.tracked == 0 and view.stuck == ()


def test_orders_past_their_status_threshold_are_stuck_and_listed_oldest_first() -> None:
    t = OrderTracker()
    fresh, old_submitted, older_routing = oid(), oid(), oid()
    feed(t, fresh, [990.0, 990.1, 990.2, 990.2])  # submitted 10 s ago: fine
    feed(t, old_submitted, [900.0, 900.1, 900.2, 900.2])  # submitted 100 s ago
    feed(t, older_routing, [800.0, 800.1], LIFECYCLE[:2])  # routing for 200 s
    view = t.view(1000.0, THRESHOLDS)
    assert view.in_flight == {"pending": 0, "routing": 1, "building": 0, "submitted": 2}
    assert [s.order_id for s in view.stuck] == [older_routing, old_submitted]
    assert view.stuck[0].status == "routing" and round(view.stuck[0].age_s) == 200
    assert view.stuck_by_status == {"pending": 0, "routing": 1, "building": 0, "submitted": 1}
    assert round(view.oldest_s["submitted"]) == 100


def test_duplicates_and_replays_change_nothing() -> None:
    t = OrderTracker()
    order = oid()
    feed(t, order, [1.0, 2.0])
    t.apply(order, 2, "OrderRouting", 2.0, 0)
    t.apply(order, 1, "OrderRequested", 1.0, 0)
    view = t.view(3.0, THRESHOLDS)
    assert view.seen["routing"] == 1 and view.seen["pending"] == 1
    assert view.in_flight["routing"] == 1


def test_an_order_first_seen_mid_way_is_tracked_without_the_stages_it_missed() -> None:
    t = OrderTracker()
    order = oid()
    t.apply(order, 4, "OrderSubmitted", 10.0, 3)
    t.apply(order, 5, "OrderFailed", 12.0, 3)
    assert t.stage("end_to_end", 12.0).count == 0
    assert t.stage("venue_execution", 12.0).max_s == 2.0
    assert t.view(12.0, THRESHOLDS).seen["failed"] == 1
    t.apply(oid(), 5, "OrderConfirmed", 12.0, 3)  # a terminal event of an unknown order: counted, not tracked
    assert t.view(12.0, THRESHOLDS).tracked == 0


def test_forgetting_a_partition_drops_its_orders_and_counts_a_gap() -> None:
    t = OrderTracker()
    a, b = oid(), oid()
    feed(t, a, [1.0], partition=0)
    feed(t, b, [1.0], partition=1)
    t.forget_partition(0)
    view = t.view(100.0, THRESHOLDS)
    assert [s.order_id for s in view.stuck] == [b]
    assert view.gaps == 1


def test_seeded_orders_count_unless_the_log_knows_better() -> None:
    t = OrderTracker()
    known = oid()
    feed(t, known, [50.0, 51.0])
    assert not t.seed(known, "pending", 1.0, 0, 1)
    assert t.seed(oid(), "submitted", 1.0, 2, 4)
    assert not t.seed(oid(), "confirmed", 1.0, 2, 5)
    view = t.view(100.0, THRESHOLDS)
    assert view.in_flight["submitted"] == 1 and view.stuck_by_status["submitted"] == 1


def test_stats_cover_only_the_recent_window_and_memory_is_bounded() -> None:
    t = OrderTracker(stats_window_s=10, max_orders=3)
    feed(t, oid(), [0.0, 1.0])
    assert t.stage("ingress_to_router", 5.0).count == 1
    assert t.stage("ingress_to_router", 20.0).count == 0
    for _ in range(5):
        feed(t, oid(), [30.0])
    assert t.view(31.0, THRESHOLDS).tracked == 3


def test_rates_count_events_by_their_own_time() -> None:
    t = OrderTracker()
    for i in range(40):
        feed(t, oid(), [100.0 + i * 0.25])  # 4 orders a second for 10 s
    for _ in range(500):
        feed(t, oid(), [1.0])  # a backlog read late (the view's warm-up): not throughput now
    assert t.view(110.0, THRESHOLDS).rate_per_s["pending"] == 3.9  # (100, 110]: the first one is out
    assert t.view(200.0, THRESHOLDS).rate_per_s["pending"] == 0.0


def test_a_resting_order_is_counted_never_stuck_and_tracked_again_from_its_trigger() -> None:
    t = OrderTracker()
    limit = oid()
    resting = ["OrderRequested", "OrderOpened"]
    feed(t, limit, [100.0, 100.2], resting)
    assert t.view(101.0, THRESHOLDS).dwell["pending"].max_s == pytest.approx(0.2), "until it was opened"
    view = t.view(10_000.0, THRESHOLDS)  # hours later: still resting, nothing stuck
    assert view.resting == 1 and view.tracked == 0 and view.stuck == ()
    fired = ["OrderTriggered", "OrderRouting", "OrderBuilding", "OrderSubmitted", "OrderConfirmed"]
    times = [10_000.0, 10_000.0, 10_000.1, 10_000.1, 10_002.6]
    for seq, (kind, at) in enumerate(zip(fired, times, strict=True), 3):
        t.apply(limit, seq, kind, at, 0)
    assert t.view(10_003.0, THRESHOLDS).resting == 0
    assert t.stage("venue_execution", 10_003.0).max_s == 2.5
    assert t.stage("end_to_end", 10_003.0).count == 0, "its request was hours before: not a delay"
    expired = oid()
    feed(t, expired, [200.0, 200.1, 300.0], ["OrderRequested", "OrderOpened", "OrderExpired"])
    view = t.view(10_003.0, THRESHOLDS)
    assert view.resting == 0 and view.tracked == 0 and view.seen["expired"] == 1
