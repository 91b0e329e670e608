"""The `data` of each event type: what that step of an order's life adds to it.

Cross-field rules that a JSON type cannot say (base differs from quote, the selected venue was quoted)
are checked in `__post_init__`, which msgspec runs on construction and on every decode.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

from events.envelope import (
    LOCAL_ACCOUNT,
    AccountId,
    Attempt,
    Bps,
    Count,
    FeeBps,
    FiniteFloat,
    IdempotencyKey,
    Ident,
    Name,
    OrderType,
    PositiveFloat,
    Side,
    Status,
    Text,
    UTCDateTime,
    UUIDStr,
    utc,
)


class Payload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Base of every payload: immutable, strict about unknown fields."""


class Quote(Payload, frozen=True):
    """One venue's answer for this order's size, compared net of fees."""

    venue: Name
    price: Annotated[
        PositiveFloat, Meta(description="effective price, quote token per base token, net of fees")
    ]
    fee_bps: FeeBps
    amount_in: PositiveFloat
    amount_out: PositiveFloat
    price_impact_bps: FiniteFloat
    quoted_at: UTCDateTime

    def __post_init__(self) -> None:
        at = self.quoted_at
        if not (isinstance(at, datetime) and at.tzinfo is UTC):
            force_setattr(self, "quoted_at", utc(at, "quoted_at"))


class OrderRequestedData(Payload, frozen=True):
    """The client's order as the ingress accepted it. `amount_in` is in the token the client gives up.

    `account_id` (since schema_version 2) is the account that placed it: only that account sees the order
    and its Idempotency-Key. Version 1 events, written before accounts existed, read as account `local`.

    Since schema_version 3 an order has a type. `market` (every order before v3) routes at once. `limit`
    rests until the best venue's executable price for its size reaches `limit_price` (a sell at or above
    it, a buy at or below it), and its swap may never execute worse than `limit_price`. `sniper` buys
    `base_token` (which need not be listed yet) when a pool of the pair is listed, provided the pool holds
    at least `min_liquidity` of the quote token and the price is at most `max_price`. Both rest until
    `expires_at` at the latest; `slippage_bps` is 0 for them (their price bound is the limit).
    """

    order_type: OrderType
    base_token: Name
    quote_token: Name
    side: Side
    amount_in: PositiveFloat
    slippage_bps: Bps
    idempotency_key: IdempotencyKey | None = None
    # A canonical hash of the validated request: the same Idempotency-Key with another body is a conflict.
    request_hash: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    # A default only so that code building a payload in process (tests, tools) and the router's state
    # records written before v2 still work; the ingress always names the account, and v2 always carries it.
    account_id: AccountId = LOCAL_ACCOUNT
    limit_price: (
        Annotated[PositiveFloat, Meta(description="limit: quote per base, the worst price the swap may get")]
        | None
    ) = None
    max_price: (
        Annotated[PositiveFloat, Meta(description="sniper: the most it pays, quote per base")] | None
    ) = None
    min_liquidity: (
        Annotated[PositiveFloat, Meta(description="sniper: quote-token reserve the listed pool must hold")]
        | None
    ) = None
    expires_at: UTCDateTime | None = None  # limit and sniper: when the order stops resting

    def __post_init__(self) -> None:
        if self.base_token == self.quote_token:
            raise ValueError(f"base_token and quote_token are both {self.base_token!r}")
        at = self.expires_at
        if at is not None and not (isinstance(at, datetime) and at.tzinfo is UTC):
            force_setattr(self, "expires_at", utc(at, "expires_at"))
        problem = _order_type_problem(self)
        if problem:
            raise ValueError(f"{self.order_type} order: {problem}")

    @property
    def resting(self) -> bool:
        """True for the order types that wait for the market before they route."""
        return self.order_type != "market"

    @property
    def price_bound(self) -> float | None:
        """The price the swap may never execute beyond: the limit, or the sniper's maximum."""
        return self.limit_price if self.order_type == "limit" else self.max_price


def _order_type_problem(d: OrderRequestedData) -> str:
    """What is wrong with the fields of `d` for its order type ("" when nothing)."""
    given = {
        name
        for name in ("limit_price", "max_price", "min_liquidity", "expires_at")
        if getattr(d, name) is not None
    }
    needed = {
        "market": set(),
        "limit": {"limit_price", "expires_at"},
        "sniper": {"max_price", "min_liquidity", "expires_at"},
    }[d.order_type]
    if needed - given:
        return "needs " + ", ".join(sorted(needed - given))
    if given - needed:
        return "does not take " + ", ".join(sorted(given - needed))
    if d.order_type == "sniper" and d.side != "buy":
        return "side must be buy"
    return ""


class OrderRoutingData(Payload, frozen=True):
    """The router took the order and is asking the venues for quotes."""

    attempt: Attempt


class OrderBuildingData(Payload, frozen=True):
    """The route is chosen: every quote considered, the winner, and why."""

    quotes: Annotated[list[Quote], Meta(min_length=1)]
    selected_venue: Name
    reason: Text
    attempts: Attempt

    def __post_init__(self) -> None:
        if self.selected_venue not in {q.venue for q in self.quotes}:
            raise ValueError(f"selected_venue {self.selected_venue!r} is not among the quotes")


