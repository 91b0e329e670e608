"""The router's memory of its orders, kept in a compacted topic written inside its transactions.

Key = order id, value = the order's `Tracked` as JSON: the state topic is co-partitioned with the intake and
the event log, so the router that owns intake partition p restores exactly partition p of it. Compaction
keeps one record per order; its retention bounds how long finished orders are remembered for dropping
duplicate requests (see `events.topics`).
"""

from __future__ import annotations

import asyncio

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.router.flow import Tracked

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Tracked)


def encode_tracked(tracked: Tracked) -> bytes:
    return _encoder.encode(tracked)


def decode_tracked(raw: bytes) -> Tracked:
    return _decoder.decode(raw)


async def restore(bootstrap: str, topic: str, partition: int, timeout: float = 60.0) -> dict[str, Tracked]:
    """Read partition `partition` of the state topic to its end (committed records only) and return each
    order's latest state. An order whose last record is a tombstone is absent."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    state: dict[str, Tracked] = {}
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        # With read_committed, end_offsets is the last stable offset: everything before it is decided.
        end = (await consumer.end_offsets([tp]))[tp]
        async with asyncio.timeout(timeout):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
                for record in batch.get(tp, ()):
                    key = (record.key or b"").decode()
                    if record.value is None:
                        state.pop(key, None)
                    else:
                        state[key] = decode_tracked(record.value)
    finally:
        await consumer.stop()
    return state
