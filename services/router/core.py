"""The router core: one batch of intake records in, lifecycles out. The composition root of the modules
that do the work — each testable without a broker:

- `partitions`: which partitions are ours, their workers, recovery of a partition whose commit failed;
- `worker`: one partition's transactions (events, state, intake position, offsets) and its memory;
- `admission`: the durable record of admitted order ids (one lifecycle per order id, forever);
- `quoting`, `flow`, `routing`: prices from every venue, and the pure steps that turn them into events;
- `resting`: the answers to the requests about an order (triggers, cancels) and its expiry, pure steps;
- `submissions`, `landing`, `reconcile`, `settlements`: swaps to venues after the commit, looked up by
  client order id (never guessed), ended by their settlement or their landing deadline;
- `loops`, `supervision`: the timers, the background tasks, and when to give up.

Faust (see `services.router.app`) owns the consumer group and hands each batch of intake records to
`RouterCore.handle`. Nothing here waits on a venue's execution inside the stream: a partition's intake keeps
flowing while its swaps settle, so thousands of orders can be in flight on one process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from events.topics import Topics
from events.types import OrderRequested
from services.metrics import router as router_metrics
from services.router import flow, loops, resting, statestore
from services.router.admission import Admissions, Candidate, InMemoryAdmissions
from services.router.containment import accept_contained, contain
from services.router.flow import Outcome, Tracked
from services.router.options import RouterOptions
from services.router.partitions import Partitions, ProducerFactory, Restore
from services.router.quoting import Quoter
from services.router.reconcile import Reconciler
from services.router.settlements import Settlements, settle_into
from services.router.statestore import Restored
from services.router.submissions import Submissions
from services.router.supervision import Supervisor
from services.router.txn import KafkaTxnProducer
from services.router.worker import CommitFailed, Intake, Outbox, PartitionWorker, Record, WorkerClosed, utcnow
from services.venue.interface import SwapStatus, Venue

__all__ = ["RouterCore", "RouterOptions"]

log = logging.getLogger("oee.router")


@dataclass
class _Batch:
    """One partition's share of an intake batch, sorted by its worker."""

    worker: PartitionWorker
    intake: Intake


