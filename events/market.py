"""The market-data contract: what the venues publish about their pools, keyed by pair.

A venue publishes one event per pool state change it lets out: `PoolPriced` after a step of the pool's
random walk or a swap that moved it, `PoolListed` when a new pool (a new token, or a new pair) is listed.
Both carry the whole state of the pool (`PoolState`: reserves and the fee in force), so a reader needs no
history to price a swap of any size against it: `PoolState.price` does exactly what the venue's quote
does (constant product, the fee taken from the input). The topic's key is the pair (`pair_key`): both
venues' pools of one pair share a partition, in the order they were published.

Like order events, market events are typed msgspec structs with a version, strictly decoded; unlike
them, they have no order and no `seq` (a pool's walk is sampled, not gap-free: `docs/decisions/0018`).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

from events.envelope import (
    UUID_PATTERN,
    FeeBps,
    Name,
    PositiveFloat,
    Side,
    TokenSymbol,
    UTCDateTime,
    UUIDStr,
    Version,
    new_id,
    now,
    utc,
)
from events.errors import EventValidationError, InvalidEvent, UnknownEventType
from events.payloads import Payload

_is_uuid = re.compile(UUID_PATTERN.strip("^$")).fullmatch
PAIR_PATTERN = "^[A-Z0-9]{2,16}/[A-Z0-9]{2,16}$"
Pair = Annotated[
    str,
    Meta(pattern=PAIR_PATTERN, min_length=5, max_length=33, description="TOKEN_A/TOKEN_B, A before B"),
]
Cause = Literal["walk", "swap", "listing"]


def pair_key(token_a: str, token_b: str) -> str:
    """The pair as the topic keys it: both tokens, alphabetical, whichever is base for an order."""
    a, b = sorted((token_a, token_b))
    return f"{a}/{b}"


class PoolState(Payload, frozen=True):
    """A constant-product pool at one moment: `reserve_a` of `token_a` against `reserve_b` of `token_b`
    (token_a sorts before token_b), and the fee it takes from a swap's input now."""

    token_a: TokenSymbol
    token_b: TokenSymbol
    reserve_a: PositiveFloat
    reserve_b: PositiveFloat
    fee_bps: FeeBps

    def __post_init__(self) -> None:
        if not self.token_a < self.token_b:
            raise ValueError(f"token_a {self.token_a!r} must sort before token_b {self.token_b!r}")

    @property
    def pair(self) -> str:
        return f"{self.token_a}/{self.token_b}"

    def reserves(self, base: str, quote: str) -> tuple[float, float]:
        """(base reserve, quote reserve); KeyError for a pair this pool does not trade."""
        if (base, quote) == (self.token_a, self.token_b):
            return self.reserve_a, self.reserve_b
        if (base, quote) == (self.token_b, self.token_a):
            return self.reserve_b, self.reserve_a
        raise KeyError(f"pool {self.pair} does not trade {base}/{quote}")

    def amount_out(self, base: str, quote: str, side: Side, amount_in: float) -> float:
        """What a swap of `amount_in` (base for a sell, quote for a buy) gets out of the pool now."""
        return swap_out(*self.reserves(base, quote), self.fee_bps, side, amount_in)

    def price(self, base: str, quote: str, side: Side, amount_in: float) -> float:
        """The executable price of that swap, quote per base, fees and price impact included."""
        out = self.amount_out(base, quote, side, amount_in)
        return out / amount_in if side == "sell" else amount_in / out

    def best_price(self, base: str, quote: str, side: Side) -> float:
        """The price of an infinitely small swap (the fee, no impact): no swap of any size does better."""
        r_base, r_quote = self.reserves(base, quote)
        keep = 1.0 - self.fee_bps / 1e4
        return r_quote / r_base * keep if side == "sell" else r_quote / r_base / keep

    def depth(self, quote: str) -> float:
        """The pool's reserve of `quote` (what a sniper's `min_liquidity` is compared with)."""
        if quote == self.token_a:
            return self.reserve_a
        if quote == self.token_b:
            return self.reserve_b
        raise KeyError(f"pool {self.pair} holds no {quote}")


