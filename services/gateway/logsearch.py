"""History from the log itself, for when PostgreSQL lacks it (projector behind, down, or not deployed).

A search reads one partition backwards, a chunk at a time, from just below where the caller's knowledge
starts, and keeps the records whose key is the order id. It stops as soon as it found an event at or below
the first seq the caller misses (everything after that event up to `end` has been read by then), at the
caller's lower bound, or after `lookback` records: a search costs a bounded amount whatever the client asks.
Searches of the same partition that wait at the same time share one scan.

An order never seen at all (`find_new`) goes through a `KeyIndex` instead: the partition is read once, up
to the tail window's low offset, and only the chunks whose keys include the order's are read back. However
many ids clients look up, each partition costs one look-back plus what the window left behind since.

A caller that stops waiting (its subscription ended) cancels its search: a scan drops it, stops once nobody
waits for it, and an index build stops (keeping what it read) once nobody waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from events.codec import EventDecodeError, decode
from services.gateway.frames import Item, item_for
from services.gateway.keyindex import KeyIndex

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


@dataclass(eq=False)
class _Build:
    """An index build of one partition under way, and how many look-ups wait for it."""

    task: asyncio.Task[None]
    waiters: int = 0


def _key_hashes_into(keys: set[int]) -> Callable[[ConsumerRecord[bytes, bytes]], None]:
    def each(record: ConsumerRecord[bytes, bytes]) -> None:
        keys.add(hash(record.key or b""))

    return each


class LogSearch:
    def __init__(self, bootstrap: str, topic: str, lookback: int, chunk: int = 5000) -> None:
        self.topic = topic
        self.lookback = lookback
        self.chunk = max(1, min(chunk, lookback))
        self.index = KeyIndex(lookback)
        self.searches = 0
        self.records_read = 0
        self.new_lookups = 0  # look-ups of orders never seen (`find_new`)
        self.scanning = False  # a scan is under way
        self._bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None
        self._reading = asyncio.Lock()  # one consumer: one read at a time
        self._pending: dict[int, list[_Request]] = {}
        self._builds: dict[int, _Build] = {}
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    def building(self) -> int:
        """Index builds under way."""
        return sum(not b.task.done() for b in self._builds.values())

    def pending(self) -> int:
        """Searches waiting for a scan (not counting the one under way)."""
        return sum(len(requests) for requests in self._pending.values())

    async def find(self, order_id: str, partition: int, *, start: int, end: int, stop_seq: int) -> list[Item]:
        """The order's events at offsets in [start, end) of `partition` (at most `lookback` below `end`),
        in seq order, reading back from `end` only as far as needed to reach seq `stop_seq`."""
        if end <= start:
            return []
        future: asyncio.Future[list[Item]] = asyncio.get_running_loop().create_future()
        request = _Request(order_id, start, end, stop_seq, future)
        self._pending.setdefault(partition, []).append(request)
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="gateway-log-search")
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.cancel()  # a scan under way drops it, and stops once nobody is left
            waiting = self._pending.get(partition)
            if waiting is not None and request in waiting:
                waiting.remove(request)
                if not waiting:
                    del self._pending[partition]
            raise

    async def find_new(self, order_id: str, partition: int, *, end: int) -> list[Item]:
        """An order never seen: its events below offset `end` of `partition` (the tail window's low when
        the caller started), at most `lookback` records back, in seq order."""
        if end <= 0:
            return []
        self.new_lookups += 1
        try:
            await self._cover(partition, end)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stretches not indexed are searched directly below
            log.warning("indexing partition %d failed: %r", partition, exc)
        found: dict[int, Item] = {}
        for lo, hi in self.index.stretches(partition, order_id.encode(), max(0, end - self.lookback), end):
            for item in await self.find(order_id, partition, start=lo, end=hi, stop_seq=0):
                found.setdefault(item.seq, item)
        return sorted(found.values(), key=lambda i: i.seq)

    async def stop(self) -> None:
        tasks = [b.task for b in self._builds.values()]
        if self._worker is not None:
            tasks.append(self._worker)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for requests in self._pending.values():
            for r in requests:
                if not r.future.done():
                    r.future.cancel()
        if self._consumer is not None:
            await self._consumer.stop()

    # -- the key index ----------------------------------------------------------------------------------
    async def _cover(self, partition: int, end: int) -> None:
        """Extend the index of `partition` up to `end`, sharing the reading with whoever else waits."""
        for _ in range(2):  # a build under way may stop short of `end`: then one more, of our own
            covered = self.index.covered(partition)
            if covered is not None and covered[1] >= end:
                return
            build = self._builds.get(partition)
            if build is None or build.task.done():
                task = asyncio.create_task(self._extend(partition, end), name="gateway-key-index")
                build = self._builds[partition] = _Build(task)
            build.waiters += 1
            try:
                await asyncio.shield(build.task)
            finally:
                build.waiters -= 1
                if build.waiters == 0 and not build.task.done():
                    build.task.cancel()  # nobody waits for it any more: keep what it read, stop there

    async def _extend(self, partition: int, end: int) -> None:
        tp = TopicPartition(self.topic, partition)
        lo = max(await self._beginning(tp), end - self.lookback)
        covered = self.index.covered(partition)
        if covered is not None and lo <= covered[1] < end:
            lo = covered[1]  # continue the indexed stretch (one that does not reach `lo` is replaced)
        while lo < end:
            hi = min(lo + self.chunk, end)
            keys: set[int] = set()
            await self._read(tp, lo, hi, _key_hashes_into(keys))
            self.index.add(partition, lo, hi, keys)
            lo = hi

    # -- scans ------------------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                partition, requests = self._pending.popitem()
                requests = [r for r in requests if not r.future.done()]
                if not requests:
                    continue
                self.scanning = True
                try:
                    await self._scan(partition, requests)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("log search in partition %d failed: %r", partition, exc)
                finally:
                    self.scanning = False
                    for r in requests:  # what was found so far: the caller sees what is still missing
                        if not r.future.done():
                            r.future.set_result(sorted(r.found.values(), key=lambda i: i.seq))

    async def _scan(self, partition: int, requests: list[_Request]) -> None:
        tp = TopicPartition(self.topic, partition)
        begin = await self._beginning(tp)
        by_key: dict[bytes, list[_Request]] = {}
        for r in requests:
            r.start = max(r.start, r.end - self.lookback, begin)
            by_key.setdefault(r.order_id.encode(), []).append(r)
        self.searches += 1
        open_requests = [r for r in requests if r.end > r.start]
        hi = max((r.end for r in open_requests), default=0)

        def keep(record: ConsumerRecord[bytes, bytes]) -> None:
            wanted = by_key.get(record.key or b"")
            if not wanted:
                return
            try:
                event = decode(record.value or b"")
            except EventDecodeError:
                return
            item = item_for(event, partition, record.offset)
            for r in wanted:
                if r.start <= record.offset < r.end:
                    r.found.setdefault(item.seq, item)

        while open_requests:
            lo = max(min(r.start for r in open_requests), hi - self.chunk)
            await self._read(tp, lo, hi, keep)
            for r in open_requests:
                if not r.future.done() and (r.satisfied() or lo <= r.start):
                    r.future.set_result(sorted(r.found.values(), key=lambda i: i.seq))
            # Done, and those whose callers stopped waiting (cancelled): once none is left, neither is the scan.
            open_requests = [r for r in open_requests if not r.future.done()]
            hi = lo

    async def _read(
        self, tp: TopicPartition, lo: int, hi: int, each: Callable[[ConsumerRecord[bytes, bytes]], None]
    ) -> None:
        """Read offsets [lo, hi) of `tp`, handing each record to `each`."""
        async with self._reading:
            consumer = await self._started()
            if consumer.assignment() != {tp}:
                consumer.assign([tp])
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
                    each(record)

    async def _beginning(self, tp: TopicPartition) -> int:
        async with self._reading:
            consumer = await self._started()
            return int((await consumer.beginning_offsets([tp]))[tp])

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
