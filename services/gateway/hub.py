"""In-process fan-out: the log tail hands each event to the subscribers of its order, synchronously.

Delivery never awaits: a subscriber queues the frame on its connection (bounded) or closes it, so one slow
client cannot hold up the tail or anyone else.
"""

from __future__ import annotations

from typing import Protocol

from services.gateway.frames import Item

__all__ = ["Hub", "Subscriber"]


class Subscriber(Protocol):
    def on_event(self, item: Item) -> None: ...


class Hub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self.delivered = 0

    def add(self, order_id: str, subscriber: Subscriber) -> None:
        self._subscribers.setdefault(order_id, set()).add(subscriber)

    def remove(self, order_id: str, subscriber: Subscriber) -> None:
        subs = self._subscribers.get(order_id)
        if subs is not None:
            subs.discard(subscriber)
            if not subs:
                del self._subscribers[order_id]

    def publish(self, item: Item) -> None:
        subs = self._subscribers.get(item.order_id)
        if not subs:
            return
        # A copy: a subscriber may unsubscribe itself (its stream ended) while being called.
        targets = tuple(subs)
        self.delivered += len(targets)
        for subscriber in targets:
            subscriber.on_event(item)

    def __len__(self) -> int:
        return sum(len(s) for s in self._subscribers.values())
