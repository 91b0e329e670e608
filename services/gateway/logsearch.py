"""History from the log itself, for when PostgreSQL lacks it (projector behind, down, or not deployed).

A search reads one partition backwards, a chunk at a time, from just below where the caller's knowledge
starts, and keeps the records whose key is the order id. It stops as soon as it found an event at or below
the first seq the caller misses (everything after that event up to `end` has been read by then), at the
caller's lower bound, or after `lookback` records: a search costs a bounded amount whatever the client asks.
Searches of the same partition that wait at the same time share one scan.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from events.codec import EventDecodeError, decode
from services.gateway.frames import Item, item_for

log = logging.getLogger("oee.gateway")

__all__ = ["LogSearch"]


@dataclass(eq=False)
class _Request:
    order_id: str
    start: int  # the lowest offset worth reading
    end: int  # read below this offset
    stop_seq: int  # done once an event with seq <= stop_seq is found
    future: asyncio.Future[list[Item]]
    found: dict[int, Item] = field(default_factory=dict)

    def satisfied(self) -> bool:
        return any(seq <= self.stop_seq for seq in self.found)


class LogSearch:
    def __init__(self, bootstrap: str, topic: str, lookback: int, chunk: int = 5000) -> None:
        self.topic = topic
        self.lookback = lookback
        self.chunk = max(1, min(chunk, lookback))
        self.searches = 0
        self.records_read = 0
        self._bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None
        self._pending: dict[int, list[_Request]] = {}
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def find(self, order_id: str, partition: int, *, start: int, end: int, stop_seq: int) -> list[Item]:
        """The order's events at offsets in [start, end) of `partition` (at most `lookback` below `end`),
        in seq order, reading back from `end` only as far as needed to reach seq `stop_seq`."""
        if end <= start:
            return []
        future: asyncio.Future[list[Item]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(partition, []).append(_Request(order_id, start, end, stop_seq, future))
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="gateway-log-search")
        return await asyncio.shield(future)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for requests in self._pending.values():
            for r in requests:
                if not r.future.done():
                    r.future.cancel()
        if self._consumer is not None:
            await self._consumer.stop()

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                partition, requests = self._pending.popitem()
                try:
                    await self._scan(partition, requests)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("log search in partition %d failed: %r", partition, exc)
                finally:
                    for r in requests:  # what was found so far: the caller sees what is still missing
                        if not r.future.done():
                            r.future.set_result(sorted(r.found.values(), key=lambda i: i.seq))

    async def _scan(self, partition: int, requests: list[_Request]) -> None:
        consumer = await self._started()
        tp = TopicPartition(self.topic, partition)
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        by_key: dict[bytes, list[_Request]] = {}
        for r in requests:
            r.start = max(r.start, r.end - self.lookback, begin)
            by_key.setdefault(r.order_id.encode(), []).append(r)
        self.searches += 1
        hi = max(r.end for r in requests)
        open_requests = [r for r in requests if r.end > r.start]
        while open_requests:
            lo = max(min(r.start for r in open_requests), hi - self.chunk)
            await self._read(consumer, tp, lo, hi, by_key)
            for r in open_requests:
                if r.satisfied() or lo <= r.start:
                    r.future.set_result(sorted(r.found.values(), key=lambda i: i.seq))
            open_requests = [r for r in open_requests if not r.future.done()]
            hi = lo

    async def _read(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        lo: int,
        hi: int,
        by_key: dict[bytes, list[_Request]],
    ) -> None:
        """Read offsets [lo, hi) of `tp`, keeping the searched orders' events."""
        consumer.seek(tp, lo)
        deadline = time.monotonic() + 30.0
        while await consumer.position(tp) < hi:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {tp.topic}[{tp.partition}] {lo}..{hi} took over 30 s")
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=self.chunk)
            for record in batch.get(tp, ()):
                if record.offset >= hi:
                    return
                self.records_read += 1
                wanted = by_key.get(record.key or b"")
                if not wanted:
                    continue
                try:
                    event = decode(record.value or b"")
                except EventDecodeError:
                    continue
                item = item_for(event, tp.partition, record.offset)
                for r in wanted:
                    if r.start <= record.offset < r.end:
                        r.found.setdefault(item.seq, item)

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                client_id="oee-gateway-search",
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer
