"""Accepting an order: derive its id, honour the Idempotency-Key, build `OrderRequested`, publish it.

The order id of a keyed request is a UUIDv5 of the key under a fixed namespace, so the same key names the
same order in every ingress process and after any restart; the router drops a second `OrderRequested` for an
order id it has already seen. Unkeyed requests get a random UUIDv4.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from events.envelope import Event, new_id
from events.payloads import OrderRequestedData
from events.types import OrderRequested, new_event
from services.ingress.idempotency import IdempotencyStore
from services.ingress.publisher import Position
from services.ingress.validation import OrderRequest

ORDER_ID_NAMESPACE = uuid.UUID("6f0b8a52-3c1e-5b7d-9e4a-0d2c8f1a7b63")
"""Fixed forever: changing it would give every Idempotency-Key a new order id."""


class EventPublisher(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, event: Event) -> Position: ...
    async def probe(self, timeout_s: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    order_id: str
    position: Position
    replayed: bool = False


def order_id_for(key: str | None) -> str:
    """The order id of a request: derived from its Idempotency-Key, or random without one."""
    return new_id() if key is None else str(uuid.uuid5(ORDER_ID_NAMESPACE, key))


def requested_event(order_id: str, order: OrderRequest, key: str | None, fingerprint: str) -> OrderRequested:
    data = OrderRequestedData(
        order_type=order.order_type,
        base_token=order.base_token,
        quote_token=order.quote_token,
        side=order.side,
        amount_in=order.amount_in,
        slippage_bps=order.slippage_bps,
        idempotency_key=key,
        request_hash=fingerprint,
    )
    return new_event(OrderRequested, order_id=order_id, seq=1, data=data)


class Intake:
    """The use case behind POST /api/orders/execute, free of HTTP."""

    def __init__(self, publisher: EventPublisher, keys: IdempotencyStore[Position]) -> None:
        self.publisher = publisher
        self.keys = keys

    async def submit(self, order: OrderRequest, key: str | None) -> Accepted:
        """Publish the order once and return where it landed.

        Raises `KeyReused` / `KeyInFlight` for a key conflict, `BrokerUnavailable` / `PublishTimeout` when
        the broker did not acknowledge (the key is then released, so a retry with it runs again and, if the
        first write did land after all, produces the same order id).
        """
        order_id = order_id_for(key)
        if key is None:
            event = requested_event(order_id, order, None, order.fingerprint())
            return Accepted(order_id, await self.publisher.publish(event))
        fingerprint = order.fingerprint()
        stored = self.keys.begin(key, fingerprint)
        if stored is not None:
            return Accepted(order_id, stored, replayed=True)
        try:
            position = await self.publisher.publish(requested_event(order_id, order, key, fingerprint))
        except BaseException:
            self.keys.release(key)
            raise
        self.keys.complete(key, position)
        return Accepted(order_id, position)
