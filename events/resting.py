"""The resting-orders topic: the book of limit and sniper orders waiting for the market.

The router writes an order's `RestingOrder` (key = order id) in the transaction that opens it, and a
tombstone (no value) in the one that takes it out of `open`: triggered, expired, cancelled, or refused by a
sniper guard. The topic is compacted, so reading it to its end gives every order resting now and nothing
else for long; the trigger engine restores its book that way, then follows it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec
from msgspec.structs import force_setattr

from events.envelope import Name, PositiveFloat, Side, UTCDateTime, UUIDStr, utc


class RestingOrder(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """What the trigger engine needs of a resting order. `bound` is the limit price (a sell fires at or above
    it, a buy at or below it) or the sniper's maximum price; `opened_at` is when it started resting (a market
    event before it never fires it)."""

    order_id: UUIDStr
    order_type: Literal["limit", "sniper"]
    base_token: Name
    quote_token: Name
    side: Side
    amount_in: PositiveFloat
    bound: PositiveFloat
    expires_at: UTCDateTime
    opened_at: UTCDateTime
    min_liquidity: PositiveFloat | None = None

    def __post_init__(self) -> None:
        for name in ("expires_at", "opened_at"):
            at = getattr(self, name)
            if not (isinstance(at, datetime) and at.tzinfo is UTC):
                force_setattr(self, name, utc(at, name))


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(RestingOrder)


def encode_resting(order: RestingOrder) -> bytes:
    return _ENCODER.encode(order)


def decode_resting(raw: bytes) -> RestingOrder:
    """Strictly; raises `msgspec.ValidationError` / `msgspec.DecodeError` for a bad record."""
    return _DECODER.decode(raw)
