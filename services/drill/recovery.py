"""When the system recovered from a fault, from what the drill saw happen. Pure.

An order is **complete** once every view of it shows its end: its terminal event in the log (read by the
checker's consumer), its terminal row in the projection (the drill polls PostgreSQL), and its terminal frame
at the WebSocket subscriber that follows it (when one does). Recovery from a fault is measured from the moment
it was injected:

- **first**: until the first order acknowledged (201) after the injection is complete;
- **all**: until every intake partition has a complete order acknowledged after the injection: every router
  partition, the projection and the subscribers all doing work again. A partition is only seen when an order
  lands on it, so at r orders/s over P partitions this adds about P/r seconds at worst.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recovered:
    first_s: float | None  # None: no order acknowledged after the fault completed (yet)
    all_s: float | None  # None: some partition has no complete order after the fault (yet)


@dataclass
class Completions:
    """What the drill saw of each order, as it saw it (wall-clock times)."""

    partitions: int
    acked: dict[str, tuple[int, float]] = field(default_factory=dict)  # order -> (intake partition, 201 at)
    logged: dict[str, float] = field(default_factory=dict)  # order -> terminal event read
    projected: dict[str, float] = field(default_factory=dict)  # order -> terminal row seen
    streamed: dict[str, float] = field(default_factory=dict)  # order -> terminal frame received
    followed: set[str] = field(default_factory=set)  # orders a subscriber follows
    # intake partition -> [(201 at, order)], in the order the acknowledgements were recorded
    _by_partition: dict[int, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))

    def ack(self, order_id: str, partition: int, at: float) -> None:
        if order_id not in self.acked:
            self.acked[order_id] = (partition, at)
            self._by_partition[partition].append((at, order_id))

    def complete_at(self, order_id: str) -> float | None:
        """When the last view of the order showed its end; None while one has not."""
        views = [self.logged.get(order_id), self.projected.get(order_id)]
        if order_id in self.followed:
            views.append(self.streamed.get(order_id))
        if any(v is None for v in views):
            return None
        return max(v for v in views if v is not None)

    def completed_after(self, order_id: str, t: float) -> float | None:
        """When the order became complete, if every view showed its end after `t` (a 201 after a fault can
        answer the retry of an order whose terminal event was written before it: that shows no recovery)."""
        done = self.complete_at(order_id)
        if done is None or self.logged.get(order_id, 0.0) < t:
            return None
        return done

    def first_views(self, injected_at: float) -> dict[str, float | None]:
        """Per view, how long after the injection it first showed the end of an order acknowledged after
        it (which part of the system came back last)."""
        after = [
            o
            for o, (_, at) in self.acked.items()
            if at >= injected_at and self.logged.get(o, at) >= injected_at
        ]
        out: dict[str, float | None] = {}
        for view, seen in (("log", self.logged), ("projection", self.projected), ("stream", self.streamed)):
            times = [seen[o] for o in after if o in seen and seen[o] >= injected_at]
            out[view] = min(times) - injected_at if times else None
        return out

    def recovered(self, injected_at: float) -> Recovered:
        first: float | None = None
        per_partition: list[float | None] = []
        for p in range(self.partitions):
            earliest = None
            for at, order_id in self._by_partition.get(p, ()):
                if at < injected_at:
                    continue
                done = self.completed_after(order_id, injected_at)
                if done is not None and (earliest is None or done < earliest):
                    earliest = done
            per_partition.append(earliest)
            if earliest is not None and (first is None or earliest < first):
                first = earliest
        all_done = (
            None if any(e is None for e in per_partition) else max(e for e in per_partition if e is not None)
        )
        return Recovered(
            None if first is None else max(0.0, first - injected_at),
            None if all_done is None else max(0.0, all_done - injected_at),
        )
