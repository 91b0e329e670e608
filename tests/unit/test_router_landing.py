"""The landing deadline's rules: what a status look-up means before, around and after a swap's deadline."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from services.router import flow, landing
from services.venue.interface import SwapStatus
from tests.samples import order_request

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE = T0.timestamp() + 60.0


def submitted(valid_until: float | None = DEADLINE) -> flow.Tracked:
    tracked = flow.accept(order_request(), T0).tracked
    return msgspec.structs.replace(tracked, status="submitted", venue="raydium", valid_until=valid_until)


def status(state: str, order_id: str = "x") -> SwapStatus:
    fill = ("tx", 150.0, 1.0) if state == "confirmed" else (None, None, None)
    return SwapStatus("raydium", order_id, state, *fill)  # type: ignore[arg-type]


def test_a_settled_swap_is_settled_whenever_it_is_asked() -> None:
    for state in ("confirmed", "failed"):
        for asked in (DEADLINE - 30, DEADLINE + 3600):
            assert landing.judge(submitted(), status(state), asked, 5.0, 10.0).action == "settle"


def test_a_pending_swap_waits_for_its_settlement_even_after_the_deadline() -> None:
    verdict = landing.judge(submitted(), status("pending"), DEADLINE + 100, 5.0, 10.0)
    assert verdict.action == "wait" and verdict.look_at == DEADLINE + 110


def test_unknown_before_the_deadline_is_submitted_again() -> None:
    assert landing.judge(submitted(), status("unknown"), DEADLINE - 0.001, 5.0, 10.0).action == "resubmit"


def test_unknown_within_the_grace_waits_until_the_grace_is_over() -> None:
    for asked in (DEADLINE, DEADLINE + 4.9):
        verdict = landing.judge(submitted(), status("unknown"), asked, 5.0, 10.0)
        assert verdict.action == "wait" and verdict.look_at == DEADLINE + 5.0


def test_unknown_when_asked_after_deadline_and_grace_is_expired_with_the_times_in_the_reason() -> None:
    verdict = landing.judge(submitted(), status("unknown"), DEADLINE + 5.0, 5.0, 10.0)
    assert verdict.action == "expire"
    assert "2026-01-01T00:01:00.000Z" in verdict.why and "never executed" in verdict.why


def test_a_swap_without_a_deadline_is_always_submitted_again() -> None:
    assert landing.judge(submitted(None), status("unknown"), DEADLINE + 1e6, 5.0, 10.0).action == "resubmit"


def test_an_expired_order_fails_at_execution_with_reason_expired() -> None:
    step = flow.concluded(submitted(), flow.Expiry("x", "it did not land"), T0)
    (failed,) = step.events
    assert failed.type == "OrderFailed" and failed.data.stage == "execution"
    assert failed.data.reason == "expired: it did not land" and step.tracked.phase == "done"
