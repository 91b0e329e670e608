"""The trigger engine: the book of resting orders against the market data, and what it asks orders' owners.

It *decides* that an order should fire; it never writes an order's events. A decision goes to the intake
topic as an `OrderTriggerRequested` keyed by the order id, so the router partition that owns the order
applies it in one sequence with everything else about the order (a cancel included) and ignores it when
the order is no longer open. That makes the engine's own guarantee a simple one, at least once:

- a market event counts as handled (`processed`, which bounds the offsets the consumer group may commit:
  `services.triggers.offsets`) only once every request it caused is acknowledged by the broker
  (idempotent producer, acks=all). Killed before that, the engine reads the event again after its restart
  and asks again; the owner ignores a repeat.
- the book is restored at start from the resting topic (compacted: the orders resting now), and the recent
  market (`TRIGGERS_HISTORY_S`) is read back; every restored order is checked against it since it opened.
  An order the engine learns of while it runs gets the same check, so an order is fired by the first
  market event since it opened that crosses it, even if the engine learned of it later.

The engine follows the resting topic (orders opened, and tombstones when they leave `open`) with a consumer
of its own over every partition; market data comes from the Faust agent (`services.triggers.app`) that
owns this process's share of the market-data partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from events.commands import (
    OrderTriggerRequested,
    TriggerRequestData,
    command_headers,
    encode_command,
    new_command,
)
from events.errors import EventDecodeError
from events.market import decode_market
from events.payloads import OrderTriggeredData
from events.resting import RestingOrder, decode_resting
from events.topics import Topics
from services.metrics import triggers as metrics
from services.triggers.book import Book, Fire
from services.triggers.options import TriggerOptions

log = logging.getLogger("oee.triggers")
_NAMESPACE = uuid.UUID("a7c3e1f0-2b4d-4e6f-8a9b-0c1d2e3f4a5b")
PROGRESS_EVERY_S = 5.0


class TriggerEngine:
    def __init__(self, bootstrap: str, topics: Topics, group_id: str, options: TriggerOptions) -> None:
        self.failure: BaseException | None = None  # what stopped the engine, if anything did
        self.bootstrap = bootstrap
        self.topics = topics
        self.group_id = group_id
        self.options = options
        self.book = Book(options.history_s, options.history_max)
        self.ready = asyncio.Event()  # the book is restored: market events may be evaluated
        self.processed: dict[tuple[str, int], int] = {}  # market (topic, partition) -> next offset handled
        self._producer: AIOKafkaProducer | None = None
        self._tail: asyncio.Task[None] | None = None
        self.restored_in_s: float | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Restore the book and the recent market, fire what they cross, then follow the resting topic."""
        started = time.monotonic()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="oee-triggers",
            acks="all",
            enable_idempotence=True,
            linger_ms=1,
        )
        await self._producer.start()
        consumer, ends = await self._restore_book()
        await self._warm_market()
        fires = self.book.catch_up()
        await self.send(fires)
        self.restored_in_s = time.monotonic() - started
        metrics.RESTING.set(len(self.book))
        log.info(
            "trigger engine ready: %d resting orders restored, %d fired on the recent market, in %.2f s",
            len(self.book), len(fires), self.restored_in_s,
        )  # fmt: skip
        self._tail = asyncio.create_task(self._follow(consumer, ends), name="triggers-resting")
        self.ready.set()

    async def stop(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tail
        if self._producer is not None:
            await self._producer.stop()
        log.info("trigger engine stopped")

    @property
    def tail(self) -> asyncio.Task[None] | None:
        return self._tail

    # -- the market -----------------------------------------------------------------------------------------
    async def on_market(self, raw: bytes | None, partition: int, offset: int) -> None:
        """One market-data record, as the agent reads it; counted handled once its requests are acknowledged."""
        key = (self.topics.market_data, partition)
        if key not in self.processed:
            log.info("reading market data of partition %d from offset %d", partition, offset)
        try:
            event = decode_market(raw or b"")
        except EventDecodeError as exc:
            log.warning("market record %s[%d]@%d skipped: %s", key[0], partition, offset, exc.reason)
            self.processed[key] = offset + 1
            return
        before = self.book.evaluated
        fires = self.book.on_market(event)
        metrics.MARKET_EVENTS.inc()
        metrics.EVALUATED.inc(self.book.evaluated - before)
        if fires:
            await self.send(fires)
            metrics.EVENT_TO_REQUEST.observe(max(0.0, time.time() - event.occurred_at.timestamp()))
            metrics.RESTING.set(len(self.book))
        self.processed[key] = offset + 1

    async def send(self, fires: Sequence[Fire]) -> None:
        """Ask each order's owner, and wait until the broker has every request (retrying, never dropping)."""
        if not fires:
            return
        producer = self._producer
        assert producer is not None, "start() first"
        commands = [_command(f) for f in fires]
        delay = 0.1
        while True:
            try:
                futures = [
                    await producer.send(
                        self.topics.requests,
                        encode_command(c),
                        key=c.order_id.encode(),
                        headers=command_headers(c),
                    )
                    for c in commands
                ]
                await asyncio.gather(*futures)
                break
            except KafkaError as exc:  # a repeat is harmless: the owner ignores an order no longer open
                log.warning("trigger requests not acknowledged (%r); sending again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for fire in fires:
            metrics.FIRED.labels("refused" if fire.refusal else "triggered").inc()
            log.info(
                "%s order %s: %s %.8g on %s (bound %.8g)",
                "refused" if fire.refusal else "triggered",
                fire.order.order_id, fire.order.side, fire.price, fire.venue, fire.order.bound,
            )  # fmt: skip

    # -- the resting orders ---------------------------------------------------------------------------------
    async def _restore_book(self) -> tuple[AIOKafkaConsumer, dict[TopicPartition, int]]:
        """Read the resting topic to its end (committed records only): the orders resting now."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        try:
            partitions = await partitions_of(self.bootstrap, self.topics.resting)
            tps = [TopicPartition(self.topics.resting, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            latest: dict[str, RestingOrder | None] = {}
            records, last_log = 0, time.monotonic()
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(*tps, timeout_ms=500, max_records=50_000)
                for rows in batch.values():
                    for r in rows:
                        records += 1
                        latest[(r.key or b"").decode()] = _resting(r.value)
                if time.monotonic() - last_log >= PROGRESS_EVERY_S:
                    last_log = time.monotonic()
                    log.info("restoring the book: %d records read", records)
            self.book.load(o for o in latest.values() if o is not None)
        except BaseException:
            await consumer.stop()
            raise
        return consumer, ends

    async def _follow(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        """Orders opened (added, checked against the recent market) and gone (tombstones) as they come."""
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                fires: list[Fire] = []
                for rows in batch.values():
                    for r in rows:
                        order = _resting(r.value)
                        if order is None:
                            self.book.remove((r.key or b"").decode())
                        else:
                            fires.extend(self.book.add(order))
                if fires:
                    await self.send(fires)
                if batch:
                    metrics.RESTING.set(len(self.book))
        finally:
            await consumer.stop()

    async def _warm_market(self) -> None:
        """The last `history_s` of market data, learned without firing (the book catches up on it next)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = await partitions_of(self.bootstrap, self.topics.market_data)
            tps = [TopicPartition(self.topics.market_data, p) for p in partitions]
            consumer.assign(tps)
            since_ms = int((time.time() - self.options.history_s) * 1000)
            starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            ends = await consumer.end_offsets(tps)
            todo = [tp for tp in tps if starts.get(tp) is not None and starts[tp].offset < ends[tp]]  # type: ignore[union-attr]
            for tp in todo:
                consumer.seek(tp, starts[tp].offset)  # type: ignore[union-attr]
            events = 0
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=500, max_records=10_000)
                for rows in batch.values():
                    for r in rows:
                        with contextlib.suppress(EventDecodeError):
                            self.book.warm(decode_market(r.value or b""))
                            events += 1
                todo = [tp for tp in todo if await consumer.position(tp) < ends[tp]]
            log.info("recent market read: %d events of the last %.0f s", events, self.options.history_s)
        finally:
            await consumer.stop()


def _resting(raw: bytes | None) -> RestingOrder | None:
    if raw is None:
        return None
    try:
        return decode_resting(raw)
    except Exception as exc:  # a record this engine cannot read must not stop it: say so, skip it
        log.error("resting record skipped: %r", exc)
        return None


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """Every partition of `topic` (a consumer knows only the metadata of what it was assigned)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise RuntimeError(f"topic {topic} not found: run `oee topics create`")
    return sorted(p["partition"] for p in described["partitions"])


def _command(fire: Fire) -> OrderTriggerRequested:
    """The request to the order's owner; its id is derived from the order and the market event, so a repeat
    after a restart is recognisably the same request."""
    event = fire.event
    triggered = OrderTriggeredData(
        trigger="listing" if fire.order.order_type == "sniper" else "price",
        venue=fire.venue,
        price=fire.price,
        bound=fire.order.bound,
        market_event_id=event.event_id,
        market_at=event.occurred_at,
        venues=list(fire.venues),
        liquidity=fire.liquidity,
    )
    command = new_command(
        OrderTriggerRequested,
        order_id=fire.order.order_id,
        data=TriggerRequestData(triggered=triggered, refusal=fire.refusal),
        command_id=str(uuid.uuid5(_NAMESPACE, f"{fire.order.order_id}:{event.event_id}")),
        issued_at=datetime.now(UTC),
    )
    assert isinstance(command, OrderTriggerRequested)
    return command
