"""The envelope every event carries, and the constrained field types the contract is built from.

The constraints live in the types (``msgspec.Meta``) so that one strict decode validates a whole event in one
pass, and so that the JSON Schema export in ``docs/schemas`` states exactly what the decoder enforces.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec.structs import force_setattr

# Canonical lower-case UUID text: one order id has exactly one spelling, so it is one Kafka key and one row.
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_MAX_FLOAT = sys.float_info.max  # `le=max` rejects inf and NaN and, unlike `lt=inf`, is valid JSON Schema.
_INT32_MAX = 2**31 - 1  # seq and counters land in Postgres `integer` columns.

# The format is checked in `Event.__post_init__` with a precompiled regex: msgspec's `pattern` costs about
# 0.8 µs per field, which doubled the decode time of a whole event. The schema still states the pattern.
UUIDStr = Annotated[
    str,
    msgspec.Meta(
        min_length=36,
        max_length=36,
        extra_json_schema={"pattern": UUID_PATTERN},
        description="lower-case canonical UUID",
    ),
]
_is_uuid = re.compile(UUID_PATTERN.strip("^$")).fullmatch
UTCDateTime = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339, UTC ('Z')")]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0, le=_MAX_FLOAT, description="finite, > 0")]
FiniteFloat = Annotated[float, msgspec.Meta(ge=-_MAX_FLOAT, le=_MAX_FLOAT, description="finite")]
Bps = Annotated[int, msgspec.Meta(ge=0, le=10_000, description="basis points, 0..10000")]
FeeBps = Annotated[float, msgspec.Meta(ge=0, le=10_000, description="basis points, 0..10000 (dynamic fees)")]
Seq = Annotated[int, msgspec.Meta(ge=1, le=_INT32_MAX, description="per-order, 1-based, gap-free")]
Version = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Attempt = Annotated[int, msgspec.Meta(ge=1, le=_INT32_MAX)]
Count = Annotated[int, msgspec.Meta(ge=0, le=_INT32_MAX)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
ACCOUNT_PATTERN = "^[a-z0-9][a-z0-9_-]{0,62}$"
AccountId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=63,
        pattern=ACCOUNT_PATTERN,
        description="the account that placed the order: lower-case letters, digits, '_' and '-'",
    ),
]
LOCAL_ACCOUNT = "local"
"""The one implicit account of `AUTH=off`, and the owner of every order written before accounts existed."""
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]

Status = Literal[
    "pending", "open", "triggered", "routing", "building", "submitted", "confirmed", "failed", "expired",
    "cancelled",
]  # fmt: skip
Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "sniper"]
"""`market` routes at once; `limit` rests until the market reaches its limit price; `sniper` rests until a
pool of its token is listed."""
TOKEN_PATTERN = "^[A-Z0-9]{2,16}$"
TokenSymbol = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=16,
        pattern=TOKEN_PATTERN,
        description="a token symbol: 2 to 16 upper-case letters and digits",
    ),
]


def utc(value: datetime, field: str = "datetime") -> datetime:
    """Return `value` in UTC; a naive datetime is an error because its instant is unknown."""
    if not isinstance(value, datetime):
        raise TypeError(f"{field} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


def now() -> datetime:
    """The current instant, tz-aware UTC: the only clock the contract uses."""
    return datetime.now(UTC)


def new_id() -> str:
    """A random UUID4 as canonical text, about twice as fast as `str(uuid.uuid4())`."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Event(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag_field="type",
    forbid_unknown_fields=True,
    gc=False,
):
    """Base of every event: the flat envelope. Subclasses add `data`, their typed payload.

    `type` is the msgspec tag (the first key in the JSON) and a class attribute, so `event.type` works.
    `causation_id` is the `event_id` of the event this one reacts to (None for an order's first event).

    Each class owns its versions: `version` is the `schema_version` this code writes, and `upcasters` maps
    every older version n to the function that brings its JSON object to version n + 1. The log is never
    rewritten: an old record stays as written and is upcast (`events.codec`) every time it is read.
    """

    type: ClassVar[str]
    version: ClassVar[int] = 1
    upcasters: ClassVar[Mapping[int, Upcaster]] = {}
    event_id: UUIDStr
    order_id: UUIDStr
    seq: Seq
    occurred_at: UTCDateTime
    schema_version: Version
    causation_id: UUIDStr | None

    def __post_init__(self) -> None:
        # Runs on construction and on every decode (msgspec turns a ValueError/TypeError into its
        # ValidationError): check the ids, and normalise any offset to UTC so the encoding ends in 'Z'.
        if (
            _is_uuid(self.event_id) is None
            or _is_uuid(self.order_id) is None
            or (self.causation_id is not None and _is_uuid(self.causation_id) is None)
        ):
            raise ValueError(_bad_ids(self))
        at = self.occurred_at
        if not (isinstance(at, datetime) and at.tzinfo is UTC):
            force_setattr(self, "occurred_at", utc(at, "occurred_at"))


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the JSON object of an event at version n into the object of version n + 1 (it may mutate it)."""


def _bad_ids(event: Event) -> str:
    for name in ("event_id", "order_id", "causation_id"):
        value = getattr(event, name)
        if value is not None and _is_uuid(value) is None:
            return f"{name} must be a lower-case canonical UUID, got {value!r}"
    return "invalid UUID"
