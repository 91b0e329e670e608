"""Fold a batch of log records into order states, purely: what to write, what to skip, what to dead-letter.

The state machine is `events.lifecycle.apply`; this module only decides what each of its answers means for a
projection: `DuplicateEvent` (seq <= last applied: a redelivery) is skipped and counted, any other
`LifecycleError` (a gap, an illegal transition) and any record that does not decode become dead letters with
the reason, and the batch goes on. No I/O: the live projector and the rebuild share it, with states loaded
from Postgres or held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

from events.codec import decode
from events.errors import DuplicateEvent, EventDecodeError, LifecycleError
from events.lifecycle import OrderState, apply
from events.types import AnyEvent

# The per-record types are NamedTuples: a replay makes millions of them, and a tuple is built several times
# faster than a frozen dataclass.


class Record(Protocol):
    """What the fold reads of a log record."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp_ms(self) -> int | None: ...


class LogRecord(NamedTuple):
    """One record of the event log, as the projector needs it."""

    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int | None = None  # the record's log timestamp (None: not known)


class Decoded(NamedTuple):
    """A record that decoded into an event, with where it sits in the log."""

    event: AnyEvent
    partition: int
    offset: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the projection could not use, and why."""

    partition: int
    offset: int
    reason: str
    raw: bytes | None
    timestamp_ms: int | None = (
        None  # the record's log timestamp, for one that did not decode (no occurred_at)
    )


class Touched(NamedTuple):
    """An order's state after the batch, and the position of the event that produced it."""

    state: OrderState
    partition: int
    offset: int


@dataclass(slots=True)
class Folded:
    """The outcome of folding one batch."""

    applied: list[Decoded] = field(default_factory=list)
    touched: dict[str, Touched] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    after_until: int = 0


def decode_records(records: Iterable[Record]) -> tuple[list[Decoded], list[DeadLetter]]:
    """Decode every record; the undecodable ones become dead letters carrying the decoder's reason."""
    decoded: list[Decoded] = []
    dead: list[DeadLetter] = []
    append = decoded.append
    for r in records:
        value = r.value
        if value is None:
            dead.append(DeadLetter(r.partition, r.offset, "empty record (no value)", None, r.timestamp_ms))
            continue
        try:
            append(Decoded(decode(value), r.partition, r.offset, value))
        except EventDecodeError as exc:
            reason = f"{type(exc).__name__}: {exc.reason}"
            dead.append(DeadLetter(r.partition, r.offset, reason, value, r.timestamp_ms))
    return decoded, dead


def written_by(dead: Sequence[DeadLetter], until: datetime) -> tuple[list[DeadLetter], int]:
    """The undecodable records written at or before `until`, and how many were written after it.

    A point-in-time replay leaves out events that occurred after its instant; a record that did not decode
    has no occurred_at, so its log timestamp stands in. One without a timestamp is kept (nothing says it is
    later)."""
    cut = until.timestamp() * 1000
    kept = [d for d in dead if d.timestamp_ms is None or d.timestamp_ms <= cut]
    return kept, len(dead) - len(kept)


def fold(
    decoded: Iterable[Decoded],
    states: MutableMapping[str, OrderState],
    *,
    until: datetime | None = None,
) -> Folded:
    """Apply `decoded` in log order to `states` (order id -> state, updated in place; absent = no event yet).

    `until` keeps only events that occurred at or before it (point-in-time replays).
    """
    out = Folded()
    applied, touched, get = out.applied, out.touched, states.get
    for d in decoded:
        event = d.event
        if until is not None and event.occurred_at > until:
            out.after_until += 1
            continue
        oid = event.order_id
        try:
            state = apply(get(oid), event)
        except DuplicateEvent:
            out.duplicates += 1
            continue
        except LifecycleError as exc:
            out.dead.append(DeadLetter(d.partition, d.offset, f"{type(exc).__name__}: {exc}", d.raw))
            continue
        states[oid] = state
        applied.append(d)
        touched[oid] = Touched(state, d.partition, d.offset)
    return out
