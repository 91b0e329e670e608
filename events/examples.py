"""Two realistic, deterministic order streams: the examples in `docs/events.md` and a fixture for tests.

The numbers come from the venue simulator's pools (SOL at 150 USDC, Raydium deep at 25 bps, Meteora
shallower with a dynamic fee), rounded. Every event is built with `new_event`, so each one is valid.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from events.envelope import Event
from events.payloads import (
    OrderBuildingData,
    OrderConfirmedData,
    OrderFailedData,
    OrderRequestedData,
    OrderRoutingData,
    OrderSubmittedData,
    Quote,
)
from events.types import (
    OrderBuilding,
    OrderConfirmed,
    OrderFailed,
    OrderRequested,
    OrderRouting,
    OrderSubmitted,
    new_event,
)

CONFIRMED_ORDER_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
FAILED_ORDER_ID = "3f2b8c1e-9d4a-4b7e-8f6a-2c1d0e9b8a7f"
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


def example_events() -> dict[str, Event]:
    """One example per event type, in lifecycle order."""
    examples: dict[str, Event] = {}
    for event in confirmed_stream() + failed_stream():
        examples.setdefault(event.type, event)
    return examples
