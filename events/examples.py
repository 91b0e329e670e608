"""Realistic, deterministic order streams: the examples in `docs/events.md` and a fixture for tests.

The numbers come from the venue simulator's pools (SOL at 150 USDC, Raydium deep at 25 bps, Meteora
shallower with a dynamic fee), rounded. Every event is built with `new_event`, so each one is valid.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from events.commands import (
    CancelRequestData,
    Command,
    OrderCancelRequested,
    OrderTriggerRequested,
    TriggerRequestData,
)
from events.envelope import Event
from events.market import MarketEvent, PoolListed, PoolPriced, PoolState
from events.payloads import (
    OrderBuildingData,
    OrderCancelledData,
    OrderCancelRefusedData,
    OrderConfirmedData,
    OrderExpiredData,
    OrderFailedData,
    OrderOpenedData,
    OrderRequestedData,
    OrderRoutingData,
    OrderSubmittedData,
    OrderTriggeredData,
    Payload,
    Quote,
)
from events.types import (
    EVENT_TYPES,
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
    new_event,
)

CONFIRMED_ORDER_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
FAILED_ORDER_ID = "3f2b8c1e-9d4a-4b7e-8f6a-2c1d0e9b8a7f"
LIMIT_ORDER_ID = "b1d2c3e4-5f60-4718-9a2b-3c4d5e6f7081"
EXPIRED_ORDER_ID = "c0ffee00-1234-4abc-8def-0123456789ab"
SNIPER_ORDER_ID = "5a1e7b2c-8d3f-4e6a-9b0c-1d2e3f4a5b6c"
_T0 = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)


def _at(ms: int) -> datetime:
    return _T0 + timedelta(milliseconds=ms)


def _id(order: int, seq: int) -> str:
    """A fixed, realistic-looking UUID4 per (order, seq), so the doc does not change between runs."""
    return str(uuid.UUID(int=random.Random(order * 1000 + seq).getrandbits(128), version=4))


def confirmed_stream() -> list[Event]:
    """Sell 12.5 SOL for USDC with 0.5% slippage: Meteora pays more net of its fee and fills."""
    oid = CONFIRMED_ORDER_ID
    quotes = [
        Quote(
            venue="raydium",
            price=149.4654,
            fee_bps=25.0,
            amount_in=12.5,
            amount_out=1868.3173,
            price_impact_bps=4.67,
            quoted_at=_at(212),
        ),
        Quote(
            venue="meteora",
            price=149.6569,
            fee_bps=22.4,
            amount_in=12.5,
            amount_out=1870.7118,
            price_impact_bps=12.46,
            quoted_at=_at(215),
        ),
    ]
    return [
        new_event(
            OrderRequested,
            order_id=oid,
            seq=1,
            event_id=_id(1, 1),
            occurred_at=_at(0),
            data=OrderRequestedData(
                order_type="market",
                base_token="SOL",
                quote_token="USDC",
                side="sell",
                amount_in=12.5,
                slippage_bps=50,
                idempotency_key="checkout-42f1",
                account_id="desk-7",
            ),
        ),
        new_event(
            OrderRouting,
            order_id=oid,
            seq=2,
            event_id=_id(1, 2),
            causation_id=_id(1, 1),
            occurred_at=_at(204),
            data=OrderRoutingData(attempt=1),
        ),
        new_event(
            OrderBuilding,
            order_id=oid,
            seq=3,
            event_id=_id(1, 3),
            causation_id=_id(1, 2),
            occurred_at=_at(216),
            data=OrderBuildingData(
                quotes=quotes,
                selected_venue="meteora",
                attempts=1,
                reason="sell: meteora pays 149.6569 USDC/SOL net of fees, raydium 149.4654 (+12.8 bps)",
            ),
        ),
        new_event(
            OrderSubmitted,
            order_id=oid,
            seq=4,
            event_id=_id(1, 4),
            causation_id=_id(1, 3),
            occurred_at=_at(221),
            data=OrderSubmittedData(
                venue="meteora",
                client_order_id=f"{oid}-1",
                expected_price=149.6569,
                min_acceptable_price=148.9086,
                slippage_bps=50,
            ),
        ),
        new_event(
            OrderConfirmed,
            order_id=oid,
            seq=5,
            event_id=_id(1, 5),
            causation_id=_id(1, 4),
            occurred_at=_at(2604),
            data=OrderConfirmedData(
                venue="meteora",
                client_order_id=f"{oid}-1",
                tx_hash="5VERv8NMvzbJMEkV8xnrLkEaWRtSz9CosKDYjCJjBRnb",
                executed_price=149.6421,
                amount_in=12.5,
                amount_out=1870.5263,
            ),
        ),
    ]


def failed_stream() -> list[Event]:
    """Buy ETH with 5,000 USDC: no venue answered in three attempts, so the order fails while routing."""
    oid = FAILED_ORDER_ID
    return [
        new_event(
            OrderRequested,
            order_id=oid,
            seq=1,
            event_id=_id(2, 1),
            occurred_at=_at(40),
            data=OrderRequestedData(
                order_type="market",
                base_token="ETH",
                quote_token="USDC",
                side="buy",
                amount_in=5000.0,
                slippage_bps=100,
            ),
        ),
        new_event(
            OrderRouting,
            order_id=oid,
            seq=2,
            event_id=_id(2, 2),
            causation_id=_id(2, 1),
            occurred_at=_at(251),
            data=OrderRoutingData(attempt=1),
        ),
        new_event(
            OrderFailed,
            order_id=oid,
            seq=3,
            event_id=_id(2, 3),
            causation_id=_id(2, 2),
            occurred_at=_at(7263),
            data=OrderFailedData(
                reason="no quote after 3 attempts: raydium timed out after 1.0 s, meteora answered 503",
                stage="routing",
                attempts=3,
            ),
        ),
    ]


def _chain(order_id: str, order: int, steps: list[tuple[type[Event], Payload, int]]) -> list[Event]:
    """Events of one order from (class, data, ms after T0): seq 1.., each caused by the one before."""
    events: list[Event] = []
    for seq, (kind, data, ms) in enumerate(steps, start=1):
        events.append(
            new_event(
                kind,
                order_id=order_id,
                seq=seq,
                event_id=_id(order, seq),
                causation_id=events[-1].event_id if events else None,
                occurred_at=_at(ms),
                data=data,
            )
        )
    return events


def limit_stream() -> list[Event]:
    """Sell 4 SOL at 151 USDC or better: it rests, the market reaches 151.17 for its size, it routes with
    151 as the swap's bound; a cancel arriving after the submit is refused; it fills at 151.168."""
    oid = LIMIT_ORDER_ID
    expires = _at(3_600_000)
    quotes = [
        Quote(venue="raydium", price=151.1692, fee_bps=25.0, amount_in=4.0, amount_out=604.6768,
              price_impact_bps=1.5, quoted_at=_at(60_412)),
        Quote(venue="meteora", price=151.0402, fee_bps=24.1, amount_in=4.0, amount_out=604.1608,
              price_impact_bps=4.0, quoted_at=_at(60_413)),
    ]  # fmt: skip
    return _chain(
        oid,
        3,
        [
            (OrderRequested, OrderRequestedData(
                order_type="limit", base_token="SOL", quote_token="USDC", side="sell", amount_in=4.0,
                slippage_bps=0, limit_price=151.0, expires_at=expires, account_id="desk-7"), 0),
            (OrderOpened, OrderOpenedData(trigger="price", limit_price=151.0, expires_at=expires), 9),
            (OrderTriggered, OrderTriggeredData(
                trigger="price", venue="raydium", price=151.1725, bound=151.0,
                market_event_id="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", market_at=_at(60_392),
                venues=["raydium", "meteora"]), 60_405),
            (OrderRouting, OrderRoutingData(attempt=1), 60_405),
            (OrderBuilding, OrderBuildingData(
                quotes=quotes, selected_venue="raydium", attempts=1,
                reason="raydium 151.169 vs meteora 151.04 net of fees: best for sell by 8.5 bps"), 60_414),
            (OrderSubmitted, OrderSubmittedData(
                venue="raydium", client_order_id=oid, expected_price=151.1692, min_acceptable_price=151.0,
                slippage_bps=0, valid_until=_at(120_414)), 60_414),
            (OrderCancelRefused, OrderCancelRefusedData(
                request_id="0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6", requested_at=_at(60_950),
                reason="submitted", status="submitted"), 60_958),
            (OrderConfirmed, OrderConfirmedData(
                venue="raydium", client_order_id=oid, tx_hash="3nQ8kZ5oTq1XvW7rB2yHcJ9dLmP4sA6fEgU8iKxN1tYz",
                executed_price=151.168, amount_in=4.0, amount_out=604.672), 62_871),
        ],
    )  # fmt: skip