class RouterCore:
    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        state_topic: str,
        group_id: str,
        venues: Mapping[str, Venue],
        options: RouterOptions | None = None,
        producer_factory: ProducerFactory | None = None,
        *,
        admissions: Admissions | None = None,
        restore: Restore | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.state_topic = state_topic
        self.group_id = group_id
        self.venues = dict(venues)
        self.options = options = options or RouterOptions()
        # Without a store the router remembers admitted ids in memory only: tests and benchmarks.
        self.admissions: Admissions = admissions if admissions is not None else InMemoryAdmissions()
        self.extra_loops: list[Callable[[], Awaitable[None]]] = []  # e.g. settlement feeds
        # Makes the intake consumer read partition p again from an offset (the Faust app sets it): records
        # beyond a gap are not taken, and a partition's consumer starts at the restored position.
        self.rewind: Callable[[int, int], Awaitable[bool]] = _no_rewind
        self.supervisor = Supervisor()
        self._wake_lookups = asyncio.Event()
        self.partitions = Partitions(
            topics,
            state_topic,
            group_id,
            options,
            producer_factory or partial(KafkaTxnProducer, bootstrap),
            restore or self._restore,
            self.supervisor,
            on_opened=self._opened,
            on_recovered=self._requeue,
            rewind=lambda p, offset: self.rewind(p, offset),
        )
        self.quoter = Quoter(self.venues, options)
        self.settlements = Settlements(self.partitions.find, self.supervisor, self._settlements_failed)
        self.submissions = Submissions(self.venues, options, self.supervisor, self.settlements.deliver)
        self.reconciler = Reconciler(self.venues, options, self.settlements.deliver, self.submissions.start)
        self._loops: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def _restore(self, p: int) -> Restored:
        return await statestore.restore(
            self.bootstrap,
            self.state_topic,
            p,
            self.topics.requests,
            done_capacity=self.options.memory_orders,
        )

    async def start(self) -> None:
        self.supervisor.start()
        self._loops = [
            asyncio.create_task(
                loops.retries(self.partitions, self._requote, self.spawn), name="router-retries"
            ),
            asyncio.create_task(
                loops.lookups(self.partitions, self.reconciler, self.options, self._wake_lookups),
                name="router-lookups",
            ),
            asyncio.create_task(loops.offsets(self.partitions, self.options), name="router-offsets"),
            asyncio.create_task(
                loops.expiries(self.partitions, self._expire, self.spawn), name="router-expiries"
            ),
            *(asyncio.create_task(loops.forever(loop), name="router-feed") for loop in self.extra_loops),
        ]
        for task in self._loops:
            task.add_done_callback(self._loop_ended)
        # The durable record's schema is applied now, not at the first order (waits while the database is
        # down; admissions wait behind it).
        self.spawn(self.admissions.prepare(), "router-admissions")

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.supervisor.crash(exc)

    async def stop(self) -> None:
        """End the loops and tasks, close every partition's producer and the admissions' pool (a graceful
        stop: whatever was not committed is redone by the partition's next owner)."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.supervisor.stop()
        owned = len(self.partitions.workers)
        await self.partitions.stop()
        await self.admissions.aclose()
        log.info("router stopped: loops ended, %d partition producer(s) closed", owned)

    @property
    def crashed(self) -> asyncio.Future[BaseException]:
        return self.supervisor.crashed

    @property
    def workers(self) -> dict[int, PartitionWorker]:
        return self.partitions.workers

    def spawn(self, coro: Awaitable[None], name: str) -> None:
        """Run `coro` beside the router; if it fails, the router stops (crash-only)."""
        self.supervisor.spawn(coro, name)

    async def assign(self, partitions: set[int]) -> None:
        await self.partitions.assign(partitions)

    def on_settlement(self, status: SwapStatus) -> None:
        """A venue settled a swap (pushed or looked up)."""
        self.settlements.deliver(status)

    def _opened(self, worker: PartitionWorker) -> None:
        self._wake_lookups.set()  # its submitted orders are due now

    def _requeue(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            self.settlements.deliver(outcome)

    def _settlements_failed(self, failure: CommitFailed, outcomes: Sequence[Outcome]) -> None:
        self.partitions.failed(failure, outcomes)

    # -- intake ---------------------------------------------------------------------------------------------
    async def handle(self, records: Sequence[Record]) -> None:
        """Route one batch of intake records. If it cannot (a failure that recovery does not cover), this
        never returns: the process stops, and no later batch can commit offsets past the records."""
        by_partition: dict[int, list[Record]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        try:
            batches = {}
            for p, recs in by_partition.items():
                worker = await self.partitions.worker(p)
                if worker is None:
                    # Fetched before a rebalance took the partition away: its new owner reads them again
                    # from the offset our last transaction committed (nothing of ours commits offsets
                    # outside one).
                    log.info("records of partition %s left to its new owner (rebalance)", p)
                    continue
                batches[p] = batch = _Batch(worker, worker.sort(recs))
                await self._rewind_if_asked(batch)
            admitted = await self._admit(batches.values())
            await asyncio.gather(*(self._route(p, batch, admitted) for p, batch in batches.items()))
        except Exception as exc:
            self.supervisor.crash(exc)
            await asyncio.get_running_loop().create_future()  # until the process is stopped

    async def _rewind_if_asked(self, batch: _Batch) -> None:
        """A gap in what the consumer handed over: make it read again from the position. A rewind that did
        not happen must not count as one (the same gap seen again would pass for an empty stretch)."""
        if batch.intake.rewind_to is not None and not await self.rewind(
            batch.worker.partition, batch.intake.rewind_to
        ):
            batch.worker.last_gap = None

    async def _admit(self, batches: Iterable[_Batch]) -> set[Candidate]:
        """The new orders of these batches that may start: one durable look-up for the whole batch."""
        candidates = [
            Candidate(request.order_id, record.partition, record.offset)
            for batch in batches
            for record, request in batch.intake.new
        ]
        if not candidates:
            return set()
        return await self.admissions.admit(self.topics.requests, candidates)

    async def _route(self, p: int, batch: _Batch, admitted: set[Candidate]) -> None:
        """Commit one partition's share of the batch; after a failed commit, recover the partition and hand
        the records to its new worker (it skips the ones the failed commit turns out to have written)."""
        while True:
            try:
                await self._route_once(batch, admitted)
                return
            except CommitFailed as failure:
                recovery = self.partitions.failed(failure, failure.outcomes)
                if recovery is not None:
                    await asyncio.shield(recovery)
            except WorkerClosed:
                pass
            worker = await self.partitions.worker(p)
            if worker is None:
                return  # not ours any more: the new owner reads these records again
            batch = _Batch(worker, worker.sort(batch.intake.records))
            await self._rewind_if_asked(batch)
            admitted = await self._admit([batch])

    async def _route_once(self, batch: _Batch, admitted: set[Candidate]) -> None:
        worker, intake = batch.worker, batch.intake
        out = intake.out
        refused: list[OrderRequested] = []
        async with worker.lock:
            if worker.closed:
                raise WorkerClosed(f"partition {worker.partition}")
            now = utcnow()
            # This batch's view of each order it touches: requests first (a command about an order always
            # comes after its request in the partition), then the commands in the order they were written.
            touched: dict[str, Tracked] = {}
            to_quote: set[str] = set()  # market orders accepted now, resting orders triggered now
            for record, request in intake.new:
                if Candidate(request.order_id, record.partition, record.offset) in admitted:
                    step = accept_contained(request, now, partial(flow.accept, request, now))
                    self._take(step, out, touched, to_quote)
                else:
                    refused.append(request)
            ignored = 0
            for _, command in intake.commands:
                oid = command.order_id
                current = touched.get(oid) or worker.memory.active.get(oid)
                answer = (
                    None
                    if current is None
                    else contain(current, now, partial(resting.respond, current, command, now))
                )
                if answer is None:
                    ignored += 1
                    continue
                self._take(answer, out, touched, to_quote)
            steps = await self.quoter.steps([touched[oid] for oid in to_quote])
            for step in steps:
                out.events.extend(step.events)
                touched[step.tracked.order_id] = step.tracked
            out.states.extend(touched.values())
            # Outcomes waiting for this partition ride along: one transaction instead of two.
            waiting, worker.outcomes = worker.outcomes, []
            expiries = settle_into(worker, out, waiting)
            try:
                await worker.commit(out, consumed_up_to=intake.consumed_up_to)
            except CommitFailed as failure:
                failure.outcomes = waiting
                raise
        for request in refused:
            log.warning(
                "duplicate request ignored: order id admitted before by another intake record",
                extra={"order_id": request.order_id},
            )
        _count_duplicates(intake.duplicates, len(refused))
        if ignored:
            router_metrics.COMMANDS_IGNORED.inc(ignored)
        if expiries:
            router_metrics.EXPIRATIONS.inc(expiries)
        self._after_commit(worker, steps)

    @staticmethod
    def _take(step: flow.Step, out: Outbox, touched: dict[str, Tracked], to_quote: set[str]) -> None:
        """Add a step's events to the batch; the order's memory after it is written once, at the end."""
        out.events.extend(step.events)
        out.rest(step)
        oid = step.tracked.order_id
        touched[oid] = step.tracked
        if step.tracked.status == "routing" and step.tracked.retry_at is None:
            to_quote.add(oid)
        else:
            to_quote.discard(oid)  # cancelled before its quotes were asked for

    def _after_commit(self, worker: PartitionWorker, steps: Iterable[flow.Step]) -> None:
        recheck = time.time() + self.options.reconcile_after_s
        for step in steps:
            if step.submit:
                worker.memory.look_later(step.tracked.order_id, recheck)
                self.submissions.start(worker, step.tracked)

    async def _requote(self, worker: PartitionWorker, orders: list[Tracked]) -> None:
        try:
            async with worker.lock:
                if worker.closed:
                    return  # the orders come back from the state topic in the partition's next worker
                # Only orders nothing else moved meanwhile (a cancel committed between the timer and the lock).
                orders = [t for t in orders if worker.memory.active.get(t.order_id) is t]
                steps = await self.quoter.steps(orders)
                out = Outbox()
                for step in steps:
                    out.add(step)
                await worker.commit(out)
        except CommitFailed as failure:
            self.partitions.failed(failure)
            return
        except WorkerClosed:
            return
        self._after_commit(worker, steps)

    async def _expire(self, worker: PartitionWorker, orders: list[Tracked]) -> None:
        """Resting orders whose `expires_at` came: `expired`, unless something else moved them first."""
        try:
            async with worker.lock:
                if worker.closed:
                    return  # the next worker restores them, and its timer expires them
                now = utcnow()
                out = Outbox()
                for tracked in orders:
                    current = worker.memory.active.get(tracked.order_id)
                    step = (
                        None
                        if current is None
                        else contain(current, now, partial(resting.expire, current, now))
                    )
                    if step is not None:
                        out.add(step)
                await worker.commit(out)
        except CommitFailed as failure:
            self.partitions.failed(failure)
        except WorkerClosed:
            return


async def _no_rewind(partition: int, offset: int) -> bool:
    """Without a consumer to rewind (tests that hand records to `handle`): the caller hands them again."""
    return True


def _count_duplicates(in_memory: int, durable: int) -> None:
    if in_memory:
        router_metrics.DUPLICATES.labels("memory").inc(in_memory)
    if durable:
        router_metrics.DUPLICATES.labels("durable_record").inc(durable)
