"""Every error the contract raises, in one place so a consumer can import what it catches from one module.

Decoding (`EventDecodeError`: dead-letter the record), building (`EventValidationError`: a bug in the
producer) and applying (`LifecycleError`: drop a `DuplicateEvent`, investigate the rest) are separate roots
because callers handle them differently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from events.envelope import Event, Status


class EventValidationError(ValueError):
    """An event built in code breaks the contract; raised before it can reach a log that keeps it forever."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EventDecodeError(Exception):
    """A record that is not a valid event of this contract; consumers dead-letter it and move on."""

    def __init__(self, reason: str, raw: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


class UnknownEventType(EventDecodeError):
    """The record's `type` is not an event this code knows (a newer producer, or another stream)."""

    def __init__(self, reason: str, raw: bytes = b"", event_type: str = "") -> None:
        super().__init__(reason, raw)
        self.event_type = event_type


class InvalidEvent(EventDecodeError):
    """The record is not JSON, not an event, or breaks a constraint of its type."""


class LifecycleError(Exception):
    """An event that cannot be applied to the order's current state."""

    def __init__(self, message: str, *, order_id: str, seq: int) -> None:
        super().__init__(message)
        self.order_id = order_id
        self.seq = seq


class IllegalTransition(LifecycleError):
    """The event type is not allowed from the order's status (or the order is already terminal)."""

    def __init__(self, status: Status | None, event: Event) -> None:
        super().__init__(
            f"order {event.order_id}: {event.type} (seq {event.seq}) is illegal from status {status}",
            order_id=event.order_id,
            seq=event.seq,
        )
        self.status = status
        self.event_type = event.type


class DuplicateEvent(LifecycleError):
    """seq <= last applied seq: a redelivery. Consumers drop it."""

    def __init__(self, event: Event, last_seq: int) -> None:
        super().__init__(
            f"order {event.order_id}: seq {event.seq} already applied (last {last_seq})",
            order_id=event.order_id,
            seq=event.seq,
        )
        self.last_seq = last_seq


class SequenceGap(LifecycleError):
    """seq > last applied seq + 1: events are missing in between, so applying this one would skip them."""

    def __init__(self, event: Event, expected: int) -> None:
        super().__init__(
            f"order {event.order_id}: got seq {event.seq}, expected {expected}",
            order_id=event.order_id,
            seq=event.seq,
        )
        self.expected = expected


class WrongOrder(LifecycleError):
    """The event belongs to another order."""

    def __init__(self, event: Event, expected_order_id: str) -> None:
        super().__init__(
            f"event of order {event.order_id} applied to order {expected_order_id}",
            order_id=event.order_id,
            seq=event.seq,
        )
        self.expected_order_id = expected_order_id
