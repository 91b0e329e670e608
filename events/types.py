"""The event types of an order's life, their registries, and the constructors services use.

Registries are plain dicts keyed by the type name (the JSON `type` tag and the Kafka `type` header):
`EVENT_TYPES` (class), `PAYLOAD_TYPES` (class of `data`), `STATUS` (the order status an event moves to) and
`SCHEMA_VERSION` (derived from each class's `version`: older ones are upcast on read by the upcasters each
class carries, see `events.envelope.Event` and `events.codec`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, TypeVar, overload

import msgspec

from events.envelope import LOCAL_ACCOUNT, Event, Status, Upcaster, new_id, now
from events.errors import EventValidationError
from events.payloads import (
    OrderBuildingData,
    OrderCancelledData,
    OrderCancelRefusedData,
    OrderConfirmedData,
    OrderExpiredData,
    OrderFailedData,
    OrderOpenedData,
    OrderRequestedData,
    OrderRoutingData,
    OrderSubmittedData,
    OrderTriggeredData,
    Payload,
)


def _requested_v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
    """v2 added `data.account_id`; every order before it belongs to the implicit account `local`."""
    data = obj.get("data")
    if isinstance(data, dict):
        data.setdefault("account_id", LOCAL_ACCOUNT)
    return obj


def _unchanged(obj: dict[str, Any]) -> dict[str, Any]:
    """A version that only added optional fields or allowed values: the older object is valid as it is."""
    return obj


class OrderRequested(Event, tag="OrderRequested", kw_only=True, frozen=True):
    """An order was accepted by the ingress (status pending). Always seq 1, never a causation."""

    version: ClassVar[int] = 3
    # v3 added the limit and sniper order types and their fields; a v2 order is a market order as it is.
    upcasters: ClassVar[Mapping[int, Upcaster]] = {1: _requested_v1_to_v2, 2: _unchanged}
    data: OrderRequestedData


class OrderOpened(Event, tag="OrderOpened", kw_only=True, frozen=True):
    """A limit or sniper order rests, waiting for the market (status open)."""

    data: OrderOpenedData


class OrderTriggered(Event, tag="OrderTriggered", kw_only=True, frozen=True):
    """The market reached a resting order's condition (status triggered); routing follows at once."""

    data: OrderTriggeredData


class OrderRouting(Event, tag="OrderRouting", kw_only=True, frozen=True):
    """The router started routing the order (status routing)."""

    data: OrderRoutingData


class OrderBuilding(Event, tag="OrderBuilding", kw_only=True, frozen=True):
    """A venue was chosen from the quotes (status building)."""

    data: OrderBuildingData


class OrderSubmitted(Event, tag="OrderSubmitted", kw_only=True, frozen=True):
    """The swap was submitted to the venue with its slippage bound (status submitted)."""

    data: OrderSubmittedData


class OrderConfirmed(Event, tag="OrderConfirmed", kw_only=True, frozen=True):
    """The venue settled the swap (status confirmed, terminal)."""

    data: OrderConfirmedData


class OrderFailed(Event, tag="OrderFailed", kw_only=True, frozen=True):
    """The order failed (status failed, terminal)."""

    version: ClassVar[int] = 2
    upcasters: ClassVar[Mapping[int, Upcaster]] = {1: _unchanged}  # v2 added the stage `trigger`
    data: OrderFailedData


class OrderExpired(Event, tag="OrderExpired", kw_only=True, frozen=True):
    """A resting order reached its expiry without triggering (status expired, terminal)."""

    data: OrderExpiredData


class OrderCancelled(Event, tag="OrderCancelled", kw_only=True, frozen=True):
    """The order was cancelled before it was submitted (status cancelled, terminal)."""

    data: OrderCancelledData


class OrderCancelRefused(Event, tag="OrderCancelRefused", kw_only=True, frozen=True):
    """A cancel arrived after the swap was submitted: refused, the order carries on (status unchanged)."""

    data: OrderCancelRefusedData


AnyEvent = (
    OrderRequested
    | OrderOpened
    | OrderTriggered
    | OrderRouting
    | OrderBuilding
    | OrderSubmitted
    | OrderConfirmed
    | OrderFailed
    | OrderExpired
    | OrderCancelled
    | OrderCancelRefused
)
"""Every concrete event; the type the decoder reads and what `match` statements cover."""

