"""Lag in order terms: which orders are in which status, for how long, and which are stuck. Pure.

`OrderTracker` is fed the order event log (event type, order id, seq, occurred_at, partition) and keeps the
orders not yet terminal. From consecutive events of one order it measures how long the order stayed in each
status (dwell) and the pipeline stages between event times (`model.STAGES`); an order whose current status is
older than that status's threshold is stuck. Every duration is a difference of `occurred_at` values written
by the ingress and the router, so it does not depend on when the monitor happened to read the events.

The monitor may start mid-stream or skip part of the log (`forget_partition`): an order first seen mid-way
is tracked from that event on, and no stage that needs an earlier event is measured for it.

Resting orders (`open`: a limit or sniper order waiting for the market) are not in flight and never stuck,
however long they wait: they are only counted (`resting`). A resting order that triggers is tracked again
from its `routing`, like an order first seen there: its stages start at the trigger, not at its request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from events.lifecycle import RESTING, TERMINAL
from events.types import STATUS
from services.lag.model import OrdersView, Stat, StuckOrder
from services.lag.window import EventRate, Recent

IN_FLIGHT_STATUSES: tuple[str, ...] = ("pending", "routing", "building", "submitted")
WAITING_STATUSES: tuple[str, ...] = ("open", "triggered")  # resting, and the instant it fires: not in flight
TRACKER_STAGES: tuple[str, ...] = ("ingress_to_router", "router_quote", "venue_execution", "end_to_end")


@dataclass(slots=True)
class _Order:
    status: str
    seq: int
    since: float  # occurred_at of the event that set `status`
    partition: int
    requested_at: float | None = None
    routing_at: float | None = None
    submitted_at: float | None = None


class OrderTracker:
    def __init__(
        self, stats_window_s: float = 60.0, max_orders: int = 500_000, max_samples: int = 5000
    ) -> None:
        self.max_orders = max_orders
        self._orders: dict[str, _Order] = {}
        self._resting: dict[str, None] = {}  # open orders, counted only (bounded like `_orders`)
        self._seen: Counter[str] = Counter()
        self._rates = {s: EventRate() for s in ("pending", "confirmed", "failed")}
        self._dwell = {s: Recent(stats_window_s, max_samples) for s in IN_FLIGHT_STATUSES}
        self._stages = {s: Recent(stats_window_s, max_samples) for s in TRACKER_STAGES}
        self.gaps = 0
        self.events = 0

    def apply(self, order_id: str, seq: int, event_type: str, occurred_at: float, partition: int) -> None:
        """Take one event of the log into account (duplicates and replays of older seqs change nothing)."""
        status = STATUS.get(event_type)
        if status is None:  # an event that moves no order (a refused cancel)
            return
        self.events += 1
        order = self._orders.get(order_id)
        if order is not None and seq <= order.seq:
            return
        self._seen[status] += 1
        if status in self._rates:
            self._rates[status].add(occurred_at)
        if status in WAITING_STATUSES:
            if order is not None:  # its pending time ends: the router took it
                self._dwell[order.status].add(occurred_at, occurred_at - order.since)
                del self._orders[order_id]
            if status in RESTING:
                self._resting[order_id] = None
                while len(self._resting) > self.max_orders:
                    del self._resting[next(iter(self._resting))]
            else:
                self._resting.pop(order_id, None)
            return
        self._resting.pop(order_id, None)
        if order is None:
            if status in TERMINAL:
                return
            order = _Order(status, seq, occurred_at, partition)
            if event_type == "OrderRequested":
                order.requested_at = occurred_at
            elif event_type == "OrderRouting":
                order.routing_at = occurred_at
            elif event_type == "OrderSubmitted":
                order.submitted_at = occurred_at
            self._orders[order_id] = order
            self._bound()
            return
        self._dwell[order.status].add(occurred_at, occurred_at - order.since)
        self._measure(order, event_type, occurred_at)
        if status in TERMINAL:
            del self._orders[order_id]
            return
        order.status, order.seq, order.since = status, seq, occurred_at

    def _measure(self, order: _Order, event_type: str, at: float) -> None:
        if event_type == "OrderRouting":
            order.routing_at = at
            if order.requested_at is not None:
                self._stages["ingress_to_router"].add(at, at - order.requested_at)
        elif event_type == "OrderSubmitted":
            order.submitted_at = at
            if order.routing_at is not None:
                self._stages["router_quote"].add(at, at - order.routing_at)
        elif STATUS[event_type] in TERMINAL:
            if order.submitted_at is not None:
                self._stages["venue_execution"].add(at, at - order.submitted_at)
            if order.requested_at is not None:
                self._stages["end_to_end"].add(at, at - order.requested_at)

    def seed(self, order_id: str, status: str, since: float, partition: int, seq: int) -> bool:
        """Know of an order from elsewhere (the projection's row), unless the log already told more."""
        if order_id in self._orders or status not in IN_FLIGHT_STATUSES:
            return False
        self._orders[order_id] = _Order(status, seq, since, partition)
        self._bound()
        return True

    def forget_partition(self, partition: int) -> None:
        """The monitor skipped records of `partition`: its orders may have moved on unseen, so drop them
        rather than report them stuck on stale news."""
        self.gaps += 1
        for order_id in [i for i, o in self._orders.items() if o.partition == partition]:
            del self._orders[order_id]

    def _bound(self) -> None:
        # The oldest-inserted orders go first: a tracker that misses terminal events must not grow forever.
        while len(self._orders) > self.max_orders:
            del self._orders[next(iter(self._orders))]

    def stage(self, name: str, now: float) -> Stat:
        return self._stages[name].stat(now)

    def view(self, now: float, thresholds: Mapping[str, float], limit: int = 50) -> OrdersView:
        """The state of the orders at `now`: counts, dwell, stage durations and the stuck ones."""
        in_flight: Counter[str] = Counter()  # resting orders are not in `_orders`: never stuck
        oldest: dict[str, float] = {}
        stuck: list[StuckOrder] = []
        for order_id, o in self._orders.items():
            in_flight[o.status] += 1
            age = max(0.0, now - o.since)
            oldest[o.status] = max(oldest.get(o.status, 0.0), age)
            threshold = thresholds.get(o.status)
            if threshold is not None and age > threshold:
                stuck.append(StuckOrder(order_id, o.status, o.since, age, threshold, o.partition))
        by_status = Counter(s.status for s in stuck)
        stuck.sort(key=lambda s: s.age_s, reverse=True)
        return OrdersView(
            in_flight={s: in_flight.get(s, 0) for s in IN_FLIGHT_STATUSES},
            seen={
                s: self._seen.get(s, 0) for s in (*IN_FLIGHT_STATUSES, *WAITING_STATUSES, *sorted(TERMINAL))
            },
            rate_per_s={s: r.per_second(now) for s, r in self._rates.items()},
            dwell={s: d.stat(now) for s, d in self._dwell.items()},
            oldest_s={s: oldest.get(s, 0.0) for s in IN_FLIGHT_STATUSES},
            stuck=tuple(stuck[:limit]),
            stuck_by_status={s: by_status.get(s, 0) for s in IN_FLIGHT_STATUSES},
            thresholds_s=dict(thresholds),
            tracked=len(self._orders),
            gaps=self.gaps,
            resting=len(self._resting),
        )
