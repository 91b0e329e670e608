"""The router's memory of its orders, kept in a compacted topic written inside its transactions.

Key = order id, value = the order's `Tracked` as JSON: the state topic is co-partitioned with the intake and
the event log, so the router that owns intake partition p restores exactly partition p of it. Compaction
keeps one record per order; its retention bounds how long finished orders are remembered for dropping
duplicate requests (see `events.topics`).

One more key per partition, `POSITION_KEY`, holds the intake position every intake transaction moved to
(the first offset not yet processed). It is written in the same transaction as what those records produced,
so it is exact, whereas the consumer group's committed offset is only brought up to it now and then (see
`services.router.worker`): a restarted router skips the records below it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.router.flow import Tracked

log = logging.getLogger("oee.router")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Tracked)
POSITION_KEY = b"~intake-position"  # not a UUID, so never an order id


class _Position(msgspec.Struct):
    next_offset: int


_position_decoder = msgspec.json.Decoder(_Position)


@dataclass
class Restored:
    """A partition's state: each unfinished or recently finished order, and where its intake stands."""

    orders: dict[str, Tracked] = field(default_factory=dict)
    next_offset: int = 0  # the first intake offset not processed yet (0: nothing recorded)


def encode_position(next_offset: int) -> bytes:
    return _encoder.encode(_Position(next_offset))


def encode_tracked(tracked: Tracked) -> bytes:
    return _encoder.encode(tracked)


def decode_tracked(raw: bytes) -> Tracked:
    return _decoder.decode(raw)


async def restore(
    bootstrap: str, topic: str, partition: int, intake_topic: str | None = None, timeout: float = 60.0
) -> Restored:
    """Read partition `partition` of the state topic to its end (committed records only): each order's
    latest state (an order whose last record is a tombstone is absent) and the intake position. A position
    beyond the end of `intake_topic`'s partition belongs to an intake topic that was deleted and created
    again: it is dropped (with a warning) rather than skip the new topic's records."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    restored = Restored()
    state = restored.orders
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        # With read_committed, end_offsets is the last stable offset: everything before it is decided.
        end = (await consumer.end_offsets([tp]))[tp]
        async with asyncio.timeout(timeout):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
                for record in batch.get(tp, ()):
                    if record.key == POSITION_KEY:
                        if record.value is not None:
                            restored.next_offset = _position_decoder.decode(record.value).next_offset
                        continue
                    key = (record.key or b"").decode()
                    if record.value is None:
                        state.pop(key, None)
                    else:
                        state[key] = decode_tracked(record.value)
        if intake_topic is not None and restored.next_offset:
            intake = TopicPartition(intake_topic, partition)
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
