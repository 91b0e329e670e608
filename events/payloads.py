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
    PositiveFloat,
    Side,
    Text,
    UTCDateTime,
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
    """

    order_type: Literal["market"]
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

    def __post_init__(self) -> None:
        if self.base_token == self.quote_token:
            raise ValueError(f"base_token and quote_token are both {self.base_token!r}")


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
    stage: Literal["routing", "execution", "validation"]
    attempts: Count
    venue: Name | None = None
    client_order_id: Ident | None = None
