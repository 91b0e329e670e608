"""What a WebSocket client receives: one frame per order event, and the gateway's own control frames.

An event frame keeps the seed's shape, `{orderId, status, data, ts}`, and adds `seq` (to resume and to
detect gaps), `type` (the event type) and `occurredAt`. `status` is the order's status after the event (a
refused cancel leaves it as it was: `submitted`). `data` carries at least the keys the seed sent for
that status, in the seed's camelCase, plus what the event knows beyond them (both quotes, the reason...).
Pure: no I/O. A frame is encoded once per event and the same text goes to every subscriber.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from events.envelope import Event
from events.lifecycle import is_terminal
from events.payloads import Quote
from events.types import (
    OrderBuilding,
    OrderCancelled,
    OrderCancelRefused,
    OrderConfirmed,
    OrderExpired,
    OrderFailed,
    OrderOpened,
    OrderRequested,
    OrderRouting,
    OrderSubmitted,
    OrderTriggered,
    status_of,
)

__all__ = ["Item", "control", "event_data", "event_frame", "item_for", "quote_view"]


@dataclass(frozen=True, slots=True)
class Item:
    """One event as the gateway keeps it: where it is in the log, and its frame, already encoded.

    `account` is the order's owner, known from its first event (`OrderRequested`) and None on the others:
    a stream shows an order only once its first event says it is the subscriber's.
    """

    order_id: str
    seq: int
    status: str
    terminal: bool
    partition: int
    offset: int
    frame: str
    account: str | None = None
    occurred_at: float = (
        0.0  # the event's time (epoch seconds): a live frame's delivery lag is measured from it
    )


def item_for(event: Event, partition: int, offset: int) -> Item:
    status = status_of(event)
    return Item(
        order_id=event.order_id,
        seq=event.seq,
        status=status,
        terminal=is_terminal(status),
        partition=partition,
        offset=offset,
        frame=orjson.dumps(event_frame(event)).decode(),
        account=event.data.account_id if isinstance(event, OrderRequested) else None,
        occurred_at=event.occurred_at.timestamp(),
    )


def event_frame(event: Event) -> dict[str, Any]:
    """The frame of one event: the seed's fields plus `seq`, `type` and the event time."""
    return {
        "orderId": event.order_id,
        "seq": event.seq,
        "type": event.type,
        "status": status_of(event),
        "ts": _epoch_ms(event.occurred_at),
        "occurredAt": _iso(event.occurred_at),
        "data": event_data(event),
    }


def event_data(event: Event) -> dict[str, Any]:
    """The seed's `data` for the event's status (same keys at least), in the seed's camelCase."""
    match event:
        case OrderRequested(data=d):
            order: dict[str, Any] = {
                "id": event.order_id,
                "type": d.order_type,
                "baseToken": d.base_token,
                "quoteToken": d.quote_token,
                "side": d.side,
                "amountIn": d.amount_in,
                "slippageBps": d.slippage_bps,
                "status": "pending",
                "createdAt": _iso(event.occurred_at),
            }
            if d.idempotency_key is not None:
                order["idempotencyKey"] = d.idempotency_key
            if d.order_type != "market":
                order.pop("slippageBps")  # a resting order's bound is its own price
                for key, value in (
                    ("limitPrice", d.limit_price),
                    ("maxPrice", d.max_price),
                    ("minLiquidity", d.min_liquidity),
                    ("expiresAt", _iso(d.expires_at) if d.expires_at is not None else None),
                ):
                    if value is not None:
                        order[key] = value
            return {"order": order}
        case OrderOpened(data=o):
            opened: dict[str, Any] = {"trigger": o.trigger, "expiresAt": _iso(o.expires_at)}
            for key, value in (
                ("limitPrice", o.limit_price),
                ("maxPrice", o.max_price),
                ("minLiquidity", o.min_liquidity),
            ):
                if value is not None:
                    opened[key] = value
            return opened
        case OrderTriggered(data=t):
            triggered: dict[str, Any] = {
                "trigger": t.trigger,
                "selectedDex": t.venue,
                "triggerPrice": t.price,
                "limitPrice": t.bound,
                "venues": list(t.venues),
                "marketEventId": t.market_event_id,
                "marketAt": _iso(t.market_at),
            }
            if t.liquidity is not None:
                triggered["liquidity"] = t.liquidity
            return triggered
        case OrderExpired(data=x):
            return {"error": x.reason, "expiresAt": _iso(x.expires_at)}
        case OrderCancelled(data=c):
            return {
                "requestId": c.request_id,
                "requestedAt": _iso(c.requested_at),
                "fromStatus": c.from_status,
            }
        case OrderCancelRefused(data=r):
            return {"requestId": r.request_id, "requestedAt": _iso(r.requested_at), "cancelRefused": r.reason}
        case OrderRouting(data=r):
            return {"attempt": r.attempt}
        case OrderBuilding(data=b):
            chosen = next(q for q in b.quotes if q.venue == b.selected_venue)
            return {
                "selectedDex": b.selected_venue,
                "quote": quote_view(chosen),
                "quotes": [quote_view(q) for q in b.quotes],
                "reason": b.reason,
                "attempts": b.attempts,
            }
        case OrderSubmitted(data=s):
            return {
                "selectedDex": s.venue,
                "minAcceptablePrice": s.min_acceptable_price,
                "expectedPrice": s.expected_price,
                "slippageBps": s.slippage_bps,
                "clientOrderId": s.client_order_id,
            }
        case OrderConfirmed(data=c):
            return {
                "txHash": c.tx_hash,
                "executedPrice": c.executed_price,
                "selectedDex": c.venue,
                "amountIn": c.amount_in,
                "amountOut": c.amount_out,
                "clientOrderId": c.client_order_id,
            }
        case OrderFailed(data=f):
            failed: dict[str, Any] = {"error": f.reason, "stage": f.stage, "attempts": f.attempts}
            if f.venue is not None:
                failed["selectedDex"] = f.venue
            return failed
    raise TypeError(f"no frame mapping for event type {event.type!r}")


def quote_view(quote: Quote) -> dict[str, Any]:
    """A quote as the seed showed it (`dex`, `price`, `fee` as a fraction) plus its size and impact."""
    return {
        "dex": quote.venue,
        "price": quote.price,
        "fee": quote.fee_bps / 10_000,
        "feeBps": quote.fee_bps,
        "amountIn": quote.amount_in,
        "amountOut": quote.amount_out,
        "priceImpactBps": quote.price_impact_bps,
        "quotedAt": _iso(quote.quoted_at),
    }


def control(kind: str, **fields: Any) -> str:
    """A gateway frame that is not an order event (`heartbeat`, `subscribed`, `end`, `error`...), encoded.

    Event frames carry an event type (`OrderRouting`...) in `type`; control frames a lower-case word, so a
    client tells them apart by that one field.
    """
    return orjson.dumps({"type": kind, **fields}).decode()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _epoch_ms(at: datetime) -> int:
    # Integer arithmetic: `timestamp() * 1000` rounds .805 s down to 804 ms.
    return (at - _EPOCH) // _MS


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
