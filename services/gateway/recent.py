"""The events the gateway read from the log tail, kept per partition in a bounded window.

Invariant (what makes history + live gap-free): for each partition p, every event at an offset in
`[low(p), tail position)` is in the window. The window starts empty at the tail's start position; evicting
the oldest event moves `low(p)` past it. So a subscriber that registers for live events and takes
`snapshot(order)` in the same step (no await between) has every event of the order at offsets >= `low(p)`:
the older ones come from PostgreSQL or a search of the log below `low(p)`.
"""

from __future__ import annotations

from collections import deque

from services.gateway.frames import Item

__all__ = ["RecentEvents"]


class RecentEvents:
    def __init__(self, capacity_per_partition: int) -> None:
        self._capacity = max(0, capacity_per_partition)
        self._rings: dict[int, deque[Item]] = {}
        self._low: dict[int, int] = {}
        self._by_order: dict[str, list[Item]] = {}

    def reset(self, partition: int, position: int) -> None:
        """Start (or restart) a partition's window empty at `position`."""
        for item in self._rings.pop(partition, ()):
            self._forget(item)
        self._rings[partition] = deque()
        self._low[partition] = position

    def append(self, item: Item) -> None:
        """An event just read from the tail of its partition (offsets only grow)."""
        if self._capacity == 0:
            self._low[item.partition] = item.offset + 1
            return
        ring = self._rings[item.partition]
        ring.append(item)
        self._by_order.setdefault(item.order_id, []).append(item)
        if len(ring) > self._capacity:
            oldest = ring.popleft()
            self._forget(oldest)
            self._low[item.partition] = oldest.offset + 1

    def snapshot(self, order_id: str) -> list[Item]:
        """The order's events in the window, in seq order."""
        return list(self._by_order.get(order_id, ()))

    def low(self, partition: int) -> int | None:
        """Every event of `partition` at this offset or later is here (or still to come from the tail)."""
        return self._low.get(partition)

    def lows(self) -> dict[int, int]:
        """`low` of every partition, as of now (a copy)."""
        return dict(self._low)

    def __len__(self) -> int:
        return sum(len(r) for r in self._rings.values())

    def _forget(self, item: Item) -> None:
        items = self._by_order.get(item.order_id)
        if not items:
            return
        # The evicted event is the order's oldest one in the window: offsets grow with seq in a partition.
        if items[0] is item:
            items.pop(0)
        else:
            items.remove(item)
        if not items:
            del self._by_order[item.order_id]
