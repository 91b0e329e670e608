"""The supervisor's restart policy: capped exponential backoff, reset by a healthy run, crash loops."""

from __future__ import annotations

import pytest

from services.stack.restarts import RestartPolicy, RestartTracker

POLICY = RestartPolicy(
    backoff_min_s=0.5, backoff_max_s=30.0, healthy_s=60.0, loop_restarts=5, loop_window_s=120.0
)


def test_backoff_doubles_per_exit_in_a_row_up_to_the_cap() -> None:
    tracker = RestartTracker(POLICY)
    delays = [tracker.exited(ran_for_s=1.0) for _ in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_a_healthy_run_resets_the_backoff() -> None:
    tracker = RestartTracker(POLICY)
    for _ in range(6):
        tracker.exited(ran_for_s=1.0)
    assert tracker.exited(ran_for_s=60.0) == 0.5, "a run as long as the healthy stretch starts over"
    assert tracker.exited(ran_for_s=59.9) == 1.0


def test_a_streak_of_thousands_of_exits_stays_at_the_cap() -> None:
    tracker = RestartTracker(POLICY)
    for _ in range(5000):
        delay = tracker.exited(ran_for_s=0.0)
    assert delay == 30.0


def test_five_restarts_within_two_minutes_is_a_crash_loop_which_ends_as_the_window_slides() -> None:
    tracker = RestartTracker(POLICY)
    for t in (0.0, 10.0, 20.0, 30.0):
        tracker.restarted(t)
        assert not tracker.crash_looping(t)
    tracker.restarted(40.0)
    assert tracker.crash_looping(40.0) and tracker.recent(40.0) == 5
    assert tracker.crash_looping(119.9)
    assert not tracker.crash_looping(120.0), "the restart at 0 s has left the window"
    assert tracker.recent(161.0) == 0
    assert tracker.restarts == 5, "the total keeps counting"


def test_the_window_holds_only_its_own_restarts() -> None:
    tracker = RestartTracker(POLICY)
    for i in range(10_000):
        tracker.restarted(i * 1.0)
    assert tracker.recent(10_000.0) == 119  # bounded by the window, whatever the total
    assert tracker.restarts == 10_000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backoff_min_s": 0},
        {"backoff_min_s": 5, "backoff_max_s": 1},
        {"loop_restarts": 0},
        {"loop_window_s": 0},
        {"healthy_s": 0},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]
