"""Realistic sample events for tests: one order's whole lifecycle, valid against the contract."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from events.envelope import Event
from events.types import OrderRequested, new_event


def lifecycle_events(
    failed: bool = False, order_id: str | None = None, account: str | None = None
) -> list[Event]:
    """pending → routing → building → submitted → confirmed (or failed), seq 1..5, causally chained;
    placed by `account` (default: the implicit `local`)."""
    oid = order_id or str(uuid.uuid4())
    t0 = datetime.now(UTC)
    quotes = [
        {"venue": "raydium", "price": 149.2, "fee_bps": 25, "amount_in": 1.5, "amount_out": 223.8,
         "price_impact_bps": 1.2, "quoted_at": t0},
        {"venue": "meteora", "price": 149.5, "fee_bps": 20, "amount_in": 1.5, "amount_out": 224.25,
         "price_impact_bps": 0.9, "quoted_at": t0},
    ]  # fmt: skip
    steps: list[tuple[str, dict]] = [
        ("OrderRequested", {"order_type": "market", "base_token": "SOL", "quote_token": "USDC", "side": "sell",
                            "amount_in": 1.5, "slippage_bps": 100, "idempotency_key": None}),
        ("OrderRouting", {"attempt": 1}),
        ("OrderBuilding", {"quotes": quotes, "selected_venue": "meteora",
                           "reason": "meteora 149.5 vs raydium 149.2 net of fees: best for sell", "attempts": 1}),
        ("OrderSubmitted", {"venue": "meteora", "client_order_id": oid, "expected_price": 149.5,
                            "min_acceptable_price": 148.005, "slippage_bps": 100}),
    ]  # fmt: skip
    if account is not None:
        steps[0][1]["account_id"] = account
    if failed:
        steps.append(("OrderFailed", {"reason": "slippage exceeded", "stage": "execution", "attempts": 1,
                                      "venue": "meteora", "client_order_id": oid}))  # fmt: skip
    else:
        steps.append(("OrderConfirmed", {"venue": "meteora", "tx_hash": "5Kx" + uuid.uuid4().hex,
                                         "executed_price": 149.41, "amount_in": 1.5, "amount_out": 224.1,
                                         "client_order_id": oid}))  # fmt: skip
    events: list[Event] = []
    for seq, (kind, data) in enumerate(steps, start=1):
        cause = events[-1].event_id if events else None
        at = t0 + timedelta(milliseconds=10 * seq)
        events.append(new_event(kind, order_id=oid, seq=seq, data=data, causation_id=cause, occurred_at=at))
    return events


def order_request(
    side: str = "sell",
    base: str = "SOL",
    quote: str = "USDC",
    amount: float = 1.5,
    slippage_bps: int = 100,
    order_id: str | None = None,
) -> OrderRequested:
    data = {
        "order_type": "market",
        "base_token": base,
        "quote_token": quote,
        "side": side,
        "amount_in": amount,
        "slippage_bps": slippage_bps,
    }
    return new_event(OrderRequested, order_id=order_id or str(uuid.uuid4()), seq=1, data=data)
