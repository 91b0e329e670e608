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

A worker is used once: when its commit fails it is closed, and the partition gets a new worker (new
producer, state restored) — see `services.router.partitions`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka.structs import TopicPartition

from events.codec import EventDecodeError, encode, headers_for, key_for
from events.commands import AnyCommand, decode_intake
from events.envelope import Event
from events.resting import encode_resting
from events.topics import Topics, dead_letter_headers
from events.types import OrderOpened, OrderRequested
from services.metrics import router as router_metrics
from services.router.flow import Outcome, Step, Tracked
from services.router.memory import OrderMemory
from services.router.resting import resting_record
from services.router.statestore import POSITION_KEY, encode_position, encode_tracked
from services.router.txn import TxnProducer

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
    resting: list[tuple[str, bytes | None]] = field(default_factory=list)  # order id, record or tombstone

    def add(self, step: Step) -> None:
        self.events.extend(step.events)
        self.states.append(step.tracked)
        self.rest(step)

    def rest(self, step: Step) -> None:
        """The resting topic's change, if the step starts or ends the order's rest."""
        if step.rests is True:
            opened = next(e for e in step.events if isinstance(e, OrderOpened))
            record = resting_record(step.tracked, opened.occurred_at)
            self.resting.append((step.tracked.order_id, encode_resting(record)))
        elif step.rests is False:
            self.resting.append((step.tracked.order_id, None))

    def __bool__(self) -> bool:
        return bool(self.events or self.states or self.dead or self.resting)


@dataclass
class Intake:
    """A batch of one partition's intake records, sorted: what to start, what to drop, what is garbage."""

    records: Sequence[Record]
    out: Outbox = field(default_factory=Outbox)
    new: list[tuple[Record, OrderRequested]] = field(default_factory=list)  # not in memory: admit first
    commands: list[tuple[Record, AnyCommand]] = field(default_factory=list)  # cancels, triggers: in order
    duplicates: int = 0  # requests for orders this partition remembers
    consumed_up_to: int | None = None  # the intake position after this batch (None: nothing taken)
    rewind_to: int | None = None  # records are missing from here: the consumer must read again from it


class CommitFailed(Exception):
    """A partition's transaction did not commit (or may not have): its worker is unusable."""

    def __init__(self, worker: PartitionWorker, cause: BaseException) -> None:
        super().__init__(f"partition {worker.partition}: commit failed: {cause!r}")
        self.worker = worker
        self.cause = cause
        self.outcomes: Sequence[Outcome] = ()  # outcomes the failed transaction carried: to hand back


class WorkerClosed(Exception):
    """The worker was closed (partition revoked, or replaced after a failed commit) before it could act."""


