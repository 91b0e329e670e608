"""The HTTP API's bodies as types: what the OpenAPI schemas are generated from and what the client decodes.

JSON names are the API's camelCase (`rename="camel"`: `order_id` is `orderId`), except the contract's
events, which keep the log's snake_case. Unknown fields are allowed when decoding, so a client built on
these keeps working when the server adds a field. The server builds its answers in its own modules
(`services.query.views`, `services.ingress.routes`); `tests/integration/test_specs_live.py` holds every real
answer to these schemas.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from events.bounds import MAX_AMOUNT_IN, MAX_MIN_LIQUIDITY, MAX_PRICE

Side = Literal["buy", "sell"]
Status = Literal[
    "pending", "open", "triggered", "routing", "building", "submitted", "confirmed", "failed", "expired",
    "cancelled",
]  # fmt: skip
Uuid = Annotated[str, msgspec.Meta(description="a lower-case UUID", extra_json_schema={"format": "uuid"})]
Instant = Annotated[str, msgspec.Meta(description="RFC 3339, UTC, milliseconds, 'Z'")]

# A request's numbers: finite, > 0 and at most their bounds (`events.bounds`, where the values are argued).
AmountIn = Annotated[
    float, msgspec.Meta(gt=0, le=MAX_AMOUNT_IN, description=f"finite, > 0, <= {MAX_AMOUNT_IN:g}")
]
Price = Annotated[float, msgspec.Meta(gt=0, le=MAX_PRICE, description=f"finite, > 0, <= {MAX_PRICE:g}")]
Liquidity = Annotated[
    float, msgspec.Meta(gt=0, le=MAX_MIN_LIQUIDITY, description=f"finite, > 0, <= {MAX_MIN_LIQUIDITY:g}")
]
Bps = Annotated[int, msgspec.Meta(ge=0, le=10_000, description="basis points, 0..10000")]


class Problem(msgspec.Struct, frozen=True):
    """One problem with a request, naming the field (or header, or `body`) it is about."""

    field: str
    message: str


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error answer: a one-line `error` (what the seed's clients read) and one entry per problem."""

    error: str
    details: list[Problem] = []


