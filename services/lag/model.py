"""What a lag sample reports: plain frozen data, turned into the JSON of `GET /api/lag` by `to_json`.

The dashboard, the terminal view and the Prometheus exporter all render one `LagReport`, so they agree.
Times are epoch seconds inside, RFC 3339 in the JSON; durations are seconds (3 decimals).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Pipeline stages, in pipeline order: id -> (label, how it is measured). The ids are metric label values.
STAGES: dict[str, tuple[str, str]] = {
    "ingress_to_router": ("ingress → router", "OrderRouting.occurred_at - OrderRequested.occurred_at"),
    "router_quote": ("router: quote and submit", "OrderSubmitted.occurred_at - OrderRouting.occurred_at"),
    "venue_execution": ("venue execution", "terminal occurred_at - OrderSubmitted.occurred_at"),
    "end_to_end": ("end to end", "terminal occurred_at - OrderRequested.occurred_at"),
    "log_to_projector": ("log → projector", "age of the oldest event the projector has not applied"),
    "log_to_gateway": ("log → gateway", "live frame sent - event occurred_at (gateway histogram)"),
}


@dataclass(frozen=True, slots=True)
class Stat:
    """Summary of recent durations (seconds)."""

    count: int = 0
    p50_s: float = 0.0
    p95_s: float = 0.0
    max_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50_s": _s(self.p50_s),
            "p95_s": _s(self.p95_s),
            "max_s": _s(self.max_s),
        }


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group has no offset here (it would start at the log start)
    end: int  # last stable offset: what a read_committed consumer can reach
    lag: int
    time_lag_s: float  # age of the oldest unread record; 0 when caught up
    status: str
    reason: str
    log_end: int | None = None  # high watermark (> end while a transaction is open)
    updated_age_s: float | None = None  # projections: seconds since the position last moved

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "end": self.end,
            "lag": self.lag,
            "time_lag_s": _s(self.time_lag_s),
            "status": self.status,
            "reason": self.reason,
            "log_end": self.log_end,
        }
        if self.updated_age_s is not None:
            out["updated_age_s"] = _s(self.updated_age_s)
        return out


@dataclass(frozen=True, slots=True)
class GroupLag:
    """A Kafka consumer group (`kind` kafka) or a projection's own stored positions (`kind` projection)."""

    group: str
    kind: str
    status: str
    reason: str
    members: int | None
    state: str
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def time_lag_s(self) -> float:
        return max((p.time_lag_s for p in self.partitions), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "members": self.members,
            "state": self.state,
            "lag": self.lag,
            "time_lag_s": _s(self.time_lag_s),
            "partitions": [p.to_json() for p in self.partitions],
        }


@dataclass(frozen=True, slots=True)
class TopicLag:
    topic: str
    partitions: int
    end: int  # sum of the partitions' last stable offsets
    unstable: int  # sum of (high watermark - last stable offset): records in open transactions
    rate_per_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partitions": self.partitions,
            "end": self.end,
            "unstable": self.unstable,
            "rate_per_s": round(self.rate_per_s, 2),
        }


@dataclass(frozen=True, slots=True)
class StageLag:
    stage: str
    stat: Stat
    source: str  # log | kafka+postgres | gateway
    current_s: float | None = None  # stages measured as a current age (the projector's)
    pending: str | None = None  # why there is no measurement yet

    def to_json(self) -> dict[str, Any]:
        label, measure = STAGES[self.stage]
        out: dict[str, Any] = {"stage": self.stage, "label": label, "measure": measure, "source": self.source}
        out.update(self.stat.to_json())
        if self.current_s is not None:
            out["current_s"] = _s(self.current_s)
        if self.pending:
            out["pending"] = self.pending
        return out


@dataclass(frozen=True, slots=True)
class StuckOrder:
    order_id: str
    status: str
    since: float
    age_s: float
    threshold_s: float
    partition: int

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "status": self.status,
            "since": iso(self.since),
            "age_s": _s(self.age_s),
            "threshold_s": self.threshold_s,
            "partition": self.partition,
        }


@dataclass(frozen=True, slots=True)
class OrdersView:
    """Lag in order terms, from the event log as the lag monitor follows it."""

    in_flight: dict[str, int]  # non-terminal status -> orders in it now
    seen: dict[str, int]  # status -> events moving an order there, since the monitor started
    rate_per_s: dict[str, float]  # status -> per second, recently
    dwell: dict[str, Stat]  # status -> how long orders stayed in it (recent transitions)
    oldest_s: dict[str, float]  # non-terminal status -> age of the oldest order in it now
    stuck: tuple[StuckOrder, ...]  # the oldest stuck orders (a capped list)
    stuck_by_status: dict[str, int]
    thresholds_s: dict[str, float]
    tracked: int  # orders in flight the monitor holds
    gaps: int  # times the monitor skipped part of the log (its view of older orders was dropped)
    resting: int = 0  # limit and sniper orders waiting for the market (open): not in flight, never stuck

    def to_json(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "in_flight_total": sum(self.in_flight.values()),
            "seen": self.seen,
            "rate_per_s": {k: round(v, 2) for k, v in self.rate_per_s.items()},
            "dwell": {k: v.to_json() for k, v in self.dwell.items()},
            "oldest_s": {k: _s(v) for k, v in self.oldest_s.items()},
            "stuck": {
                "count": sum(self.stuck_by_status.values()),
                "by_status": self.stuck_by_status,
                "thresholds_s": self.thresholds_s,
                "orders": [o.to_json() for o in self.stuck],
            },
            "tracked": self.tracked,
            "gaps": self.gaps,
            "resting": self.resting,
        }


@dataclass(frozen=True, slots=True)
class RestingOrders:
    """The projection's resting orders (`events.lifecycle.RESTING`: limit and sniper orders waiting for the
    market), counted in Postgres at the sample: every one, however long before the monitor started it rests."""

    by_type: dict[str, int]  # order type -> resting orders of that type
    oldest_age_s: float  # how long the longest-resting one has waited (its last event's age); 0 when none

    @property
    def count(self) -> int:
        return sum(self.by_type.values())

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "by_type": self.by_type, "oldest_s": _s(self.oldest_age_s)}


@dataclass(frozen=True, slots=True)
class LagReport:
    seq: int
    sampled_at: float
    took_s: float
    interval_s: float
    window_s: float
    scope: str
    groups: tuple[GroupLag, ...]
    topics: tuple[TopicLag, ...]
    stages: tuple[StageLag, ...]
    orders: OrdersView | None
    errors: tuple[str, ...] = field(default=())
    resting: RestingOrders | None = None  # None: no projection to count them in (no pool, no table, an error)

    def group(self, name: str) -> GroupLag | None:
        return next((g for g in self.groups if g.group == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "sampled_at": iso(self.sampled_at),
            "took_ms": round(self.took_s * 1000, 1),
            "interval_s": self.interval_s,
            "window_s": self.window_s,
            "scope": self.scope,
            "groups": [g.to_json() for g in self.groups],
            "topics": [t.to_json() for t in self.topics],
            "stages": [s.to_json() for s in self.stages],
            "orders": self.orders.to_json() if self.orders else None,
            "resting": self.resting.to_json() if self.resting else None,
            "errors": list(self.errors),
        }


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _s(seconds: float) -> float:
    return round(seconds, 3)
