"""From raw readings to per-partition lag (pure): offsets vs the last stable offset, time lag from the oldest
unread record, transaction markers, missing commits, and the window feeding the status rules."""

from __future__ import annotations

from aiokafka.structs import TopicPartition

from services.lag.assess import Offsets, Reading, assess
from services.lag.kafka import Unread
from services.lag.rules import Thresholds
from services.lag.window import Rate, SampleWindow, quantiles

T = "x.orders.requests"
P0, P1, P2 = TopicPartition(T, 0), TopicPartition(T, 1), TopicPartition(T, 2)
NOW = 1_000_000.0


def offsets(
    stable: dict, unread: dict | None = None, starts: dict | None = None, high: dict | None = None
) -> Offsets:
    return Offsets(stable, high or stable, starts or {}, unread or {})


def test_offset_and_time_lag_per_partition() -> None:
    reading = Reading("g", "kafka", 1, "Stable", {P0: 7, P1: 10, P2: None})
    result = assess(
        reading,
        offsets(
            {P0: 10, P1: 10, P2: 4},
            unread={(P0, 7): Unread(7, int((NOW - 42.5) * 1000)), (P2, 0): Unread(0, int((NOW - 5) * 1000))},
            starts={P2: 0},
            high={P0: 12, P1: 10, P2: 4},
        ),
        NOW,
        SampleWindow(30),
        Thresholds(),
    )
    rows = {p.partition: p for p in result.partitions}
    assert (rows[0].lag, round(rows[0].time_lag_s, 3), rows[0].log_end) == (3, 42.5, 12)
    assert (rows[1].lag, rows[1].time_lag_s) == (0, 0.0)
    assert (rows[2].committed, rows[2].lag, rows[2].time_lag_s) == (None, 4, 5.0)
    assert result.lag == 7 and result.time_lag_s == 42.5
    assert result.status == "OK"  # too few samples for a trend; nothing beyond a threshold


def test_only_markers_left_is_caught_up() -> None:
    reading = Reading("projection:orders", "projection", 1, "alive", {P0: 9})
    result = assess(reading, offsets({P0: 10}, unread={(P0, 9): None}), NOW, SampleWindow(30), Thresholds())
    assert (result.partitions[0].lag, result.partitions[0].time_lag_s, result.status) == (0, 0.0, "OK")


def test_an_unanswered_fetch_carries_the_previous_age_forward() -> None:
    window: SampleWindow[tuple[str, str, int]] = SampleWindow(30)
    reading = Reading("g", "kafka", 1, "Stable", {P0: 0})
    assess(
        reading,
        offsets({P0: 5}, unread={(P0, 0): Unread(0, int((NOW - 10) * 1000))}),
        NOW,
        window,
        Thresholds(),
    )
    later = assess(reading, offsets({P0: 6}), NOW + 2, window, Thresholds())
    assert round(later.partitions[0].time_lag_s, 3) == 12.0


def test_a_group_that_stops_committing_becomes_stopped_with_growing_lag() -> None:
    window: SampleWindow[tuple[str, str, int]] = SampleWindow(30)
    t = Thresholds(min_samples=3)
    statuses, lags = [], []
    for i, end in enumerate((10, 20, 30, 40)):
        reading = Reading("g", "kafka", 0, "Empty", {P0: 10})
        result = assess(reading, offsets({P0: end}, unread={(P0, 10): Unread(10, 0)}), NOW + i, window, t)
        statuses.append(result.status)
        lags.append(result.lag)
    assert statuses == ["OK", "STOPPED", "STOPPED", "STOPPED"]
    assert lags == [0, 10, 20, 30]


def test_partitions_that_disappeared_are_skipped() -> None:
    reading = Reading("g", "kafka", 1, "Stable", {P0: 1, P1: 1})
    result = assess(reading, offsets({P0: 1}), NOW, SampleWindow(30), Thresholds())
    assert [p.partition for p in result.partitions] == [0]


def test_window_keeps_the_recent_samples_and_forgets_silent_series() -> None:
    from services.lag.rules import Observation

    w: SampleWindow[str] = SampleWindow(10)
    for at in range(0, 30, 2):
        kept = w.add("a", Observation(float(at), 0, 1, 1))
    assert [o.at for o in kept] == [18.0, 20.0, 22.0, 24.0, 26.0, 28.0]
    w.add("b", Observation(0.0, 0, 0, 0))
    w.prune(28.0)
    assert len(w) == 1 and w.get("b") == []


def test_rate_and_quantiles() -> None:
    r = Rate(window_s=10)
    for at in range(0, 21):
        r.add(float(at), at * 5.0)
    assert r.per_second() == 5.0
    r.add(21.0, 0.0)  # a count that went back (topic recreated): no rate rather than a negative one
    assert r.per_second() == 0.0
    assert quantiles([]) == [0.0, 0.0]
    assert quantiles([float(i) for i in range(1, 101)]) == [50.0, 95.0]


def test_projection_readings_take_liveness_for_members_and_fill_missing_partitions() -> None:
    from services.lag.assess import complete, projection_readings
    from services.lag.postgres import StoredPosition

    rows = [
        StoredPosition("orders", T, 0, 5, updated_age_s=1.0, checked_age_s=0.5),
        StoredPosition("orders", T, 1, 7, updated_age_s=30.0, checked_age_s=30.0),
        StoredPosition("old", T, 0, 1, updated_age_s=99.0, checked_age_s=None),
    ]
    parts = {T: [0, 1, 2]}
    old, orders = projection_readings(rows, parts, alive_s=10)
    assert (orders.group, orders.members, orders.state) == ("projection:orders", 1, "alive")
    assert orders.committed == {P0: 5, P1: 7, P2: None}
    assert orders.updated_age_s == {P0: 1.0, P1: 30.0}
    assert (old.members, old.state) == (None, "unknown")
    silent = projection_readings(rows[1:2], parts, alive_s=10)[0]
    assert (silent.members, silent.state) == (0, "silent for 30 s")
    kafka = complete(Reading("g", "kafka", 1, "Stable", {P1: 3}), parts)
    assert kafka.committed == {P0: None, P1: 3, P2: None}
