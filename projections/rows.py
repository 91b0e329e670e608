"""Pure mapping between the contract and the projection's rows: `OrderState` <-> `orders`, event -> `order_events`.

The row tuples follow `ORDER_COLUMNS` / `EVENT_COLUMNS`, which name the columns explicitly, so the physical
column order of a table (0001 plus the columns 0002, 0003 and 0004 appended) never matters. Everything a row holds comes from
events, and the same event always gives the same tuple: that is what makes a replay byte-identical.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from events.envelope import Event
from events.lifecycle import OrderState
from events.payloads import Quote
from events.types import status_of

ORDER_COLUMNS: tuple[str, ...] = (
    "id", "type", "base_token", "quote_token", "side", "amount_in", "slippage_bps", "status",
    "selected_dex", "quotes", "min_acceptable_price", "executed_price", "amount_out", "tx_hash",
    "failure_reason", "attempts", "idempotency_key", "created_at", "updated_at", "last_seq", "last_topic",
    "last_partition", "last_offset", "last_event_id", "route_reason", "client_order_id", "expected_price",
    "failure_stage", "account_id", "limit_price", "max_price", "min_liquidity", "expires_at", "trigger_price",
    "trigger_venue", "triggered_at",
)  # fmt: skip
"""The `orders` columns in the order `order_row` fills them."""

ORDER_TYPES: tuple[str, ...] = (
    "uuid", "text", "text", "text", "text", "float8", "int4", "text", "text", "jsonb", "float8", "float8",
    "float8", "text", "text", "int4", "text", "timestamptz", "timestamptz", "int4", "text", "int4", "int8",
    "uuid", "text", "text", "float8", "text", "text", "float8", "float8", "float8", "timestamptz", "float8",
    "text", "timestamptz",
)  # fmt: skip
"""Postgres types of `ORDER_COLUMNS`, for the `unnest($n::type[])` bulk statements."""

EVENT_COLUMNS: tuple[str, ...] = (
    "order_id", "seq", "event_id", "type", "status", "payload", "occurred_at", "topic", "partition",
    "offset", "causation_id", "schema_version",
)  # fmt: skip
EVENT_TYPES: tuple[str, ...] = (
    "uuid", "int4", "uuid", "text", "text", "jsonb", "timestamptz", "text", "int4", "int8", "uuid", "int4",
)  # fmt: skip

DEAD_LETTER_COLUMNS: tuple[str, ...] = ("projection", "topic", "partition", "offset", "reason", "raw")
DEAD_LETTER_TYPES: tuple[str, ...] = ("text", "text", "int4", "int8", "text", "bytea")

_ENCODER = msgspec.json.Encoder()
_QUOTES = msgspec.json.Decoder(tuple[Quote, ...])

OrderRow = tuple[Any, ...]
EventRow = tuple[Any, ...]


def order_row(state: OrderState, topic: str, partition: int, offset: int) -> OrderRow:
    """The `orders` row of `state`; (topic, partition, offset) is where its last event sits in the log."""
    s = state
    return (
        s.order_id, s.order_type, s.base_token, s.quote_token, s.side, s.amount_in, s.slippage_bps, s.status,
        s.venue, _ENCODER.encode(s.quotes).decode() if s.quotes else None, s.min_acceptable_price,
        s.executed_price, s.amount_out, s.tx_hash, s.failure_reason, s.attempts, s.idempotency_key,
        s.created_at, s.updated_at, s.last_seq, topic, partition, offset, s.last_event_id, s.route_reason,
        s.client_order_id, s.expected_price, s.failure_stage, s.account_id, s.limit_price, s.max_price,
        s.min_liquidity, s.expires_at, s.trigger_price, s.trigger_venue, s.triggered_at,
    )  # fmt: skip


def state_from_row(row: Mapping[str, Any]) -> OrderState:
    """The `OrderState` an `orders` row records: the inverse of `order_row` (positions aside)."""
    quotes = row["quotes"]
    return OrderState(
        order_id=str(row["id"]),
        status=row["status"],
        last_seq=row["last_seq"],
        last_event_id=str(row["last_event_id"]),
        order_type=row["type"],
        base_token=row["base_token"],
        quote_token=row["quote_token"],
        side=row["side"],
        amount_in=row["amount_in"],
        slippage_bps=row["slippage_bps"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        idempotency_key=row["idempotency_key"],
        account_id=row["account_id"],
        attempts=row["attempts"],
        venue=row["selected_dex"],
        quotes=_QUOTES.decode(quotes) if quotes else (),
        route_reason=row["route_reason"],
        client_order_id=row["client_order_id"],
        expected_price=row["expected_price"],
        min_acceptable_price=row["min_acceptable_price"],
        executed_price=row["executed_price"],
        amount_out=row["amount_out"],
        tx_hash=row["tx_hash"],
        failure_reason=row["failure_reason"],
        failure_stage=row["failure_stage"],
        limit_price=row["limit_price"],
        max_price=row["max_price"],
        min_liquidity=row["min_liquidity"],
        expires_at=row["expires_at"],
        trigger_price=row["trigger_price"],
        trigger_venue=row["trigger_venue"],
        triggered_at=row["triggered_at"],
    )


def event_row(event: Event, topic: str, partition: int, offset: int) -> EventRow:
    """The `order_events` row of `event`: its envelope, its (upcast) payload as JSON, and where it sits."""
    return (
        event.order_id,
        event.seq,
        event.event_id,
        event.type,
        status_of(event),
        _ENCODER.encode(event.data).decode(),  # type: ignore[attr-defined]
        event.occurred_at,
        topic,
        partition,
        offset,
        event.causation_id,
        event.schema_version,
    )


def event_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The event of an `order_events` row in the contract's JSON shape (as `events.codec.encode` writes it)."""
    return {
        "type": row["type"],
        "event_id": str(row["event_id"]),
        "order_id": str(row["order_id"]),
        "seq": row["seq"],
        "occurred_at": row["occurred_at"],
        "schema_version": row["schema_version"],
        "causation_id": None if row["causation_id"] is None else str(row["causation_id"]),
        "data": msgspec.json.decode(row["payload"]),
    }
