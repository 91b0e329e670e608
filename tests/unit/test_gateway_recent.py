"""The tail's window (every event at offsets >= low is kept), the hub, and the order -> partition rule."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner

from services.gateway.frames import Item
from services.gateway.hub import Hub
from services.gateway.partitioning import partition_for
from services.gateway.recent import RecentEvents


def item(order: str, seq: int, offset: int, partition: int = 0) -> Item:
    return Item(order, seq, "routing", False, partition, offset, f"{order}#{seq}")


def test_the_window_keeps_each_order_in_seq_order() -> None:
    recent = RecentEvents(10)
    recent.reset(0, 100)
    for offset, (order, seq) in enumerate([("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)], start=100):
        recent.append(item(order, seq, offset))
    assert [i.seq for i in recent.snapshot("a")] == [1, 2, 3]
    assert [i.seq for i in recent.snapshot("b")] == [1, 2]
    assert recent.snapshot("c") == []
    assert recent.low(0) == 100 and recent.low(1) is None


def test_eviction_moves_low_past_the_oldest_and_keeps_a_suffix_of_each_order() -> None:
    recent = RecentEvents(3)
    recent.reset(0, 0)
    for offset, (order, seq) in enumerate([("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)]):
        recent.append(item(order, seq, offset))
    assert recent.low(0) == 2  # offsets 0 and 1 evicted
    assert [i.seq for i in recent.snapshot("a")] == [2, 3]
    assert [i.seq for i in recent.snapshot("b")] == [2]
    assert len(recent) == 3


def test_reset_forgets_a_partition_only() -> None:
    recent = RecentEvents(10)
    recent.reset(0, 0)
    recent.reset(1, 50)
    recent.append(item("a", 1, 0, partition=0))
    recent.append(item("b", 1, 50, partition=1))
    recent.reset(0, 7)
    assert recent.snapshot("a") == [] and [i.seq for i in recent.snapshot("b")] == [1]
    assert recent.low(0) == 7


def test_a_zero_window_keeps_nothing_and_low_follows_the_tail() -> None:
    recent = RecentEvents(0)
    recent.reset(0, 0)
    recent.append(item("a", 1, 5))
    assert recent.snapshot("a") == [] and recent.low(0) == 6


class Collector:
    def __init__(self, hub: Hub | None = None, leave_after: int = 0) -> None:
        self.seen: list[int] = []
        self.hub, self.leave_after = hub, leave_after

    def on_event(self, it: Item) -> None:
        self.seen.append(it.seq)
        if self.hub is not None and len(self.seen) == self.leave_after:
            self.hub.remove(it.order_id, self)


def test_the_hub_delivers_to_the_order_subscribers_only() -> None:
    hub = Hub()
    a1, a2, b = Collector(), Collector(), Collector()
    hub.add("a", a1)
    hub.add("a", a2)
    hub.add("b", b)
    hub.publish(item("a", 1, 0))
    hub.publish(item("c", 1, 1))
    assert a1.seen == a2.seen == [1] and b.seen == []
    hub.remove("a", a1)
    hub.publish(item("a", 2, 2))
    assert a1.seen == [1] and a2.seen == [1, 2]
    assert hub.delivered == 3 and len(hub) == 2


def test_a_subscriber_may_leave_while_being_called() -> None:
    hub = Hub()
    leaver = Collector(hub, leave_after=1)
    stayer = Collector()
    hub.add("a", leaver)
    hub.add("a", stayer)
    hub.publish(item("a", 1, 0))
    hub.publish(item("a", 2, 1))
    assert leaver.seen == [1] and stayer.seen == [1, 2]


def test_partition_for_matches_the_producers_default_partitioner() -> None:
    for _ in range(200):
        oid = str(uuid.uuid4())
        for n in (1, 3, 12):
            assert partition_for(oid, n) == DefaultPartitioner()(oid.encode(), list(range(n)), list(range(n)))
