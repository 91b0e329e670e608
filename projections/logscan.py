"""Read a bounded range of the event log (read_committed, no consumer group), in bounded batches.

The rebuild reads from given start positions up to a snapshot of the end offsets, so it terminates while
the log keeps growing, and never holds more than one batch: memory does not grow with the log.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from projections.fold import Record


class TopicMissing(RuntimeError):
    pass


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The topic's partition numbers, from the broker's metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise TopicMissing(f"topic {topic} does not exist (Kafka error code {described['error_code']})")
    return sorted(p["partition"] for p in described["partitions"])


class LogScan:
    """A consumer over every partition of `topic`, for reading ranges of offsets."""

    def __init__(
        self, bootstrap: str, topic: str, *, batch_max: int = 5000, partitions: Sequence[int] | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.batch_max = batch_max
        self.only = None if partitions is None else sorted(partitions)
        self.partitions: list[int] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> LogScan:
        every = await partitions_of(self.bootstrap, self.topic)
        self.partitions = every if self.only is None else [p for p in every if p in self.only]
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            # Big enough for 5,000-record batches from a few partitions, small enough to keep memory flat.
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=2 * 1024 * 1024,
        )
        await self._consumer.start()
        self._consumer.assign([self._tp(p) for p in self.partitions])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "use `async with LogScan(...)`"
        return self._consumer

    async def end_offsets(self) -> dict[int, int]:
        """partition -> end offset (the last stable offset: what read_committed can read now)."""
        ends = await self.consumer.end_offsets([self._tp(p) for p in self.partitions])
        return {tp.partition: n for tp, n in ends.items()}

    async def beginning_offsets(self) -> dict[int, int]:
        starts = await self.consumer.beginning_offsets([self._tp(p) for p in self.partitions])
        return {tp.partition: n for tp, n in starts.items()}

    async def offsets_after(self, at: datetime) -> dict[int, int | None]:
        """partition -> first offset whose record timestamp is >= `at` (None: no such record yet)."""
        millis = int(at.timestamp() * 1000)
        found = await self.consumer.offsets_for_times({self._tp(p): millis for p in self.partitions})
        return {tp.partition: (None if o is None else o.offset) for tp, o in found.items()}

    async def read(
        self, start: Mapping[int, int], end: Mapping[int, int]
    ) -> AsyncIterator[tuple[list[Record], dict[int, int]]]:
        """Yield (records, positions reached) until every partition has reached `end`.

        Records at or past a partition's end are not yielded, and its position is reported as exactly its
        end once reached: a snapshot boundary is exact even when a fetch read beyond it.
        """
        consumer = self.consumer
        todo = {p for p in end if start.get(p, 0) < end[p]}
        for p in self.partitions:
            tp = self._tp(p)
            if p in todo:
                consumer.seek(tp, start.get(p, 0))
                consumer.resume(tp)
            else:
                consumer.pause(tp)
        while todo:
            batch = await consumer.getmany(
                *[self._tp(p) for p in todo], timeout_ms=1000, max_records=self.batch_max
            )
            records: list[Record] = []
            for tp, msgs in batch.items():
                stop = end[tp.partition]
                # aiokafka's records as they are (they have partition, offset, value): no copy per record.
                records.extend(msgs if msgs[-1].offset < stop else (m for m in msgs if m.offset < stop))
            reached: dict[int, int] = {}
            for p in sorted(todo):
                position = await consumer.position(self._tp(p))
                if position >= end[p]:
                    reached[p] = end[p]
                    todo.discard(p)
                    with contextlib.suppress(Exception):
                        consumer.pause(self._tp(p))
                else:
                    reached[p] = position
            yield records, reached
