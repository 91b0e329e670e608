"""Accepting an order: derive its id, honour the Idempotency-Key, build `OrderRequested`, publish it.

The order id of a keyed request is a UUIDv5 of the key under a namespace of its account, so the same key
names the same order in every ingress process and after any restart, and two accounts' keys never meet;
the `local` account keeps the namespace every key had before accounts existed (old keys keep their ids).
Unkeyed requests get a random UUIDv4.

A key is checked in process first (`IdempotencyStore`: repeats and concurrent duplicates answered without a
round trip), then claimed in PostgreSQL (`DurableKeys`), which every process and every restart shares.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from events.envelope import LOCAL_ACCOUNT, Event, new_id
from events.payloads import OrderRequestedData
from events.types import OrderRequested, new_event
from services.ingress.idempotency import IdempotencyStore
from services.ingress.keystore import Claim, DurableKeys
from services.ingress.publisher import BrokerUnavailable, Position
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


def order_id_for(key: str | None, account: str = LOCAL_ACCOUNT) -> str:
    """The order id of a request: derived from its account and Idempotency-Key, or random without a key."""
    if key is None:
        return new_id()
    if account == LOCAL_ACCOUNT:
        return str(uuid.uuid5(ORDER_ID_NAMESPACE, key))
    return str(uuid.uuid5(uuid.uuid5(ORDER_ID_NAMESPACE, f"account:{account}"), key))


def requested_event(
    order_id: str, order: OrderRequest, key: str | None, fingerprint: str, account: str
) -> OrderRequested:
    data = OrderRequestedData(
        order_type=order.order_type,
        base_token=order.base_token,
        quote_token=order.quote_token,
        side=order.side,
        amount_in=order.amount_in,
        slippage_bps=order.slippage_bps,
        idempotency_key=key,
        request_hash=fingerprint,
        account_id=account,
        limit_price=order.limit_price,
        max_price=order.max_price,
        min_liquidity=order.min_liquidity,
        expires_at=order.expires_at,
    )
    return new_event(OrderRequested, order_id=order_id, seq=1, data=data)


class Intake:
    """The use case behind POST /api/orders/execute, free of HTTP."""

    def __init__(
        self, publisher: EventPublisher, cache: IdempotencyStore[Position], durable: DurableKeys
    ) -> None:
        self.publisher = publisher
        self.cache = cache
        self.durable = durable

    async def submit(self, order: OrderRequest, key: str | None, account: str) -> Accepted:
        """Publish the order once and return where it landed.

        Raises `KeyReused` / `KeyInFlight` for a key conflict, `StoreUnavailable` when a key cannot be
        checked, `BrokerUnavailable` / `PublishTimeout` when the broker did not acknowledge. A key is freed
        only when nothing was written; after an unknown outcome it stays bound to this body, and a retry
        with it publishes again under the same order id (the router keeps the first OrderRequested).
        """
        order_id = order_id_for(key, account)
        fingerprint = order.fingerprint()
        if key is None:
            event = requested_event(order_id, order, None, fingerprint, account)
            return Accepted(order_id, await self.publisher.publish(event))
        slot = (account, key)
        stored = self.cache.begin(slot, fingerprint)
        if stored is not None:
            return Accepted(order_id, stored, replayed=True)
        try:
            claimed = await self.durable.claim(account, key, order_id, fingerprint)
        except BaseException:
            self.cache.release(slot)
            raise
        if isinstance(claimed, Position):  # acknowledged before, by this process or another
            self.cache.complete(slot, claimed)
            return Accepted(order_id, claimed, replayed=True)
        position = await self._publish(requested_event(order_id, order, key, fingerprint, account), claimed)
        self.cache.complete(slot, position)
        return Accepted(order_id, position)

    async def _publish(self, event: OrderRequested, claim: Claim) -> Position:
        slot = (claim.account, claim.key)
        try:
            position = await self.publisher.publish(event)
        except BrokerUnavailable:
            self.cache.release(slot)
            await self.durable.release(claim)
            raise
        except BaseException:  # unknown outcome (or cancelled mid-send): the record may be in the log
            self.cache.release(slot)
            await self.durable.abandon(claim)
            raise
        await self.durable.complete(claim, position)
        return position