_CLASSES: tuple[type[Event], ...] = (
    OrderRequested,
    OrderOpened,
    OrderTriggered,
    OrderRouting,
    OrderBuilding,
    OrderSubmitted,
    OrderConfirmed,
    OrderFailed,
    OrderExpired,
    OrderCancelled,
    OrderCancelRefused,
)
for _cls in _CLASSES:
    _cls.type = str(_cls.__struct_config__.tag)

EVENT_TYPES: dict[str, type[Event]] = {cls.type: cls for cls in _CLASSES}
"""Type name -> class, in lifecycle order."""

PAYLOAD_TYPES: dict[str, type[Payload]] = {
    "OrderRequested": OrderRequestedData,
    "OrderOpened": OrderOpenedData,
    "OrderTriggered": OrderTriggeredData,
    "OrderRouting": OrderRoutingData,
    "OrderBuilding": OrderBuildingData,
    "OrderSubmitted": OrderSubmittedData,
    "OrderConfirmed": OrderConfirmedData,
    "OrderFailed": OrderFailedData,
    "OrderExpired": OrderExpiredData,
    "OrderCancelled": OrderCancelledData,
    "OrderCancelRefused": OrderCancelRefusedData,
}

STATUS: dict[str, Status] = {
    "OrderRequested": "pending",
    "OrderOpened": "open",
    "OrderTriggered": "triggered",
    "OrderRouting": "routing",
    "OrderBuilding": "building",
    "OrderSubmitted": "submitted",
    "OrderConfirmed": "confirmed",
    "OrderFailed": "failed",
    "OrderExpired": "expired",
    "OrderCancelled": "cancelled",
}
"""Type name -> the order status the event moves the order to (the seed's status names). An event that
leaves the status as it is (`OrderCancelRefused`) is absent: `status_of(event)` reads it from the event."""

KEEPS_STATUS: frozenset[str] = frozenset({"OrderCancelRefused"})
"""Event types that record something without moving the order: the status stays what the event says."""


def status_of(event: Event) -> Status:
    """The order's status once `event` is applied: the type's status, or the one the event carries."""
    status = STATUS.get(event.type)
    if status is not None:
        return status
    if isinstance(event, OrderCancelRefused):
        return event.data.status
    raise KeyError(f"no status for event type {event.type!r}")


SCHEMA_VERSION: dict[str, int] = {name: cls.version for name, cls in EVENT_TYPES.items()}
"""Type name -> the schema version this code writes, read from the classes (a view for docs and tools: to
add a version, raise the class's `version` and give it an upcaster from the old one)."""

E = TypeVar("E", bound=Event)


def validate(event: E) -> E:
    """Check `event` against the contract exactly as a consumer's decoder will, and return it validated.

    msgspec only enforces constraints when decoding, so this converts the event through its builtin form.
    """
    try:
        return msgspec.convert(msgspec.to_builtins(event), type(event))
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise EventValidationError(f"invalid {event.type}: {exc}") from None


@overload
def new_event(
    kind: type[E],
    *,
    order_id: str,
    seq: int,
    data: Payload | Mapping[str, Any],
    causation_id: str | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> E: ...
@overload
def new_event(
    kind: str,
    *,
    order_id: str,
    seq: int,
    data: Payload | Mapping[str, Any],
    causation_id: str | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> AnyEvent: ...
def new_event(
    kind: type[Event] | str,
    *,
    order_id: str,
    seq: int,
    data: Payload | Mapping[str, Any],
    causation_id: str | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> Event:
    """Build a validated event of `kind` (class or type name), filling id, time and schema version.

    `data` is the payload struct or a plain mapping of its fields. Raises `EventValidationError` for
    anything a consumer would reject, so a bad event never reaches a topic that keeps it forever.
    """
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else kind
    if cls is None or cls not in _CLASSES:
        raise EventValidationError(f"unknown event type {kind!r}")
    payload_cls = PAYLOAD_TYPES[cls.type]
    try:
        if isinstance(data, Mapping):
            data = msgspec.convert(data, payload_cls)
        elif type(data) is not payload_cls:
            raise TypeError(f"data must be {payload_cls.__name__}, got {type(data).__name__}")
        event = cls(
            event_id=event_id or new_id(),
            order_id=order_id,
            seq=seq,
            occurred_at=occurred_at if occurred_at is not None else now(),
            schema_version=cls.version,
            causation_id=causation_id,
            data=data,  # type: ignore[call-arg]
        )
    except (msgspec.ValidationError, TypeError, ValueError, AttributeError) as exc:
        raise EventValidationError(f"invalid {cls.type}: {exc}") from None
    return validate(event)