def expired_stream() -> list[Event]:
    """Buy ETH with 2,000 USDC at 2,900 or better: the market never comes down that far within the hour."""
    expires = _at(3_600_000)
    return _chain(
        EXPIRED_ORDER_ID,
        4,
        [
            (OrderRequested, OrderRequestedData(
                order_type="limit", base_token="ETH", quote_token="USDC", side="buy", amount_in=2000.0,
                slippage_bps=0, limit_price=2900.0, expires_at=expires), 0),
            (OrderOpened, OrderOpenedData(trigger="price", limit_price=2900.0, expires_at=expires), 8),
            (OrderExpired, OrderExpiredData(
                expires_at=expires, reason="expired: the market did not reach the limit price before expires_at"),
                3_600_004),
        ],
    )  # fmt: skip


def sniper_stream() -> list[Event]:
    """Snipe BONK with 500 USDC (at most 0.00003 USDC per BONK, a pool of at least 50,000 USDC): cancelled
    by its account before any pool was listed."""
    expires = _at(600_000)
    return _chain(
        SNIPER_ORDER_ID,
        5,
        [
            (OrderRequested, OrderRequestedData(
                order_type="sniper", base_token="BONK", quote_token="USDC", side="buy", amount_in=500.0,
                slippage_bps=0, max_price=0.00003, min_liquidity=50_000.0, expires_at=expires), 0),
            (OrderOpened, OrderOpenedData(
                trigger="listing", max_price=0.00003, min_liquidity=50_000.0, expires_at=expires), 7),
            (OrderCancelled, OrderCancelledData(
                request_id="6f5e4d3c-2b1a-4098-8765-43210fedcba9", requested_at=_at(95_000),
                from_status="open"), 95_011),
        ],
    )  # fmt: skip


