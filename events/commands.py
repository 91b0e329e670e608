"""Requests addressed to an order's owner: the records of the intake topic besides `OrderRequested`.

The router partition that owns an order (key = order id) is the only writer of the order's events. Anyone
else who wants something to happen to an order asks it on the intake topic, keyed by the order id, so the
owner reads every request about one order in one sequence and answers each with events of its own:

- `OrderCancelRequested` (the API, for the order's account): answered with `OrderCancelled`, or
  `OrderCancelRefused` once the swap was submitted; nothing for an order that already ended.
- `OrderTriggerRequested` (the trigger engine, when the market reached a resting order): answered with
  `OrderTriggered` and routing, or `OrderFailed` (stage `trigger`) when it carries a guard's refusal;
  nothing when the order is no longer open (a repeat after a restart, or a cancel got there first).

Commands are not order events: they carry no `seq` (only the owner knows it) and never enter the order event
log themselves. `decode_intake` reads any record of the intake topic.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

from events.codec import decode
from events.envelope import UUID_PATTERN, AccountId, Text, UTCDateTime, UUIDStr, Version, new_id, now, utc
from events.errors import EventDecodeError, EventValidationError, InvalidEvent
from events.payloads import OrderTriggeredData, Payload
from events.types import OrderRequested

_is_uuid = re.compile(UUID_PATTERN.strip("^$")).fullmatch


class Command(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True, gc=False
):
    """Base of every intake command: who it is about (`order_id`, the Kafka key), its own id, when."""

    type: ClassVar[str]
    version: ClassVar[int] = 1
    command_id: UUIDStr
    order_id: UUIDStr
    issued_at: UTCDateTime
    schema_version: Version

    def __post_init__(self) -> None:
        for name in ("command_id", "order_id"):
            if _is_uuid(getattr(self, name)) is None:
                raise ValueError(f"{name} must be a lower-case canonical UUID, got {getattr(self, name)!r}")
        at = self.issued_at
        if not (isinstance(at, datetime) and at.tzinfo is UTC):
            force_setattr(self, "issued_at", utc(at, "issued_at"))


class CancelRequestData(Payload, frozen=True):
    """Who asks: the order is cancelled only for the account that placed it (the API checked it; the owner
    checks again)."""

    account_id: AccountId


class OrderCancelRequested(Command, tag="OrderCancelRequested", frozen=True, kw_only=True):
    """The order's account asked to cancel it (`DELETE /api/orders/{id}`)."""

    data: CancelRequestData


class TriggerRequestData(Payload, frozen=True):
    """What fired the order (`OrderTriggered`'s data to be), or, for a sniper, why its guard refused the
    listing: then the order fails with `refusal` instead of routing."""

    triggered: OrderTriggeredData
    refusal: Annotated[Text, Meta(description="a sniper guard's refusal: the order fails")] | None = None


class OrderTriggerRequested(Command, tag="OrderTriggerRequested", frozen=True, kw_only=True):
    """The trigger engine saw the market reach a resting order (or a listing refused by its guards)."""

    data: TriggerRequestData


AnyCommand = OrderCancelRequested | OrderTriggerRequested
IntakeRecord = OrderRequested | OrderCancelRequested | OrderTriggerRequested
"""Whatever the intake topic may hold."""

COMMAND_TYPES: dict[str, type[Command]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (OrderCancelRequested, OrderTriggerRequested)
}
for _name, _cls in COMMAND_TYPES.items():
    _cls.type = _name

_ENCODER = msgspec.json.Encoder()
_DECODER: msgspec.json.Decoder[IntakeRecord] = msgspec.json.Decoder(IntakeRecord)


def new_command(
    kind: type[OrderCancelRequested] | type[OrderTriggerRequested],
    *,
    order_id: str,
    data: Payload,
    command_id: str | None = None,
    issued_at: datetime | None = None,
) -> AnyCommand:
    """A validated command (`EventValidationError` for anything the router would refuse to read)."""
    try:
        command = kind(
            command_id=command_id or new_id(),
            order_id=order_id,
            issued_at=issued_at if issued_at is not None else now(),
            schema_version=kind.version,
            data=data,  # type: ignore[arg-type]
        )
        return msgspec.convert(msgspec.to_builtins(command), kind)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise EventValidationError(f"invalid {kind.type}: {exc}") from None


def encode_command(command: Command) -> bytes:
    return _ENCODER.encode(command)


def command_headers(command: Command) -> list[tuple[str, bytes]]:
    """The same headers events carry: a consumer can tell a record's type without decoding it."""
    return [("type", command.type.encode()), ("schema_version", str(command.schema_version).encode())]


def _type_of(raw: bytes) -> Any:
    try:
        obj = msgspec.json.decode(raw)
    except Exception:
        return None
    return obj.get("type") if isinstance(obj, dict) else None


def decode_intake(raw: bytes) -> IntakeRecord:
    """One intake record: an order request (upcast like any event) or a command. Raises `EventDecodeError`."""
    try:
        record = _DECODER.decode(raw)
    except Exception:
        record = None
    if isinstance(record, OrderRequested):
        if record.schema_version == record.version:
            return record
        record = None  # an older version: upcast below
    elif record is not None:
        if record.schema_version != record.version:
            raise InvalidEvent(
                f"{record.type} schema_version {record.schema_version} is not {record.version}"
            )
        return record
    if _type_of(raw) in COMMAND_TYPES:
        kind = _type_of(raw)
        try:
            return _DECODER.decode(raw)
        except Exception as exc:
            raise InvalidEvent(f"invalid {kind}: {exc}", raw) from None
    event = decode(raw)  # names the problem, or upcasts an older OrderRequested
    if not isinstance(event, OrderRequested):
        raise InvalidEvent(f"unexpected on the intake topic: {event.type} seq {event.seq}", raw)
    return event


__all__ = [
    "COMMAND_TYPES",
    "AnyCommand",
    "CancelRequestData",
    "Command",
    "EventDecodeError",
    "IntakeRecord",
    "OrderCancelRequested",
    "OrderTriggerRequested",
    "TriggerRequestData",
    "command_headers",
    "decode_intake",
    "encode_command",
    "new_command",
]
