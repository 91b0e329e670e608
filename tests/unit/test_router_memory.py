"""A partition's memory: unfinished orders kept, finished ones a bounded cache, retries and look-ups due."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from services.router import flow
from services.router.memory import OrderMemory
from tests.samples import order_request

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def tracked(status: str = "routing", **changes: object) -> flow.Tracked:
    base = flow.accept(order_request(), T0).tracked
    return msgspec.structs.replace(base, status=status, **changes)


def test_finished_orders_are_forgotten_oldest_first_beyond_the_capacity() -> None:
    memory = OrderMemory(done_capacity=2)
    orders = [tracked("confirmed") for _ in range(3)]
    for t in orders:
        memory.remember(t)
    assert [memory.known(t.order_id) for t in orders] == [False, True, True]


def test_unfinished_orders_are_never_forgotten() -> None:
    memory = OrderMemory(done_capacity=0)
    waiting = [tracked("submitted") for _ in range(5)]
    for t in waiting:
        memory.remember(t)
    memory.remember(tracked("failed"))
    assert all(memory.known(t.order_id) for t in waiting) and len(memory) == 5


def test_a_retry_is_due_once_at_its_latest_time() -> None:
    memory = OrderMemory(10)
    first = tracked(retry_at=100.0)
    memory.remember(first)
    memory.remember(msgspec.structs.replace(first, retry_at=200.0))  # re-planned: the old entry is stale
    assert memory.due_retries(150.0) == []
    assert [t.retry_at for t in memory.due_retries(200.0)] == [200.0]
    assert memory.due_retries(1e9) == []


def test_lookups_skip_swaps_being_submitted_and_finished_orders() -> None:
    memory = OrderMemory(10)
    a, b = tracked("submitted"), tracked("submitted")
    memory.remember(a)
    memory.remember(b)
    memory.look_later(a.order_id, 10.0)
    memory.look_later(b.order_id, 10.0)
    memory.submitting.add(b.order_id)
    assert [t.order_id for t in memory.due_lookups(10.0)] == [a.order_id]
    assert memory.due_lookups(9.9) == []
    memory.remember(msgspec.structs.replace(a, status="confirmed"))
    assert memory.due_lookups(10.0) == [] and a.order_id not in memory.look_at
