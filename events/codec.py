"""Events on the wire: compact JSON values, the order id as key, the type and version as headers.

`decode` is on the hot path of every consumer, so the common case is one call into a module-level msgspec
decoder that validates the whole event in C. Only a failure or an old `schema_version` takes the slow path,
which parses the record loosely to say precisely what is wrong, or runs the event class's upcasters.
Whatever the input, `decode` raises `EventDecodeError` (or a subclass) and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from events.envelope import Event, Upcaster
from events.errors import EventDecodeError, InvalidEvent, UnknownEventType
from events.types import EVENT_TYPES, AnyEvent

__all__ = [
    "HEADER_SCHEMA_VERSION",
    "HEADER_TYPE",
    "EventDecodeError",
    "InvalidEvent",
    "UnknownEventType",
    "Upcaster",
    "decode",
    "encode",
    "header_type",
    "headers_for",
    "key_for",
]

HEADER_TYPE = "type"
HEADER_SCHEMA_VERSION = "schema_version"

# Upcasters live on the event classes (`Event.upcasters`, `Event.version`): the decoder chains a class's
# steps up to its `version` and sets `schema_version` itself after each step. The log is never rewritten: old
# records stay as written and are upcast every time they are read.

_ENCODER = msgspec.json.Encoder()
_DECODER: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    """The record value: compact JSON, `type` first, datetimes as RFC 3339 UTC with 'Z'."""
    return _ENCODER.encode(event)


def key_for(event: Event) -> bytes:
    """The record key: the order id, so one order's events share a partition and stay in seq order."""
    return event.order_id.encode()


def headers_for(event: Event) -> list[tuple[str, bytes]]:
    """Record headers that let a consumer skip an event by type without decoding it."""
    return [
        (HEADER_TYPE, event.type.encode()),
        (HEADER_SCHEMA_VERSION, str(event.schema_version).encode()),
    ]


def header_type(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """The event type named in a record's headers, or None when it has no `type` header."""
    for name, value in headers or ():
        if name == HEADER_TYPE and value is not None:
            return value.decode("utf-8", "replace")
    return None


def decode(raw: bytes) -> AnyEvent:
    """Decode and strictly validate one record value, upcasting an older schema version first."""
    try:
        event = _DECODER.decode(raw)
    except Exception as exc:
        return _decode_slow(raw, exc)
    if event.schema_version != event.version:
        return _decode_slow(raw, None)
    return event


def _decode_slow(value: object, error: Exception | None) -> AnyEvent:
    """Explain a failure precisely, or bring an old version up to date; always raises or returns an event."""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
    else:
        raise InvalidEvent(f"expected bytes, got {type(value).__name__}")
    try:
        obj = msgspec.json.decode(raw)
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"invalid UTF-8: {exc}", raw) from None
    except Exception as exc:  # DecodeError, RecursionError on absurd nesting
        if isinstance(error, msgspec.ValidationError):  # e.g. 1e999: the typed decoder knows the field
            raise InvalidEvent(f"invalid event: {error}", raw) from None
        raise InvalidEvent(f"not JSON: {exc}", raw) from None
    if not isinstance(obj, dict):
        raise InvalidEvent(f"expected a JSON object, got {_json_kind(obj)}", raw)
    event_type = obj.get("type")
    if not isinstance(event_type, str):
        raise InvalidEvent("missing or non-string `type`", raw)
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(f"unknown event type {event_type!r}", raw, event_type)
    version = obj.get("schema_version")
    current = EVENT_TYPES[event_type].version
    if type(version) is int and version > current:
        raise InvalidEvent(f"{event_type} schema_version {version} is newer than this code ({current})", raw)
    if type(version) is int and 1 <= version < current:
        return _upcast(obj, event_type, version, current, raw)
    return _strict(raw, raw, f"invalid {event_type}: ")


def _upcast(obj: dict[str, Any], event_type: str, start: int, current: int, raw: bytes) -> AnyEvent:
    """Apply the class's upcaster chain from version `start` to `current`, then validate strictly as usual."""
    upcasters = EVENT_TYPES[event_type].upcasters
    for step in range(start, current):
        upcaster: Upcaster | None = upcasters.get(step)
        if upcaster is None:
            raise InvalidEvent(f"no upcaster registered for {event_type} v{step}", raw)
        try:
            obj = upcaster(obj)
            obj["schema_version"] = step + 1
        except Exception as exc:
            raise InvalidEvent(f"upcasting {event_type} v{step} failed: {exc!r}", raw) from None
    try:
        upcast = _ENCODER.encode(obj)
    except Exception as exc:
        raise InvalidEvent(f"upcast {event_type} is not encodable: {exc!r}", raw) from None
    return _strict(upcast, raw, f"invalid {event_type} after upcasting v{start} to v{current}: ")


def _strict(data: bytes, raw: bytes, prefix: str) -> AnyEvent:
    try:
        return _DECODER.decode(data)
    except Exception as exc:  # ValidationError, or UnicodeDecodeError inside a string
        raise InvalidEvent(f"{prefix}{exc}", raw) from None


def _json_kind(obj: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return kinds.get(type(obj), "null")
