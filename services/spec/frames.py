"""The WebSocket frames as types, for the AsyncAPI document: one event frame per event type, generated from
the contract's registries (`EVENT_TYPES`, `STATUS`), plus the gateway's control frames and client messages.

`services.gateway.frames` builds the frames; `DATA` says what each event type's `data` holds. The spec
tests convert the real frame of every example event into these types with unknown fields forbidden, so a key
added to a frame without its type here fails them (and a type here the frames never send does too).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from events.types import EVENT_TYPES, STATUS
from services.spec.wire import Instant, Side, Status


class QuoteFrame(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """A quote as the seed showed it (`dex`, `price`, `fee` as a fraction) plus its size and impact."""

    dex: str
    price: float
    fee: float
    fee_bps: float
    amount_in: float
    amount_out: float
    price_impact_bps: float
    quoted_at: Instant


class OrderFrame(msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=True, frozen=True):
    id: str
    type: str
    base_token: str
    quote_token: str
    side: Side
    amount_in: float
    status: Literal["pending"]
    created_at: Instant
    slippage_bps: int | None = None  # market orders (a resting order's bound is its own price)
    idempotency_key: str | None = None
    limit_price: float | None = None
    max_price: float | None = None
    min_liquidity: float | None = None
    expires_at: Instant | None = None


class PendingData(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    order: OrderFrame


class RoutingData(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    attempt: int


class BuildingData(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    selected_dex: str
    quote: QuoteFrame
    quotes: list[QuoteFrame]
    reason: str
    attempts: int


class SubmittedData(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    selected_dex: str
    min_acceptable_price: float
    expected_price: float
    slippage_bps: int
    client_order_id: str


class ConfirmedData(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    tx_hash: str
    executed_price: float
    selected_dex: str
    amount_in: float
    amount_out: float
    client_order_id: str


class FailedData(msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=True, frozen=True):
    error: str
    stage: str
    attempts: int
    selected_dex: str | None = None


class OpenedData(msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=True, frozen=True):
    trigger: Literal["price", "listing"]
    expires_at: Instant
    limit_price: float | None = None
    max_price: float | None = None
    min_liquidity: float | None = None


class TriggeredData(
    msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=True, frozen=True
):
    trigger: Literal["price", "listing"]
    selected_dex: str
    trigger_price: float
    limit_price: float
    venues: list[str]
    market_event_id: str
    market_at: Instant
    liquidity: float | None = None


class ExpiredData(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    error: str
    expires_at: Instant


class CancelledData(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    request_id: str
    requested_at: Instant
    from_status: str


class CancelRefusedData(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    request_id: str
    requested_at: Instant
    cancel_refused: Literal["submitted"]


DATA: dict[str, type] = {
    "OrderRequested": PendingData,
    "OrderRouting": RoutingData,
    "OrderBuilding": BuildingData,
    "OrderSubmitted": SubmittedData,
    "OrderConfirmed": ConfirmedData,
    "OrderFailed": FailedData,
    "OrderOpened": OpenedData,
    "OrderTriggered": TriggeredData,
    "OrderExpired": ExpiredData,
    "OrderCancelled": CancelledData,
    "OrderCancelRefused": CancelRefusedData,
}
"""Event type -> the type of its frame's `data`."""


def _event_frame(name: str) -> type:
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        ("orderId", str),
        ("seq", int),
        # A refused cancel keeps the order's status, whatever it is: the frame carries that one.
        ("status", Literal[STATUS[name]] if name in STATUS else Status),  # type: ignore[valid-type]
        ("ts", int),
        ("occurredAt", Instant),
        ("data", DATA[name]),
    ]
    return msgspec.defstruct(
        f"{name}Frame", fields, tag=name, tag_field="type", forbid_unknown_fields=True, frozen=True
    )


EVENT_FRAMES: dict[str, type] = {name: _event_frame(name) for name in EVENT_TYPES}
"""Event type -> its frame type (`type` is the event type, `status` the status it moves the order to)."""


# -- control frames (server -> client) and client messages on /ws --------------------------------------------
class _Control(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True):
    pass


class Heartbeat(_Control, tag="heartbeat", frozen=True):
    ts: int


class Subscribed(_Control, tag="subscribed", frozen=True):
    orderId: str
    fromSeq: int


class Unsubscribed(_Control, tag="unsubscribed", frozen=True):
    orderId: str


class Pong(_Control, tag="pong", frozen=True):
    id: Any
    ts: int


class End(_Control, tag="end", frozen=True):
    """An order's stream on /ws is over (its terminal event was sent)."""

    orderId: str
    code: int
    reason: str


class Error(_Control, tag="error", omit_defaults=True, frozen=True):
    """4400: a bad message (the connection stays); 4404: an order never seen (that subscription ends)."""

    code: int
    error: str
    orderId: str | None = None


CONTROL_FRAMES: tuple[type, ...] = (Heartbeat, Subscribed, Unsubscribed, Pong, End, Error)


class _Message(msgspec.Struct, tag_field="action", frozen=True):
    pass


class Subscribe(_Message, tag="subscribe", frozen=True):
    orderId: str
    fromSeq: int = 0


class Unsubscribe(_Message, tag="unsubscribe", frozen=True):
    orderId: str


class Ping(_Message, tag="ping", frozen=True):
    id: Any = None


CLIENT_MESSAGES: tuple[type, ...] = (Subscribe, Unsubscribe, Ping)
