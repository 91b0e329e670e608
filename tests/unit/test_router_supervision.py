"""When the router stops trying to recover in-process, how long it waits between attempts, and how a stop
is reported."""

from __future__ import annotations

import logging

import pytest

from services.router.supervision import EX_SOFTWARE, RecoveryBudget, Supervisor


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


async def test_the_first_crash_is_the_cause_logged_once_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor()
    supervisor.start()
    try:
        raise ZeroDivisionError("float division by zero")
    except ZeroDivisionError as exc:
        first = exc
    with caplog.at_level(logging.ERROR, "oee.router"):
        supervisor.crash(first)
        supervisor.crash(RuntimeError("the stop's fallout"))
    assert supervisor.cause is first and supervisor.crashed.result() is first
    with_traceback = [r for r in caplog.records if r.exc_info]
    assert len(with_traceback) == 1 and with_traceback[0].exc_info[1] is first  # type: ignore[index]
    assert caplog.text.count("Traceback") == 1
    assert EX_SOFTWARE == 70
