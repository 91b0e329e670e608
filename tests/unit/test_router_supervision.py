"""When the router stops trying to recover in-process, and how long it waits between attempts."""

from __future__ import annotations

from services.router.supervision import RecoveryBudget


def test_the_budget_allows_limit_failures_per_window_then_refuses() -> None:
    budget = RecoveryBudget(limit=5, window_s=60.0, backoff_s=(0.5, 8.0))
    assert [budget.spend(t) for t in (0, 10, 20, 30, 40)] == [True] * 5
    assert budget.spend(50) is False


def test_old_failures_leave_the_window() -> None:
    budget = RecoveryBudget(limit=2, window_s=60.0)
    assert budget.spend(0) and budget.spend(30)
    assert budget.spend(61)  # the one at 0 is out of the window
    assert not budget.spend(62)


def test_backoff_doubles_with_recent_failures_up_to_the_cap() -> None:
    budget = RecoveryBudget(limit=10, window_s=60.0, backoff_s=(0.5, 3.0))
    waits = []
    for t in range(5):
        budget.spend(t)
        waits.append(budget.backoff())
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