class PartitionWorker:
    """Owns intake partition `partition` (and the same partition of the event log and state topic)."""

    def __init__(
        self,
        partition: int,
        producer: TxnProducer,
        topics: Topics,
        state_topic: str,
        group_id: str,
        memory: OrderMemory | None = None,
        offsets_every_s: float = 1.0,
    ) -> None:
        self.partition = partition
        self.producer = producer
        self.topics = topics
        self.state_topic = state_topic
        self.group_id = group_id
        self.memory = memory if memory is not None else OrderMemory(200_000)
        self.lock = asyncio.Lock()
        self.closed = False
        self.outcomes: list[Outcome] = []  # ended swaps waiting for the next transaction (settlements.py)
        self.settling = False  # a task is draining `outcomes`
        self.next_offset = 0  # first intake offset not processed yet (restored from the state topic)
        self.last_gap: tuple[int, int] | None = None  # (offset due, offset handed over) of the last rewind
        self.offsets_pending: int | None = None  # processed up to here; the group does not know it yet
        self.offsets_every_s = offsets_every_s
        self.offsets_sent_at = time.monotonic()

    @property
    def active(self) -> dict[str, Tracked]:
        return self.memory.active

    def holds(self, order_id: str) -> bool:
        """True while this worker is the live owner of the unfinished order."""
        return not self.closed and order_id in self.memory.active

    # -- intake ---------------------------------------------------------------------------------------------
    def sort(self, records: Sequence[Record]) -> Intake:
        """Decode a batch of intake records: records below the position were processed before, duplicates
        of an order in memory are dropped, undecodable records go to the dead letters; commands (cancels,
        triggers) are kept in order for their orders; the rest are new requests, to be admitted durably
        before they start.

        Only a gap-free run from the position is taken. The consumer may hand over a record beyond it (Faust
        can drop records fetched around a rebalance, and the group's offset may be ahead of the position
        when nothing was committed for the partition): the run stops there and `rewind_to` asks for the
        consumer to read again from the position, since moving the position past a record nobody processed
        would lose an acknowledged order. If the consumer, read again, starts at the same offset once more,
        nothing lies in between (the markers of a transactional writer) and the run goes on from there."""
        intake = Intake(records)
        seen: set[str] = set()
        due = self.next_offset
        # In offset order: after a rewind, records fetched before it may come before the ones read again.
        for record in sorted(records, key=lambda r: r.offset):
            if record.offset < due:
                continue  # processed before (a restart read from the group's older offset): its output exists
            if record.offset > due:
                gap = (due, record.offset)
                if gap != self.last_gap:
                    self.last_gap = gap
                    intake.rewind_to = due
                    log.warning(
                        "intake partition %d: offset %d handed over where %d was due; reading again from %d",
                        self.partition, record.offset, due, due,
                    )  # fmt: skip
                    break
                log.info(
                    "intake partition %d: no record between %d and %d (read twice): going on",
                    self.partition, due, record.offset,
                )  # fmt: skip
            due = record.offset + 1
            try:
                event = decode_intake(record.value or b"")
            except EventDecodeError as exc:
                intake.out.dead.append((record, f"{type(exc).__name__}: {exc.reason}"))
                continue
            if not isinstance(event, OrderRequested):
                intake.commands.append((record, event))
                continue
            if event.seq != 1:
                intake.out.dead.append(
                    (record, f"unexpected on the intake topic: {event.type} seq {event.seq}")
                )
                continue
            if event.order_id in seen or self.memory.known(event.order_id):
                log.info("duplicate request ignored", extra={"order_id": event.order_id})
                intake.duplicates += 1
                continue
            seen.add(event.order_id)
            intake.new.append((record, event))
        intake.consumed_up_to = due if due > self.next_offset else None
        return intake

    def due_retries(self, now: float) -> list[Tracked]:
        return self.memory.due_retries(now)

    def next_retry_at(self) -> float | None:
        return self.memory.next_retry_at()

    # -- commits --------------------------------------------------------------------------------------------
    def offsets_due(self, now: float) -> bool:
        return self.offsets_pending is not None and now - self.offsets_sent_at >= self.offsets_every_s

    async def commit(
        self, out: Outbox, consumed_up_to: int | None = None, *, flush_offsets: bool = False
    ) -> None:
        """Append the outbox and (for intake batches) the new intake position in one transaction, then
        remember the orders' new state. The group's offsets ride along when due, or when `flush_offsets`.
        Any failure aborts the transaction and raises `CommitFailed`: this worker is then closed, and its
        partition carries on from what the state topic says was committed."""
        if self.closed:
            raise WorkerClosed(f"partition {self.partition}")
        position = None if consumed_up_to is None else max(consumed_up_to, self.next_offset)
        pending = position if position is not None else self.offsets_pending
        now = time.monotonic()
        send_offsets = pending is not None and (
            flush_offsets or now - self.offsets_sent_at >= self.offsets_every_s
        )
        if not out and position is None and not send_offsets:
            return
        try:
            await self._transaction(out, position, pending if send_offsets else None)
        except BaseException as exc:
            self.closed = True  # whatever happened, this producer's transactions are over
            if isinstance(exc, Exception):
                raise CommitFailed(self, exc) from exc
            raise
        router_metrics.observe_commit(out.events, len(out.dead))  # metrics: only what committed
        if position is not None:
            self.next_offset = position
        if send_offsets:
            self.offsets_pending, self.offsets_sent_at = None, now
        elif position is not None:
            self.offsets_pending = position
        for tracked in out.states:
            self.memory.remember(tracked)

    async def _transaction(self, out: Outbox, position: int | None, offsets: int | None) -> None:
        producer = self.producer
        await producer.begin_transaction()
        try:
            for event in out.events:
                producer.produce(
                    self.topics.events, encode(event), key=key_for(event), headers=headers_for(event)
                )
            for tracked in out.states:
                # Pinned to this worker's partition: its restore reads exactly this partition back.
                producer.produce(
                    self.state_topic,
                    encode_tracked(tracked),
                    key=tracked.order_id.encode(),
                    partition=self.partition,
                )
            for order_id, value in out.resting:
                # Pinned like the state: a tombstone lands in the partition of the record it removes.
                producer.produce(self.topics.resting, value, key=order_id.encode(), partition=self.partition)
            for record, reason in out.dead:
                headers = dead_letter_headers(
                    self.topics.requests, record.partition, record.offset, reason, list(record.headers)
                )
                producer.produce(self.topics.dead_letters, record.value, key=record.key, headers=headers)
                log.warning(
                    "intake record dead-lettered",
                    extra={"partition": record.partition, "offset": record.offset, "reason": reason},
                )
            if position is not None:
                producer.produce(
                    self.state_topic, encode_position(position), key=POSITION_KEY, partition=self.partition
                )
            if offsets is not None:
                tp = TopicPartition(self.topics.requests, self.partition)
                await producer.send_offsets_to_transaction({tp: offsets}, self.group_id)
            # The commit delivers every record first and fails when any was refused (too large, say): a
            # transaction is never committed without one of its records.
            await producer.commit_transaction()
        except BaseException:
            if producer.can_abort():
                try:
                    await asyncio.shield(producer.abort_transaction())
                except Exception:  # the original error is the one to report
                    log.exception("abort after a failed transaction failed too")
            raise


def utcnow() -> datetime:
    return datetime.now(UTC)
