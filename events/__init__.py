"""The event contract every service shares: event types, their encoding, topics and the order lifecycle.

This package imports no service. See `docs/events.md` for the envelope, the topics and every event type.
"""

from events.codec import decode, encode, header_type, headers_for, key_for
from events.envelope import Event, Status, new_id, now
from events.errors import (
    DuplicateEvent,
    EventDecodeError,
    EventValidationError,
    IllegalTransition,
    InvalidEvent,
    LifecycleError,
    SequenceGap,
    UnknownEventType,
    WrongOrder,
)
from events.lifecycle import OrderState, apply, fold, is_terminal, next_event
from events.payloads import (
    OrderBuildingData,
    OrderConfirmedData,
    OrderFailedData,
    OrderRequestedData,
    OrderRoutingData,
    OrderSubmittedData,
    Quote,
)
from events.topics import Topics, TopicSpec, topic_specs
from events.types import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    STATUS,
    AnyEvent,
    OrderBuilding,
    OrderConfirmed,
    OrderFailed,
    OrderRequested,
    OrderRouting,
    OrderSubmitted,
    new_event,
)

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "STATUS",
    "AnyEvent",
    "DuplicateEvent",
    "Event",
    "EventDecodeError",
    "EventValidationError",
    "IllegalTransition",
    "InvalidEvent",
    "LifecycleError",
    "OrderBuilding",
    "OrderBuildingData",
    "OrderConfirmed",
    "OrderConfirmedData",
    "OrderFailed",
    "OrderFailedData",
    "OrderRequested",
    "OrderRequestedData",
    "OrderRouting",
    "OrderRoutingData",
    "OrderState",
    "OrderSubmitted",
    "OrderSubmittedData",
    "Quote",
    "SequenceGap",
    "Status",
    "TopicSpec",
    "Topics",
    "UnknownEventType",
    "WrongOrder",
    "apply",
    "decode",
    "encode",
    "fold",
    "header_type",
    "headers_for",
    "is_terminal",
    "key_for",
    "new_event",
    "new_id",
    "next_event",
    "now",
    "topic_specs",
]
