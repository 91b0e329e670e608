"""One intake partition's router: its transactional producer, its orders' memory, its commits.

Everything a partition appends goes through one Kafka transaction at a time: the lifecycle events, the new
memory of each order (state topic) and, for intake batches, the consumed offsets. A crash before the commit
leaves nothing visible to `read_committed` readers and the intake records are read again; after the commit
the state topic holds what a restarted router needs to carry on. A zombie is fenced by the next owner's
`init_transactions` on the same transactional id (one id per intake partition).

The intake position moves inside every intake transaction, as a record in the state topic
(`statestore.POSITION_KEY`); the consumer group's committed offset follows it only every
`offsets_every_s` (in a transaction that is happening anyway, or on its own when the partition is quiet).
Carrying the offsets costs two more requests per transaction (AddOffsetsToTxn, TxnOffsetCommit) and a write
to `__consumer_offsets` with its marker: more than half of the broker's work per transaction (decision 0006).
The group's offset may therefore lag what was processed; a restarted owner reads from it, and skips every
record below the restored position: nothing is processed twice, nothing after the position is skipped.

A swap goes to the venue only **after** the transaction with its `submitted` event committed (the order is
recorded before the venue is called), so a crash between the two leaves an order the restarted router
finds in its state as `submitted` and reconciles by client order id.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from events.codec import EventDecodeError, decode, encode, headers_for, key_for
from events.envelope import Event
from events.topics import Topics, dead_letter_headers
from events.types import OrderRequested
from services.metrics import router as router_metrics
from services.router import flow
from services.router.flow import Step, Tracked
from services.router.statestore import POSITION_KEY, encode_position, encode_tracked
from services.venue.interface import SwapStatus

log = logging.getLogger("oee.router")


@dataclass(frozen=True, slots=True)
class Record:
    """An intake record as the agent hands it over."""

    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class Outbox:
    """What one transaction appends."""

    events: list[Event] = field(default_factory=list)
    states: list[Tracked] = field(default_factory=list)
    dead: list[tuple[Record, str]] = field(default_factory=list)

    def add(self, step: Step) -> None:
        self.events.extend(step.events)
        self.states.append(step.tracked)

    def __bool__(self) -> bool:
        return bool(self.events or self.states or self.dead)


class PartitionWorker:
    """Owns intake partition `partition` (and the same partition of the event log and state topic)."""

    def __init__(
        self,
        partition: int,
        producer: AIOKafkaProducer,
        topics: Topics,
        state_topic: str,
        group_id: str,
        done_capacity: int = 200_000,
        offsets_every_s: float = 1.0,
    ) -> None:
        self.partition = partition
        self.producer = producer
        self.topics = topics
        self.state_topic = state_topic
        self.group_id = group_id
        self.active: dict[str, Tracked] = {}  # orders not done
        self.done: OrderedDict[str, None] = OrderedDict()  # recent terminal orders: duplicates are ignored
        self.done_capacity = done_capacity
        self.retries: list[tuple[float, str]] = []  # (retry_at, order_id) heap
        self.lock = asyncio.Lock()
        self.closed = False
        self.settlements: list[tuple[str, SwapStatus]] = []  # waiting for the next settlement transaction
        self.settling = False
        self.next_offset = 0  # first intake offset not processed yet (restored from the state topic)
        self.offsets_pending: int | None = None  # processed up to here; the group does not know it yet
        self.offsets_every_s = offsets_every_s
        self.offsets_sent_at = time.monotonic()

    # -- memory ---------------------------------------------------------------------------------------------
    def known(self, order_id: str) -> bool:
        return order_id in self.active or order_id in self.done

    def remember(self, tracked: Tracked) -> None:
        if tracked.phase == "done":
            self.active.pop(tracked.order_id, None)
            self.done[tracked.order_id] = None
            while len(self.done) > self.done_capacity:
                self.done.popitem(last=False)
        else:
            self.active[tracked.order_id] = tracked
            if tracked.phase == "routing" and tracked.retry_at is not None:
                heapq.heappush(self.retries, (tracked.retry_at, tracked.order_id))

    # -- intake ---------------------------------------------------------------------------------------------
    def accept(self, records: Sequence[Record], now: datetime) -> tuple[Outbox, list[Tracked]]:
        """Decode a batch of intake records: new orders start (copy + routing), duplicates are ignored,
        undecodable records go to the dead letters. Returns the outbox so far and the orders to quote."""
        out = Outbox()
        to_quote: list[Tracked] = []
        for record in records:
            if record.offset < self.next_offset:
                continue  # processed before (a restart read from the group's older offset): its output exists
            try:
                event = decode(record.value or b"")
            except EventDecodeError as exc:
                out.dead.append((record, f"{type(exc).__name__}: {exc.reason}"))
                continue
            if not isinstance(event, OrderRequested) or event.seq != 1:
                out.dead.append((record, f"unexpected on the intake topic: {event.type} seq {event.seq}"))
                continue
            if self.known(event.order_id) or any(t.order_id == event.order_id for t in to_quote):
                log.info("duplicate request ignored", extra={"order_id": event.order_id})
                continue
            step = flow.accept(event, now)
            out.events.extend(step.events)
            to_quote.append(step.tracked)
        return out, to_quote

    def due_retries(self, now: float) -> list[Tracked]:
        due = []
        while self.retries and self.retries[0][0] <= now:
            _, order_id = heapq.heappop(self.retries)
            tracked = self.active.get(order_id)
            if tracked is not None and tracked.phase == "routing" and tracked.retry_at is not None:
                due.append(tracked)
        return due

    def next_retry_at(self) -> float | None:
        return self.retries[0][0] if self.retries else None

    # -- commits --------------------------------------------------------------------------------------------
    def offsets_due(self, now: float) -> bool:
        return self.offsets_pending is not None and now - self.offsets_sent_at >= self.offsets_every_s

    async def commit(
        self, out: Outbox, consumed_up_to: int | None = None, *, flush_offsets: bool = False
    ) -> None:
        """Append the outbox and (for intake batches) the new intake position in one transaction, then
        remember the orders' new state. The group's offsets ride along when due, or when `flush_offsets`.
        Any failure aborts the transaction and propagates: the caller stops, and a restarted router carries
        on from the last commit."""
        position = None if consumed_up_to is None else max(consumed_up_to, self.next_offset)
        pending = position if position is not None else self.offsets_pending
        now = time.monotonic()
        send_offsets = pending is not None and (
            flush_offsets or now - self.offsets_sent_at >= self.offsets_every_s
        )
        if not out and position is None and not send_offsets:
            return
        producer = self.producer
        await producer.begin_transaction()
        try:
            sends = []
            for event in out.events:
                sends.append(
                    await producer.send(
                        self.topics.events, encode(event), key=key_for(event), headers=headers_for(event)
                    )
                )
            for tracked in out.states:
                key = tracked.order_id.encode()
                # Pinned to this worker's partition: its restore reads exactly this partition back.
                sends.append(
                    await producer.send(
                        self.state_topic, encode_tracked(tracked), key=key, partition=self.partition
                    )
                )
            for record, reason in out.dead:
                headers = dead_letter_headers(
                    self.topics.requests, record.partition, record.offset, reason, list(record.headers)
                )
                sends.append(
                    await producer.send(
                        self.topics.dead_letters, record.value, key=record.key, headers=headers
                    )
                )
                log.warning(
                    "intake record dead-lettered",
                    extra={"partition": record.partition, "offset": record.offset, "reason": reason},
                )
            if position is not None:
                sends.append(
                    await producer.send(
                        self.state_topic,
                        encode_position(position),
                        key=POSITION_KEY,
                        partition=self.partition,
                    )
                )
            if send_offsets:
                tp = TopicPartition(self.topics.requests, self.partition)
                await producer.send_offsets_to_transaction({tp: pending}, self.group_id)
            await producer.commit_transaction()
        except BaseException:
            if not producer._txn_manager.is_fatal_error():  # aiokafka has no public check
                try:
                    await asyncio.shield(producer.abort_transaction())
                except Exception:  # the original error is the one to report
                    log.exception("abort after a failed transaction failed too")
            raise
        router_metrics.observe_commit(out.events, len(out.dead))  # metrics: only what committed
        if position is not None:
            self.next_offset = position
        if send_offsets:
            self.offsets_pending, self.offsets_sent_at = None, now
        elif position is not None:
            self.offsets_pending = position
        for tracked in out.states:
            self.remember(tracked)
        for fut in sends:
            # Every send succeeded if the commit did; surface anything odd rather than assume.
            if fut.done() and fut.exception() is not None:
                raise fut.exception()  # type: ignore[misc]


def utcnow() -> datetime:
    return datetime.now(UTC)


def epoch() -> float:
    return time.time()
