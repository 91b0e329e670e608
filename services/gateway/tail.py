"""The live source: one consumer per gateway process reading every partition of the event log.

librdkafka's consumer (decision 0016): a record costs about a microsecond to fetch, and its polls run in
the consumer's own thread, one hand-over per batch.

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

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from events.codec import EventDecodeError, decode
from services.gateway.frames import Item, item_for
from services.gateway.hub import Hub
from services.gateway.recent import RecentEvents
from services.rdkafka.config import consumer_config
from services.rdkafka.consumer import AsyncConsumer

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
        self._config = consumer_config(
            bootstrap,
            "oee-gateway-tail",
            **{
                # The broker answers a fetch as soon as committed data is there (fetch.min.bytes 1); this
                # bounds an idle wait only, so a quiet log costs the broker two fetches a second, not ten.
                "fetch.wait.max.ms": 500,
                "topic.metadata.refresh.sparse": True,
            },
        )
        self._consumer: AsyncConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Connect and follow in the background: a broker that is down delays readiness, not the start."""
        self._task = asyncio.create_task(self._run(), name="gateway-tail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.close()

    @property
    def failed(self) -> BaseException | None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            return self._task.exception()
        return None

    async def _run(self) -> None:
        consumer = self._consumer = AsyncConsumer(self._config, name="gateway-tail")
        partitions = await _retry(lambda: consumer.partitions(self.topic, 5.0), f"find topic {self.topic}")
        # Explicit start offsets (the last stable offset of each partition): the recent window's invariant
        # needs the exact offset the tail starts from.
        ends = await _retry(lambda: self._ends(consumer, partitions), "read the log's end offsets")
        consumer.consumer.assign([TopicPartition(self.topic, p, ends[p]) for p in partitions])
        self.recent = RecentEvents(self._recent_events // len(partitions))
        for p in partitions:
            self.recent.reset(p, ends[p])
        self.partitions = len(partitions)
        self.ready.set()
        log.info("log tail positioned", extra={"topic": self.topic, "partitions": self.partitions})
        while True:
            try:
                messages = await consumer.batch(5000, 0.5)
            except KafkaException as exc:  # librdkafka retries connections itself; anything else: log, go on
                log.warning("log tail fetch failed: %r", exc)
                await asyncio.sleep(1.0)
                continue
            newest = 0
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("log tail: %s", err.str())
                    continue
                item = self._item(msg)
                if item is not None:
                    self.recent.append(item)
                    self.hub.publish(item)
                newest = max(newest, msg.timestamp()[1])
            if newest:
                self.last_event_at = time.time()
                self.lag_s = max(0.0, self.last_event_at - newest / 1000)

    async def _ends(self, consumer: AsyncConsumer, partitions: list[int]) -> dict[int, int]:
        return {p: (await consumer.watermarks(self.topic, p, 5.0))[1] for p in partitions}

    def _item(self, msg: Message) -> Item | None:
        self.events_read += 1
        partition, offset = msg.partition() or 0, msg.offset() or 0
        try:
            event = decode(msg.value() or b"")
        except EventDecodeError as exc:
            # Not an event of this contract: no order stream can show it (the projector dead-letters it).
            self.undecodable += 1
            log.warning(
                "undecodable record skipped",
                extra={"partition": partition, "offset": offset, "reason": exc.reason[:200]},
            )
            return None
        return item_for(event, partition, offset)


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
