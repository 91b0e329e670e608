"""Read a bounded range of the event log (read_committed, no consumer group), in bounded batches.

The rebuild reads from given start positions up to a snapshot of the end offsets, so it terminates while
the log keeps growing, and never holds more than one batch: memory does not grow with the log. The consumer
is librdkafka's (decision 0016): a record costs about a microsecond to fetch, where aiokafka's pure-Python
records cost six to eight.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, KafkaError, KafkaException, TopicPartition

from projections.fold import LogRecord, Record
from services.rdkafka.config import consumer_config
from services.rdkafka.consumer import AsyncConsumer


class TopicMissing(RuntimeError):
    pass


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The topic's partition numbers, from the broker's metadata."""
    async with LogScan(bootstrap, topic) as scan:
        return scan.partitions


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
        self._consumer: AsyncConsumer | None = None

    async def __aenter__(self) -> LogScan:
        self._consumer = AsyncConsumer(
            consumer_config(
                self.bootstrap,
                "oee-logscan",
                **{
                    # Reaching a partition's end is an event: how a range that ends in transaction markers
                    # (which are never handed out as records) is known to be read to its end.
                    "enable.partition.eof": True,
                    # Big enough for 5,000-record batches from a few partitions, small enough to keep
                    # memory flat.
                    "fetch.max.bytes": 16 * 1024 * 1024,
                    "max.partition.fetch.bytes": 2 * 1024 * 1024,
                    "queued.max.messages.kbytes": 8 * 1024,  # what librdkafka prefetches: memory stays flat
                },
            ),
            name="logscan",
        )
        try:
            every = await self._consumer.partitions(self.topic, 30.0)
        except KafkaException as exc:
            await self._consumer.close()
            raise TopicMissing(f"topic {self.topic} does not exist ({exc.args[0]})") from exc
        self.partitions = every if self.only is None else [p for p in every if p in self.only]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.close()

    @property
    def consumer(self) -> AsyncConsumer:
        assert self._consumer is not None, "use `async with LogScan(...)`"
        return self._consumer

    async def end_offsets(self) -> dict[int, int]:
        """partition -> end offset (the last stable offset: what read_committed can read now)."""
        return {p: (await self.consumer.watermarks(self.topic, p))[1] for p in self.partitions}

    async def beginning_offsets(self) -> dict[int, int]:
        return {p: (await self.consumer.watermarks(self.topic, p))[0] for p in self.partitions}

    async def offsets_after(self, at: datetime) -> dict[int, int | None]:
        """partition -> first offset whose record timestamp is >= `at` (None: no such record yet)."""
        millis = int(at.timestamp() * 1000)
        asked = [TopicPartition(self.topic, p, millis) for p in self.partitions]
        found = await self.consumer.call(self.consumer.consumer.offsets_for_times, asked, 30.0)
        return {tp.partition: (None if tp.offset < 0 else tp.offset) for tp in found}

    async def read(
        self, start: Mapping[int, int], end: Mapping[int, int]
    ) -> AsyncIterator[tuple[list[Record], dict[int, int]]]:
        """Yield (records, positions reached) until every partition has reached `end`.

        Records at or past a partition's end are not yielded, and its position is reported as exactly its
        end once reached: a snapshot boundary is exact even when a fetch read beyond it.
        """
        consumer = self.consumer
        todo = {p for p in end if start.get(p, 0) < end[p]}
        position = {p: start.get(p, 0) for p in todo}
        # One assignment per range, at explicit offsets (it replaces the previous range's).
        consumer.consumer.assign([TopicPartition(self.topic, p, position[p]) for p in sorted(todo)])
        try:
            while todo:
                records: list[Record] = []
                for msg in await consumer.batch(self.batch_max, 1.0):
                    p = msg.partition()
                    if p not in todo or p is None:
                        continue  # reached already (a record fetched past the end, or a late event)
                    err = msg.error()
                    offset = msg.offset() or 0
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            position[p] = max(position[p], offset)
                            continue
                        raise KafkaException(err)
                    position[p] = max(position[p], offset + 1)
                    if offset < end[p]:
                        kind, stamp = msg.timestamp()
                        known = kind != TIMESTAMP_NOT_AVAILABLE and stamp >= 0
                        records.append(LogRecord(p, offset, msg.value(), stamp if known else None))
                reached: dict[int, int] = {}
                for p in sorted(todo):
                    if position[p] >= end[p]:
                        reached[p] = end[p]
                        todo.discard(p)
                    else:
                        reached[p] = position[p]
                yield records, reached
        finally:
            consumer.consumer.assign([])