def example_events() -> dict[str, Event]:
    """One example per event type, in the order of `EVENT_TYPES`."""
    examples: dict[str, Event] = {}
    streams = confirmed_stream() + failed_stream() + limit_stream() + expired_stream() + sniper_stream()
    for event in streams:
        examples.setdefault(event.type, event)
    return {name: examples[name] for name in EVENT_TYPES}


def example_commands() -> dict[str, Command]:
    """One example per intake command: the cancel refused in `limit_stream`, and the trigger that fired it."""
    limit = limit_stream()
    fired = limit[2]
    assert isinstance(fired, OrderTriggered)
    triggered = fired.data
    cancel = OrderCancelRequested(
        command_id="0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6",
        order_id=LIMIT_ORDER_ID,
        issued_at=_at(60_950),
        schema_version=OrderCancelRequested.version,
        data=CancelRequestData(account_id="desk-7"),
    )
    trigger = OrderTriggerRequested(
        command_id=_id(6, 1),
        order_id=LIMIT_ORDER_ID,
        issued_at=_at(60_396),
        schema_version=OrderTriggerRequested.version,
        data=TriggerRequestData(triggered=triggered),
    )
    return {"OrderCancelRequested": cancel, "OrderTriggerRequested": trigger}


def example_market() -> dict[str, MarketEvent]:
    """A listing of BONK/USDC on Meteora, and the Raydium SOL/USDC tick that fired `limit_stream`'s order."""
    listed = PoolListed(
        event_id=_id(7, 1),
        venue="meteora",
        pair="BONK/USDC",
        occurred_at=_at(120_000),
        schema_version=PoolListed.version,
        cause="listing",
        pool=PoolState(token_a="BONK", token_b="USDC", reserve_a=4.0e9, reserve_b=100_000.0, fee_bps=20.0),
    )
    priced = PoolPriced(
        event_id="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        venue="raydium",
        pair="SOL/USDC",
        occurred_at=_at(60_392),
        schema_version=PoolPriced.version,
        cause="walk",
        pool=PoolState(
            token_a="SOL", token_b="USDC", reserve_a=26_327.1, reserve_b=3_990_512.8, fee_bps=25.0
        ),
    )
    return {"PoolPriced": priced, "PoolListed": listed}
