"""The live source: one consumer per gateway process reading every partition of the event log.

Manual assignment, starting at the end, no consumer group and nothing committed: a gateway has no
position worth keeping, since a reconnecting client says where it stands (`fromSeq`) and history fills the
rest. `read_committed`, because the router appends in transactions and an aborted one must never reach a
client. Each record is decoded once, turned into its frame once, kept in `RecentEvents` and fanned out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from events.codec import EventDecodeError, decode
from services.gateway.frames import Item, item_for
from services.gateway.hub import Hub
from services.gateway.recent import RecentEvents

log = logging.getLogger("oee.gateway")

__all__ = ["LogTail"]

T = TypeVar("T")


class LogTail:
    def __init__(self, bootstrap: str, topic: str, recent_events: int, hub: Hub) -> None:
        self.topic = topic
        self.hub = hub
        self.ready = asyncio.Event()  # set once every partition has a start position
        self.partitions = 0
        self.recent = RecentEvents(0)
        self.events_read = 0
        self.undecodable = 0
        self.last_event_at = 0.0  # wall clock of the last event read
        self.lag_s = 0.0  # how long the last batch's newest record had been in the log when read
        self._recent_events = recent_events
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="latest",
            client_id="oee-gateway-tail",
            # The broker answers a fetch as soon as data is committed; this only bounds an idle wait.
            fetch_max_wait_ms=100,
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Connect and follow in the background: a broker that is down delays readiness, not the start."""
        self._task = asyncio.create_task(self._run(), name="gateway-tail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    @property
    def failed(self) -> BaseException | None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            return self._task.exception()
        return None

    async def _run(self) -> None:
        consumer = self._consumer
        await _retry(consumer.start, "start the log tail")
        partitions = await _retry(lambda: self._partitions(consumer), f"find topic {self.topic}")
        tps = [TopicPartition(self.topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        self.recent = RecentEvents(self._recent_events // partitions)
        for tp in tps:
            self.recent.reset(tp.partition, await consumer.position(tp))
        self.partitions = partitions
        self.ready.set()
        log.info("log tail positioned", extra={"topic": self.topic, "partitions": partitions})
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            except Exception as exc:  # aiokafka retries connections itself; anything else: log, go on
                log.warning("log tail fetch failed: %r", exc)
                await asyncio.sleep(1.0)
                continue
            newest = 0
            for tp, records in batches.items():
                for record in records:
                    item = self._item(tp.partition, record)
                    if item is not None:
                        self.recent.append(item)
                        self.hub.publish(item)
                newest = max(newest, records[-1].timestamp)
            if batches:
                self.last_event_at = time.time()
                self.lag_s = max(0.0, self.last_event_at - newest / 1000)

    def _item(self, partition: int, record: ConsumerRecord[bytes, bytes]) -> Item | None:
        self.events_read += 1
        try:
            event = decode(record.value or b"")
        except EventDecodeError as exc:
            # Not an event of this contract: no order stream can show it (the projector dead-letters it).
            self.undecodable += 1
            log.warning(
                "undecodable record skipped",
                extra={"partition": partition, "offset": record.offset, "reason": exc.reason[:200]},
            )
            return None
        return item_for(event, partition, record.offset)

    async def _partitions(self, consumer: AIOKafkaConsumer) -> int:
        # aiokafka has no public "fetch this topic's metadata now": `topics()` fetches but returns names only,
        # and `partitions_for_topic` reads a cache that a manually assigned consumer does not fill yet.
        cluster = await consumer._client.fetch_all_metadata()
        found = cluster.partitions_for_topic(self.topic)
        if not found:
            raise LookupError(f"topic {self.topic} does not exist (yet)")
        return len(found)


async def _retry(
    step: Callable[[], Awaitable[T]], what: str, delay: float = 0.5, max_delay: float = 5.0
) -> T:
    """Run `step` until it succeeds: the gateway waits for its broker and topic instead of crashing."""
    attempt = 0
    while True:
        try:
            return await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempt += 1
            if attempt in (1, 10) or attempt % 60 == 0:
                log.warning("cannot %s yet (attempt %d): %r", what, attempt, exc)
            await asyncio.sleep(min(max_delay, delay * attempt))
