"""What one partition's router keeps in memory: every unfinished order, a bounded cache of finished ones,
the quote retries due, when each submitted swap is looked up next, and when each resting order expires.
Pure: no I/O, times are passed in.

Unfinished orders are never forgotten (the router owes each one a terminal event). Finished ones are only a
cache in front of the durable record of admitted order ids (`services.router.admission`): the oldest are
dropped beyond `done_capacity`, and a request for a forgotten one is caught there instead.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict

from services.router.flow import Tracked


class OrderMemory:
    def __init__(self, done_capacity: int) -> None:
        if done_capacity < 0:
            raise ValueError("done_capacity must be >= 0")
        self.active: dict[str, Tracked] = {}  # orders without a terminal event
        self.done: OrderedDict[str, None] = OrderedDict()  # recently finished, oldest first
        self.done_capacity = done_capacity
        self.retries: list[tuple[float, str]] = []  # (retry_at, order_id) heap; stale entries skipped
        self.expiries: list[tuple[float, str]] = []  # (expires_at, order_id) heap of resting orders; ditto
        self.look_at: dict[str, float] = {}  # submitted order id -> epoch s of its next status lookup
        self.submitting: set[str] = set()  # orders with a submit loop running (not looked up meanwhile)

    def __len__(self) -> int:
        return len(self.active)

    def known(self, order_id: str) -> bool:
        return order_id in self.active or order_id in self.done

    def remember(self, tracked: Tracked) -> None:
        order_id = tracked.order_id
        if tracked.phase == "done":
            self.finished(order_id)
            return
        before = self.active.get(order_id)
        self.active[order_id] = tracked
        if tracked.phase == "routing" and tracked.retry_at is not None:
            heapq.heappush(self.retries, (tracked.retry_at, order_id))
        elif tracked.phase == "resting" and tracked.expires_at is not None and before is None:
            heapq.heappush(self.expiries, (tracked.expires_at, order_id))

    def finished(self, order_id: str) -> None:
        """The order's terminal event is committed (or was, as the state topic says)."""
        self.active.pop(order_id, None)
        self.look_at.pop(order_id, None)
        self.submitting.discard(order_id)
        self.done[order_id] = None
        self.done.move_to_end(order_id)
        while len(self.done) > self.done_capacity:
            self.done.popitem(last=False)

    def forget(self, order_id: str) -> None:
        """A tombstone in the state topic: the order is neither active nor remembered as done."""
        self.active.pop(order_id, None)
        self.done.pop(order_id, None)
        self.look_at.pop(order_id, None)

    # -- quote retries --------------------------------------------------------------------------------------
    def due_retries(self, now: float) -> list[Tracked]:
        due = []
        while self.retries and self.retries[0][0] <= now:
            retry_at, order_id = heapq.heappop(self.retries)
            tracked = self.active.get(order_id)
            if tracked is not None and tracked.phase == "routing" and tracked.retry_at == retry_at:
                due.append(tracked)
        return due

    def next_retry_at(self) -> float | None:
        return self.retries[0][0] if self.retries else None

    # -- expiries of resting orders -------------------------------------------------------------------------
    def due_expiries(self, now: float) -> list[Tracked]:
        """Resting orders whose `expires_at` has come (taken off the heap: the caller expires them)."""
        due = []
        while self.expiries and self.expiries[0][0] <= now:
            _, order_id = heapq.heappop(self.expiries)
            tracked = self.active.get(order_id)
            if tracked is not None and tracked.phase == "resting":
                due.append(tracked)
        return due

    def next_expiry_at(self) -> float | None:
        return self.expiries[0][0] if self.expiries else None

    # -- status lookups of submitted swaps ------------------------------------------------------------------
    def look_later(self, order_id: str, at: float) -> None:
        if order_id in self.active:
            self.look_at[order_id] = at

    def due_lookups(self, now: float) -> list[Tracked]:
        """Submitted orders whose lookup time has come and that no submit loop is handling."""
        due = []
        for order_id, at in self.look_at.items():
            if at <= now and order_id not in self.submitting:
                tracked = self.active.get(order_id)
                if tracked is not None and tracked.phase == "submitted":
                    due.append(tracked)
        return due
