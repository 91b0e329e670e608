"""Building events: the constructors fill the envelope and refuse anything a consumer would reject."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from msgspec.structs import replace

from events.codec import decode, encode
from events.envelope import Event, new_id, now
from events.errors import EventValidationError
from events.examples import example_events
from events.payloads import OrderRequestedData, OrderRoutingData
from events.types import (
    EVENT_TYPES,
    PAYLOAD_TYPES,
    SCHEMA_VERSION,
    STATUS,
    OrderRequested,
    OrderRouting,
    new_event,
    validate,
)

ORDER_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
REQUEST = {
    "order_type": "market",
    "base_token": "SOL",
    "quote_token": "USDC",
    "side": "buy",
    "amount_in": 250.0,
    "slippage_bps": 100,
}


def test_registries_cover_every_event_type_in_lifecycle_order() -> None:
    assert list(EVENT_TYPES) == [
        "OrderRequested", "OrderOpened", "OrderTriggered", "OrderRouting", "OrderBuilding", "OrderSubmitted",
        "OrderConfirmed", "OrderFailed", "OrderExpired", "OrderCancelled", "OrderCancelRefused",
    ]  # fmt: skip
    assert set(PAYLOAD_TYPES) == set(SCHEMA_VERSION) == set(EVENT_TYPES)
    assert set(STATUS) == set(EVENT_TYPES) - {"OrderCancelRefused"}, "a refused cancel moves nothing"
    assert list(STATUS.values()) == [
        "pending", "open", "triggered", "routing", "building", "submitted", "confirmed", "failed", "expired",
        "cancelled",
    ]  # fmt: skip
    assert SCHEMA_VERSION == {name: cls.version for name, cls in EVENT_TYPES.items()}
    assert (SCHEMA_VERSION["OrderRequested"], SCHEMA_VERSION["OrderFailed"]) == (3, 2)
    assert set(SCHEMA_VERSION.values()) == {1, 2, 3}
    for name, cls in EVENT_TYPES.items():
        assert cls.type == name
        assert cls.__struct_config__.tag == name


def test_new_event_fills_the_envelope() -> None:
    before = now()
    event = new_event(OrderRequested, order_id=ORDER_ID, seq=1, data=REQUEST)
    assert isinstance(event, OrderRequested)
    assert event.type == "OrderRequested"
    assert uuid.UUID(event.event_id).version == 4
    assert before <= event.occurred_at <= now()
    assert event.occurred_at.tzinfo is UTC
    assert event.schema_version == SCHEMA_VERSION["OrderRequested"]
    assert event.causation_id is None
    assert event.data == OrderRequestedData(**REQUEST)  # type: ignore[arg-type]
    assert decode(encode(event)) == event


def test_new_event_accepts_a_type_name_and_a_payload_struct() -> None:
    cause = new_id()
    event = new_event(
        "OrderRouting", order_id=ORDER_ID, seq=2, data=OrderRoutingData(attempt=1), causation_id=cause
    )
    assert isinstance(event, OrderRouting)
    assert event.causation_id == cause


def test_event_ids_are_unique_canonical_uuid4() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:100]:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, value)


def test_an_offset_datetime_is_stored_as_utc() -> None:
    paris = timezone(timedelta(hours=1))
    event = new_event(
        OrderRequested,
        order_id=ORDER_ID,
        seq=1,
        data=REQUEST,
        occurred_at=datetime(2025, 3, 14, 10, 0, tzinfo=paris),
    )
    assert event.occurred_at == datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC
    assert b'"occurred_at":"2025-03-14T09:00:00Z"' in encode(event)


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("naive datetime", {"occurred_at": datetime(2025, 3, 14, 9, 0)}, "timezone-aware"),
    ("bad order id", {"order_id": "order-1"}, "order_id"),
    ("upper-case order id", {"order_id": ORDER_ID.upper()}, "order_id"),
    ("seq zero", {"seq": 0}, "seq"),
    ("zero amount", {"data": {**REQUEST, "amount_in": 0.0}}, "amount_in"),
    ("NaN amount", {"data": {**REQUEST, "amount_in": math.nan}}, "amount_in"),
    ("infinite amount", {"data": {**REQUEST, "amount_in": math.inf}}, "amount_in"),
    ("slippage out of range", {"data": {**REQUEST, "slippage_bps": 20_000}}, "slippage_bps"),
    ("same tokens", {"data": {**REQUEST, "quote_token": "SOL"}}, "base_token"),
    ("unknown data field", {"data": {**REQUEST, "limit_price": 1.0}}, "limit_price"),
    ("another type's payload", {"data": OrderRoutingData(attempt=1)}, "OrderRequestedData"),
]


@pytest.mark.parametrize(("name", "changes", "reason"), INVALID, ids=[case[0] for case in INVALID])
def test_new_event_refuses_what_a_consumer_would_reject(
    name: str, changes: dict[str, Any], reason: str
) -> None:
    kwargs: dict[str, Any] = {"order_id": ORDER_ID, "seq": 1, "data": REQUEST, **changes}
    with pytest.raises(EventValidationError) as info:
        new_event(OrderRequested, **kwargs)
    assert reason in info.value.reason, info.value.reason


def test_new_event_refuses_an_unknown_kind() -> None:
    with pytest.raises(EventValidationError, match="unknown event type"):
        new_event("OrderAmended", order_id=ORDER_ID, seq=2, data={})
    with pytest.raises(EventValidationError, match="unknown event type"):
        new_event(Event, order_id=ORDER_ID, seq=2, data={})


def test_validate_catches_a_directly_built_bad_event() -> None:
    good = example_events()["OrderBuilding"]
    assert validate(good) == good
    raydium, meteora = good.data.quotes  # type: ignore[attr-defined]
    broken = replace(good, data=replace(good.data, quotes=[replace(raydium, price=math.nan), meteora]))  # type: ignore[attr-defined]
    with pytest.raises(EventValidationError, match="price"):
        validate(broken)


def test_direct_construction_rejects_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        OrderRouting(
            event_id=new_id(),
            order_id=ORDER_ID,
            seq=2,
            occurred_at=datetime(2025, 3, 14),
            schema_version=1,
            causation_id=None,
            data=OrderRoutingData(attempt=1),
        )


def test_events_are_immutable() -> None:
    event = example_events()["OrderRouting"]
    with pytest.raises(AttributeError):
        event.seq = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        event.data.attempt = 2  # type: ignore[misc]
