"""Realistic sample events for tests: one order's whole lifecycle, valid against the contract."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from events.commands import (
    CancelRequestData,
    OrderCancelRequested,
    OrderTriggerRequested,
    TriggerRequestData,
    new_command,
)
from events.envelope import Event
from events.payloads import OrderTriggeredData
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


def limit_request(
    side: str = "sell",
    limit: float = 160.0,
    amount: float = 1.5,
    base: str = "SOL",
    quote: str = "USDC",
    expires_in_s: float = 3600.0,
    account: str = "local",
    order_id: str | None = None,
) -> OrderRequested:
    """A limit order: sell `amount` base at `limit` or more, or spend `amount` quote at `limit` or less."""
    data = {
        "order_type": "limit",
        "base_token": base,
        "quote_token": quote,
        "side": side,
        "amount_in": amount,
        "slippage_bps": 0,
        "limit_price": limit,
        "expires_at": datetime.now(UTC) + timedelta(seconds=expires_in_s),
        "account_id": account,
    }
    return new_event(OrderRequested, order_id=order_id or str(uuid.uuid4()), seq=1, data=data)


def sniper_request(
    token: str = "BONK",
    quote: str = "USDC",
    amount: float = 500.0,
    max_price: float = 0.0001,
    min_liquidity: float = 10_000.0,
    expires_in_s: float = 3600.0,
    account: str = "local",
) -> OrderRequested:
    """A sniper: spend `amount` of `quote` on `token` when a pool of the pair is listed within the guards."""
    data = {
        "order_type": "sniper",
        "base_token": token,
        "quote_token": quote,
        "side": "buy",
        "amount_in": amount,
        "slippage_bps": 0,
        "max_price": max_price,
        "min_liquidity": min_liquidity,
        "expires_at": datetime.now(UTC) + timedelta(seconds=expires_in_s),
        "account_id": account,
    }
    return new_event(OrderRequested, order_id=str(uuid.uuid4()), seq=1, data=data)


def cancel_command(order_id: str, account: str = "local") -> OrderCancelRequested:
    command = new_command(OrderCancelRequested, order_id=order_id, data=CancelRequestData(account_id=account))
    assert isinstance(command, OrderCancelRequested)
    return command


def trigger_command(
    order_id: str,
    price: float,
    bound: float,
    venue: str = "raydium",
    venues: tuple[str, ...] = ("raydium", "meteora"),
    refusal: str | None = None,
    liquidity: float | None = None,
) -> OrderTriggerRequested:
    fired = OrderTriggeredData(
        trigger="listing" if liquidity is not None else "price",
        venue=venue,
        price=price,
        bound=bound,
        market_event_id=str(uuid.uuid4()),
        market_at=datetime.now(UTC),
        venues=list(venues),
        liquidity=liquidity,
    )
    command = new_command(
        OrderTriggerRequested, order_id=order_id, data=TriggerRequestData(triggered=fired, refusal=refusal)
    )
    assert isinstance(command, OrderTriggerRequested)
    return command