class OrderRequest(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """`POST /api/orders/execute`. `type` market (the default: the seed's body exactly), limit (`limitPrice`,
    optional `expiresAt`) or sniper (`baseToken` is the token to buy, listed or not yet; `maxPrice`,
    `minLiquidity`, optional `expiresAt`; `side` buy). Tokens are the configured ones (`OEE_TOKENS`, default
    SOL, USDC, ETH, USDT; a sniper's base any 2..16 upper-case letters or digits), upper case; `side` lower
    case. A field of another type's is a 400 naming it; a resting order rests at most INGRESS_MAX_RESTING_S."""

    base_token: Annotated[str, msgspec.Meta(min_length=1, examples=["SOL"])]
    quote_token: Annotated[str, msgspec.Meta(min_length=1, examples=["USDC"])]
    amount_in: AmountIn
    side: Side | None = None
    slippage_bps: Annotated[Bps, msgspec.Meta(description="market orders only (default 100)")] | None = None
    type: Literal["market", "limit", "sniper"] | None = "market"
    limit_price: (
        Annotated[Price, msgspec.Meta(description="limit: quote per base, the worst price")] | None
    ) = None
    max_price: Annotated[Price, msgspec.Meta(description="sniper: the highest price to pay")] | None = None
    min_liquidity: (
        Annotated[Liquidity, msgspec.Meta(description="sniper: the pool's least quote reserve")] | None
    ) = None
    expires_at: (
        Annotated[Instant, msgspec.Meta(description="limit, sniper: when it stops resting")] | None
    ) = None


class Position(msgspec.Struct, frozen=True):
    """Where a record is in the log."""

    topic: str
    partition: int
    offset: int


class OrderAccepted(msgspec.Struct, frozen=True, rename="camel"):
    """201: the order is durably in the intake log. `wsUrl` is relative to the API (as the seed's)."""

    order_id: Uuid
    status: Literal["pending"]
    ws_url: str
    position: Position


class CancelAccepted(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """202 to `DELETE /api/orders/{orderId}`: `cancel` is `requested` (the owner answers in the log) or says
    there is nothing to cancel (the order ended: `status`)."""

    order_id: Uuid
    status: str
    cancel: str
    request_id: str | None = None
    position: Position | None = None


class QuoteView(msgspec.Struct, frozen=True, rename="camel"):
    venue: str
    price: float
    fee_bps: float
    amount_in: float
    amount_out: float
    price_impact_bps: float
    quoted_at: Instant


class Freshness(msgspec.Struct, frozen=True, rename="camel"):
    """How far the projection is on one partition of the log (`lagEvents` counts log offsets)."""

    partition: int
    applied_offset: int
    log_end_offset: int | None
    lag_events: int | None
    applied_at: Instant | None
    checked_at: Instant | None


class Order(msgspec.Struct, frozen=True, rename="camel"):
    """An order as the projection holds it: the seed's fields plus what its lifecycle added."""

    order_id: Uuid
    type: str
    base_token: str
    quote_token: str
    side: Side
    amount_in: float
    slippage_bps: int
    status: Status
    selected_dex: str | None
    quotes: list[QuoteView]
    route_reason: str | None
    expected_price: float | None
    min_acceptable_price: float | None
    executed_price: float | None
    amount_out: float | None
    tx_hash: str | None
    client_order_id: str | None
    failure_reason: str | None
    failure_stage: str | None
    attempts: int
    created_at: Instant
    updated_at: Instant
    last_seq: int
    limit_price: float | None = None
    max_price: float | None = None
    min_liquidity: float | None = None
    expires_at: Instant | None = None
    trigger_price: float | None = None
    trigger_venue: str | None = None
    triggered_at: Instant | None = None
    projection: Freshness | None = None


class ProjectionSummary(msgspec.Struct, frozen=True, rename="camel"):
    partitions: int
    lag_events: int | None
    oldest_applied_at: Instant | None
    oldest_checked_at: Instant | None


class OrderPage(msgspec.Struct, frozen=True, rename="camel"):
    """One page of orders, newest first; `nextCursor` fetches the next (null: this is the last)."""

    orders: list[Order]
    next_cursor: str | None
    projection: ProjectionSummary | None


class EventView(msgspec.Struct, frozen=True):
    """One event exactly as the log has it (the contract's snake_case; schemas in the AsyncAPI document),
    plus the status it moved the order to and where it is in the log."""

    type: str
    event_id: Uuid
    order_id: Uuid
    seq: int
    occurred_at: str
    schema_version: int
    causation_id: Uuid | None
    data: dict[str, Any]
    status: Status
    position: Position


class OrderEvents(msgspec.Struct, frozen=True, rename="camel"):
    order_id: Uuid
    events: list[EventView]


class NotCaughtUp(msgspec.Struct, frozen=True, rename="camel"):
    """503 of a read that waited (`minSeq`, `minPosition`) longer than `waitMs`: how far the projection is."""

    error: str
    details: list[Problem]
    order_id: Uuid
    last_seq: int | None
    projection: Freshness | None = None


class Health(msgspec.Struct, frozen=True):
    status: Literal["ok"]


class Ready(msgspec.Struct, frozen=True):
    """`/ready`: both dependencies answered (200) or which did not (503)."""

    status: Literal["ready", "not ready"]
    broker: Literal["ok", "down"]
    database: Literal["ok", "down"]
    error: str | None = None


LAG_REPORT: dict[str, Any] = {
    "type": "object",
    "description": "the lag report: groups and partitions, stage lags, orders in flight and stuck "
    "(docs/lag.md describes every field)",
    "required": ["seq", "sampled_at", "groups", "stages"],
}
GATEWAY_STATS: dict[str, Any] = {
    "type": "object",
    "description": "connections, subscriptions, frames, history queries, log searches, slow closes, loop lag",
}

TYPES: tuple[type, ...] = (
    ErrorBody,
    OrderRequest,
    OrderAccepted,
    Order,
    OrderPage,
    OrderEvents,
    NotCaughtUp,
    Health,
    Ready,
)
"""Every body type, for the document's components."""
