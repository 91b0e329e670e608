"""Follows the order event log for the order view: no group, nothing committed, `read_committed`.

It starts `warmup` records before the end of each partition (so a restarted API knows the orders in flight
without replaying history) and reads on from there. Each record is decoded loosely, just the envelope
fields the tracker needs (about a microsecond with msgspec), never the payload. If it falls more than
`max_behind` records behind on a partition it jumps ahead and drops that partition's orders from the view
(their news was skipped) rather than report stale orders as stuck; `gaps` in the report counts such jumps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.lag.orders import OrderTracker

log = logging.getLogger("oee.lag")


class _Envelope(msgspec.Struct):
    type: str
    order_id: str
    seq: int
    occurred_at: datetime


_decode = msgspec.json.Decoder(_Envelope).decode


class LogFollower:
    def __init__(
        self, bootstrap: str, topic: str, tracker: OrderTracker, warmup: int = 2000, max_behind: int = 200_000
    ) -> None:
        self.topic = topic
        self.tracker = tracker
        self.warmup = warmup
        self.max_behind = max_behind
        self.start_offsets: dict[int, int] = {}  # where reading began (after the last jump) per partition
        self.undecodable = 0
        self._bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self, partitions: list[int]) -> None:
        """Position on `partitions` (every partition of the topic). Raises (with nothing left open) when the
        broker does not answer; call again to retry."""
        await self.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            client_id="oee-lag-follow",
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="latest",
            # Dwell times and stuck orders are read on a scale of seconds: let the broker gather a fetch's
            # worth instead of answering at every commit. With the default (1 byte) this follower made one
            # fetch per transaction the routers committed, and was a third of the API process's CPU at a
            # steady 100 orders/s.
            fetch_min_bytes=256 * 1024,
            fetch_max_wait_ms=250,
        )
        try:
            await consumer.start()
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        for tp in tps:
            self._jump(tp, max(starts[tp], ends[tp] - self.warmup))

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def _jump(self, tp: TopicPartition, offset: int) -> None:
        assert self._consumer is not None
        self._consumer.seek(tp, offset)
        self.start_offsets[tp.partition] = offset

    async def run(self) -> None:
        """Read and apply until cancelled."""
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                for record in records:
                    self._apply(tp.partition, record.value)
            await asyncio.sleep(0)  # let requests in between large batches

    def _apply(self, partition: int, value: bytes | None) -> None:
        try:
            e = _decode(value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.undecodable += 1
            return
        self.tracker.apply(e.order_id, e.seq, e.type, e.occurred_at.timestamp(), partition)

    async def keep_up(self, ends: Mapping[int, int]) -> None:
        """Jump ahead on partitions more than `max_behind` records behind `ends` (last stable offsets)."""
        if self._consumer is None:
            return
        for partition, end in ends.items():
            tp = TopicPartition(self.topic, partition)
            if tp not in self._consumer.assignment():
                continue
            position = await self._consumer.position(tp)
            if end - position > self.max_behind:
                log.warning(
                    "order view fell %d records behind on partition %d; skipping ahead",
                    end - position,
                    partition,
                )
                self._jump(tp, max(position, end - self.warmup))
                self.tracker.forget_partition(partition)
