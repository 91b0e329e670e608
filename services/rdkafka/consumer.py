"""An asyncio face for a librdkafka consumer: its blocking calls (poll, metadata, offsets) run in one
thread of the consumer's own, once per batch, never per record.

`batch` returns as soon as one record (or event) is there and takes everything else already fetched with it
(librdkafka's `consume(n, timeout)` alone would wait for all n or the whole timeout), so a lone record is
handed over at once and a backlog goes in large batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

T = TypeVar("T")


class AsyncConsumer:
    def __init__(self, config: dict[str, Any], *, name: str = "consumer") -> None:
        self._loop = asyncio.get_running_loop()
        self.consumer = Consumer(config)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._closed = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one blocking librdkafka call (it releases the GIL) in this consumer's thread."""
        return await self._loop.run_in_executor(self._thread, fn, *args)

    async def batch(self, max_records: int, timeout_s: float) -> list[Message]:
        """Records (and events such as partition EOF) fetched so far: waits up to `timeout_s` for the
        first, then takes up to `max_records` without waiting."""
        return await self.call(self._batch, max_records, timeout_s)

    def _batch(self, max_records: int, timeout_s: float) -> list[Message]:
        first = self.consumer.poll(timeout_s)
        if first is None:
            return []
        if max_records <= 1:
            return [first]
        return [first, *self.consumer.consume(max_records - 1, 0)]

    async def partitions(self, topic: str, timeout_s: float = 10.0) -> list[int]:
        """The topic's partition numbers, from the broker's metadata (raises when it does not exist)."""
        found = (await self.call(self.consumer.list_topics, topic, timeout_s)).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise KafkaException(found.error if found is not None else KafkaError(KafkaError._UNKNOWN_TOPIC))
        return sorted(found.partitions)

    async def watermarks(self, topic: str, partition: int, timeout_s: float = 10.0) -> tuple[int, int]:
        """(low, high) of a partition; high is the last stable offset for a read_committed consumer
        (librdkafka's ListOffsets carries the consumer's isolation level)."""
        low, high = await self.call(
            self.consumer.get_watermark_offsets, TopicPartition(topic, partition), timeout_s, False
        )
        return int(low), int(high)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.call(self.consumer.close)
        finally:
            self._thread.shutdown(wait=False)