def swap_out(r_base: float, r_quote: float, fee_bps: float, side: Side, amount_in: float) -> float:
    """Constant product with the fee taken from the input: `out = r_out * a / (r_in + a)`,
    `a = amount_in * (1 - fee)`. A sell gives base for quote, a buy gives quote for base."""
    if not (math.isfinite(amount_in) and amount_in > 0):
        raise ValueError(f"amount_in must be a positive number, got {amount_in!r}")
    r_in, r_out = (r_base, r_quote) if side == "sell" else (r_quote, r_base)
    net_in = amount_in * (1.0 - fee_bps / 1e4)
    return r_out * net_in / (r_in + net_in)


class MarketEvent(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True, gc=False
):
    """Base of the market events: which venue's pool, its state, when, and why it was published."""

    type: ClassVar[str]
    version: ClassVar[int] = 1
    event_id: UUIDStr
    venue: Name
    pair: Pair
    occurred_at: UTCDateTime
    schema_version: Version
    cause: Cause
    pool: PoolState

    def __post_init__(self) -> None:
        if _is_uuid(self.event_id) is None:
            raise ValueError(f"event_id must be a lower-case canonical UUID, got {self.event_id!r}")
        if self.pair != self.pool.pair:
            raise ValueError(f"pair {self.pair!r} is not the pool's {self.pool.pair!r}")
        at = self.occurred_at
        if not (isinstance(at, datetime) and at.tzinfo is UTC):
            force_setattr(self, "occurred_at", utc(at, "occurred_at"))


class PoolPriced(MarketEvent, tag="PoolPriced", frozen=True, kw_only=True):
    """A pool's state after its price moved: a step of its random walk (`walk`) or a swap (`swap`)."""


class PoolListed(MarketEvent, tag="PoolListed", frozen=True, kw_only=True):
    """A new pool: the first state of a pair on this venue (cause `listing`)."""


AnyMarketEvent = PoolPriced | PoolListed
MARKET_TYPES: dict[str, type[MarketEvent]] = {"PoolPriced": PoolPriced, "PoolListed": PoolListed}
for _name, _cls in MARKET_TYPES.items():
    _cls.type = _name

_ENCODER = msgspec.json.Encoder()
_DECODER: msgspec.json.Decoder[AnyMarketEvent] = msgspec.json.Decoder(AnyMarketEvent)


def new_market_event(
    kind: type[PoolPriced] | type[PoolListed],
    *,
    venue: str,
    pool: PoolState,
    cause: Cause,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> AnyMarketEvent:
    """A validated market event (`EventValidationError` otherwise)."""
    try:
        event = kind(
            event_id=event_id or new_id(),
            venue=venue,
            pair=pool.pair,
            occurred_at=occurred_at if occurred_at is not None else now(),
            schema_version=kind.version,
            cause=cause,
            pool=pool,
        )
        return msgspec.convert(msgspec.to_builtins(event), kind)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise EventValidationError(f"invalid {kind.type}: {exc}") from None


def encode_market(event: MarketEvent) -> bytes:
    return _ENCODER.encode(event)


def market_key(event: MarketEvent) -> bytes:
    return event.pair.encode()


def decode_market(raw: bytes) -> AnyMarketEvent:
    """One market-data record, strictly validated; raises `EventDecodeError` (a subclass) otherwise."""
    try:
        event = _DECODER.decode(raw)
    except Exception as exc:
        kind = None
        try:
            obj = msgspec.json.decode(raw)
            kind = obj.get("type") if isinstance(obj, dict) else None
        except Exception:
            pass
        if isinstance(kind, str) and kind not in MARKET_TYPES:
            raise UnknownEventType(f"unknown market event type {kind!r}", raw, kind) from None
        raise InvalidEvent(f"invalid market event: {exc}", raw) from None
    if event.schema_version != event.version:
        raise InvalidEvent(f"{event.type} schema_version {event.schema_version} is not {event.version}", raw)
    return event


__all__ = [
    "MARKET_TYPES",
    "AnyMarketEvent",
    "MarketEvent",
    "PoolListed",
    "PoolPriced",
    "PoolState",
    "decode_market",
    "encode_market",
    "market_key",
    "new_market_event",
    "pair_key",
    "swap_out",
]
