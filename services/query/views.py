"""Projection rows as the API answers them: the seed's camelCase order, the events, the freshness. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
import orjson

from projections.rows import event_from_row


def iso(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with milliseconds and 'Z', like the seed's JavaScript `toISOString()`."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _quote(q: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "venue": q["venue"],
        "price": q["price"],
        "feeBps": q["fee_bps"],
        "amountIn": q["amount_in"],
        "amountOut": q["amount_out"],
        "priceImpactBps": q["price_impact_bps"],
        "quotedAt": q["quoted_at"],
    }


def order(row: Mapping[str, Any]) -> dict[str, Any]:
    """An `orders` row in the seed's field names, plus what the lifecycle added (route, bounds, stage)."""
    quotes = row["quotes"]
    return {
        "orderId": str(row["id"]),
        "type": row["type"],
        "baseToken": row["base_token"],
        "quoteToken": row["quote_token"],
        "side": row["side"],
        "amountIn": row["amount_in"],
        "slippageBps": row["slippage_bps"],
        "status": row["status"],
        "selectedDex": row["selected_dex"],
        "quotes": [_quote(q) for q in orjson.loads(quotes)] if quotes else [],
        "routeReason": row["route_reason"],
        "expectedPrice": row["expected_price"],
        "minAcceptablePrice": row["min_acceptable_price"],
        "executedPrice": row["executed_price"],
        "amountOut": row["amount_out"],
        "txHash": row["tx_hash"],
        "clientOrderId": row["client_order_id"],
        "failureReason": row["failure_reason"],
        "failureStage": row["failure_stage"],
        "attempts": row["attempts"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "lastSeq": row["last_seq"],
        # Limit and sniper orders: what they rest on, and what fired them (None for market orders).
        "limitPrice": row["limit_price"],
        "maxPrice": row["max_price"],
        "minLiquidity": row["min_liquidity"],
        "expiresAt": iso(row["expires_at"]),
        "triggerPrice": row["trigger_price"],
        "triggerVenue": row["trigger_venue"],
        "triggeredAt": iso(row["triggered_at"]),
    }


def freshness(position: Mapping[str, Any] | None, partition: int | None = None) -> dict[str, Any] | None:
    """How far the projection is on one partition of the log: what it applied, what it last saw of the end.

    `lagEvents` counts log offsets between the two (a transaction marker takes an offset too). `appliedAt`
    is when the last batch on this partition committed; `checkedAt` when the projector last looked at the
    log: if that is old, the projector is not running and `lagEvents` is what it saw then.
    """
    if position is None or position["next_offset"] is None:
        return None
    end = position["end_offset"]
    applied = position["next_offset"]
    return {
        "partition": partition if partition is not None else position["partition"],
        "appliedOffset": applied,
        "logEndOffset": end,
        "lagEvents": None if end is None else max(0, end - applied),
        "appliedAt": iso(position["applied_at"]),
        "checkedAt": iso(position["checked_at"]),
    }


def event(row: Mapping[str, Any]) -> dict[str, Any]:
    """One `order_events` row: the event exactly as the log has it, plus its status and log position."""
    body = event_from_row(row)
    body["occurred_at"] = _contract_time(row["occurred_at"])
    body["status"] = row["status"]
    body["position"] = {"topic": row["topic"], "partition": row["partition"], "offset": row["offset"]}
    return body


def _contract_time(value: datetime) -> str:
    """The contract's own spelling of an instant (as `events.codec` writes it), so events read back equal."""
    return str(msgspec.json.decode(msgspec.json.encode(value)))