class OrderSubmittedData(Payload, frozen=True):
    """The swap was sent to the venue under `client_order_id`, the key the venue deduplicates on.

    `min_acceptable_price` keeps the seed's name but is a bound in the order's worse direction: for a sell
    the lowest price accepted (expected * (1 - slippage)), for a buy the highest (expected * (1 + slippage)).
    """

    venue: Name
    client_order_id: Ident
    expected_price: PositiveFloat
    min_acceptable_price: Annotated[
        PositiveFloat,
        Meta(description="sell: lowest acceptable price; buy: highest acceptable price (seed's name kept)"),
    ]
    slippage_bps: Bps
    # The landing deadline: the venue refuses to execute the swap after it, and the router settles an
    # uncertain swap by looking it up once this has passed (`failed`, reason `expired`, if it never ran).
    # Absent in events written before deadlines existed.
    valid_until: UTCDateTime | None = None

    def __post_init__(self) -> None:
        at = self.valid_until
        if at is not None and not (isinstance(at, datetime) and at.tzinfo is UTC):
            force_setattr(self, "valid_until", utc(at, "valid_until"))


class OrderConfirmedData(Payload, frozen=True):
    """The venue settled the swap: the terminal success."""

    venue: Name
    tx_hash: Ident
    executed_price: PositiveFloat
    amount_in: PositiveFloat
    amount_out: PositiveFloat
    client_order_id: Ident


class OrderFailedData(Payload, frozen=True):
    """The order ended without a swap: the terminal failure, with where and after how many attempts."""

    reason: Text
    # `trigger` (since schema_version 2): a sniper whose guard refused the pool it was waiting for.
    stage: Literal["routing", "execution", "validation", "trigger"]
    attempts: Count
    venue: Name | None = None
    client_order_id: Ident | None = None


class OrderOpenedData(Payload, frozen=True):
    """A limit or sniper order now rests, waiting for the market: `trigger` says for what (`price`: the
    best executable price reaching `limit_price`; `listing`: a pool of the pair listed within the guards).
    It leaves `open` when it triggers, expires at `expires_at`, or is cancelled."""

    trigger: Literal["price", "listing"]
    expires_at: UTCDateTime
    limit_price: PositiveFloat | None = None
    max_price: PositiveFloat | None = None
    min_liquidity: PositiveFloat | None = None

    def __post_init__(self) -> None:
        at = self.expires_at
        if not (isinstance(at, datetime) and at.tzinfo is UTC):
            force_setattr(self, "expires_at", utc(at, "expires_at"))


class OrderTriggeredData(Payload, frozen=True):
    """The market event that fired a resting order, as the trigger engine saw it: `price` is the best
    venue's executable price for the order's own size (fees and price impact included) and `bound` the
    limit (or sniper maximum) it met. The order routes next, only to `venues`."""

    trigger: Literal["price", "listing"]
    venue: Name
    price: Annotated[PositiveFloat, Meta(description="executable price for the order's size, net of fees")]
    bound: Annotated[PositiveFloat, Meta(description="the limit price, or the sniper's maximum")]
    market_event_id: UUIDStr
    market_at: UTCDateTime
    venues: Annotated[list[Name], Meta(min_length=1)]
    liquidity: Annotated[PositiveFloat, Meta(description="sniper: the pool's quote reserve")] | None = None

    def __post_init__(self) -> None:
        at = self.market_at
        if not (isinstance(at, datetime) and at.tzinfo is UTC):
            force_setattr(self, "market_at", utc(at, "market_at"))
        if self.venue not in self.venues:
            raise ValueError(f"venue {self.venue!r} is not among the venues {self.venues}")


class OrderExpiredData(Payload, frozen=True):
    """A resting order reached its `expires_at` without triggering: the terminal `expired`."""

    expires_at: UTCDateTime
    reason: Text

    def __post_init__(self) -> None:
        at = self.expires_at
        if not (isinstance(at, datetime) and at.tzinfo is UTC):
            force_setattr(self, "expires_at", utc(at, "expires_at"))


class OrderCancelledData(Payload, frozen=True):
    """The order's account cancelled it before it was submitted: the terminal `cancelled`. `from_status`
    is where it stood; `request_id` names the cancel request (`OrderCancelRequested` on the intake)."""

    request_id: UUIDStr
    requested_at: UTCDateTime
    from_status: Status

    def __post_init__(self) -> None:
        at = self.requested_at
        if not (isinstance(at, datetime) and at.tzinfo is UTC):
            force_setattr(self, "requested_at", utc(at, "requested_at"))


class OrderCancelRefusedData(Payload, frozen=True):
    """A cancel came too late: the swap was already `submitted` to a venue, so it runs to its end. The
    order's status does not change (`status` is the status it keeps). Later cancels of the order are
    ignored."""

    request_id: UUIDStr
    requested_at: UTCDateTime
    reason: Literal["submitted"]
    status: Status

    def __post_init__(self) -> None:
        at = self.requested_at
        if not (isinstance(at, datetime) and at.tzinfo is UTC):
            force_setattr(self, "requested_at", utc(at, "requested_at"))
