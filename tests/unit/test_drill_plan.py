"""The drill's plan, pace and options: every kind once per round, orders spread over the faults, bounds."""

from __future__ import annotations

import pytest

from services.drill.options import DrillOptions
from services.drill.pacing import Pacing
from services.drill.plan import KINDS, Durations, expected_span_s, plan
from services.envvars import ConfigError


def test_each_round_holds_every_kind_once_in_a_seeded_order() -> None:
    two = plan(2, seed=7)
    assert sorted(two[: len(KINDS)]) == sorted(KINDS) and sorted(two[len(KINDS) :]) == sorted(KINDS)
    assert plan(2, seed=7) == two and plan(2, seed=8) != two


def test_a_fault_that_lasts_longer_than_the_interval_stretches_the_plan() -> None:
    durations = Durations(broker_pause_s=30, postgres_down_s=10, drop_replies_s=10)
    assert expected_span_s(["kill-router", "pause-broker"], 10, durations) == 10 + 35


def test_orders_are_spread_over_the_remaining_faults_then_released_quickly() -> None:
    pace = Pacing(floor=0.5, ceiling=25, tail_s=10)
    assert pace.rate(1000, remaining_fault_s=90, faults_left=9) == pytest.approx(10.0)
    assert pace.rate(10, remaining_fault_s=990, faults_left=9) == 0.5, "never below the floor"
    assert pace.rate(10_000, remaining_fault_s=0, faults_left=0) == 25, "never above the ceiling"
    assert pace.rate(5, remaining_fault_s=0, faults_left=0) == 25, "after the last fault: the rest at once"
    assert pace.rate(0, remaining_fault_s=10, faults_left=1) == 0.0


def test_each_fault_to_come_keeps_orders_behind_it_whatever_the_rate() -> None:
    """A slow recovery must not let the floor spend the orders the later faults need to show theirs."""
    each = Pacing.reserve_for(orders=300, faults=9, partitions=6)
    assert each == 12, "two per partition"
    assert Pacing.reserve_for(orders=40, faults=9, partitions=6) == 2, "at most half the orders in reserves"
    assert Pacing.reserve_for(orders=5, faults=9, partitions=6) == 1
    pace = Pacing(reserve_each=each)
    assert pace.held(remaining_orders=24, faults_not_injected=2), "two faults to come: 24 orders kept"
    assert not pace.held(remaining_orders=25, faults_not_injected=2)
    assert not pace.held(remaining_orders=12, faults_not_injected=0), "all injected: nothing held"


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("orders", 0, "--orders"),
        ("orders", 1_000_001, "--orders"),
        ("brokers", 1, "--brokers"),
        ("subscribers", 1001, "--subscribers"),
        ("interval_s", 0.5, "--interval-s"),
    ],
)
def test_options_are_bounded_and_a_bad_one_names_its_flag(field: str, value: float, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        DrillOptions(**{field: value}).check()  # type: ignore[arg-type]


def test_the_defaults_are_the_full_drill() -> None:
    d = DrillOptions().check()
    assert (d.orders, d.subscribers, d.brokers, d.broker_pause_s, d.interval_s) == (2000, 50, 3, 30.0, 10.0)
