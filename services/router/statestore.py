"""The router's memory of its orders, kept in a compacted topic written inside its transactions.

Key = order id, value = the order's `Tracked` as JSON: the state topic is co-partitioned with the intake and
the event log, so the router that owns intake partition p restores exactly partition p of it. Compaction
keeps one record per order. Restoring folds the records into an `OrderMemory` as they are read, so it holds
every unfinished order and only a bounded number of finished ones, however long the topic is.

One more key per partition, `POSITION_KEY`, holds the intake position every intake transaction moved to
(the first offset not yet processed). It is written in the same transaction as what those records produced,
so it is exact, whereas the consumer group's committed offset is only brought up to it now and then (see
`services.router.worker`): a restarted router skips the records below it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from events.envelope import Status
from events.payloads import OrderRequestedData
from services.router.flow import Tracked
from services.router.memory import OrderMemory

log = logging.getLogger("oee.router")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Tracked)
POSITION_KEY = b"~intake-position"  # not a UUID, so never an order id
PROGRESS_EVERY_S = 5.0


class _Position(msgspec.Struct):
    next_offset: int


class _Legacy(msgspec.Struct):
    """A state record written before the lifecycle status was stored: the router's phase only."""

    order_id: str
    phase: str
    last_seq: int
    last_event_id: str
    request: OrderRequestedData
    attempts: int = 1
    retry_at: float | None = None
    venue: str | None = None
    limit_price: float | None = None


_position_decoder = msgspec.json.Decoder(_Position)
_legacy_decoder = msgspec.json.Decoder(_Legacy)


@dataclass
class Restored:
    """A partition's state: its orders' memory and where its intake stands."""

    memory: OrderMemory
    next_offset: int = 0  # the first intake offset not processed yet (0: nothing recorded)
    records: int = 0
    intake_start: int = 0  # the intake partition's first offset: where a partition with no position starts

    @property
    def active(self) -> dict[str, Tracked]:
        return self.memory.active


def encode_position(next_offset: int) -> bytes:
    return _encoder.encode(_Position(next_offset))


def encode_tracked(tracked: Tracked) -> bytes:
    return _encoder.encode(tracked)


def decode_tracked(raw: bytes) -> Tracked | str:
    """The order's state; for a finished order written in the legacy form, only its id (all a finished
    order is remembered for)."""
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError:
        old = _legacy_decoder.decode(raw)
    if old.phase == "done":
        return old.order_id
    status: Status = "submitted" if old.phase == "submitted" else "routing"
    return Tracked(
        order_id=old.order_id,
        status=status,
        last_seq=old.last_seq,
        last_event_id=old.last_event_id,
        request=old.request,
        attempts=old.attempts,
        retry_at=old.retry_at,
        venue=old.venue,
        limit_price=old.limit_price,
    )


def fold(restored: Restored, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    """Apply state-topic records (key, value), in offset order, to `restored`."""
    memory = restored.memory
    for key, value in records:
        restored.records += 1
        if key == POSITION_KEY:
            if value is not None:
                restored.next_offset = _position_decoder.decode(value).next_offset
            continue
        order_id = (key or b"").decode()
        if value is None:
            memory.forget(order_id)
            continue
        state = decode_tracked(value)
        if isinstance(state, str):
            memory.finished(state)
        else:
            memory.remember(state)


async def restore(
    bootstrap: str,
    topic: str,
    partition: int,
    intake_topic: str | None = None,
    *,
    done_capacity: int = 200_000,
) -> Restored:
    """Read partition `partition` of the state topic to its end (committed records only), however long that
    takes (progress is logged): each order's latest state (an order whose last record is a tombstone is
    absent) and the intake position. A position beyond the end of `intake_topic`'s partition belongs to an
    intake topic that was deleted and created again: it is dropped (with a warning) rather than skip the
    new topic's records."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    restored = Restored(OrderMemory(done_capacity))
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        # With read_committed, end_offsets is the last stable offset: everything before it is decided.
        end = (await consumer.end_offsets([tp]))[tp]
        started = last_log = time.monotonic()
        while (position := await consumer.position(tp)) < end:
            if time.monotonic() - last_log >= PROGRESS_EVERY_S:
                last_log = time.monotonic()
                log.info(
                    "restoring partition %d: offset %d of %d, %d unfinished orders so far",
                    partition, position, end, len(restored.memory),
                )  # fmt: skip
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            fold(restored, ((r.key, r.value) for r in batch.get(tp, ())))
        if time.monotonic() - started >= PROGRESS_EVERY_S:
            log.info("restored partition %d: %d records in %.1f s", partition, restored.records,
                     time.monotonic() - started)  # fmt: skip
        if intake_topic is not None:
            intake = TopicPartition(intake_topic, partition)
            restored.intake_start = (await consumer.beginning_offsets([intake]))[intake]
        if intake_topic is not None and restored.next_offset:
            end_of_intake = (await consumer.end_offsets([intake]))[intake]
            if restored.next_offset > end_of_intake:
                log.warning(
                    "intake position %d is past the end of %s (%d): the topic was recreated; reading it all",
                    restored.next_offset, intake, end_of_intake,
                )  # fmt: skip
                restored.next_offset = 0
    finally:
        await consumer.stop()
    return restored
