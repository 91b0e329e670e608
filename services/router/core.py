"""The router: partition workers, the venues, and the loops that move orders along.

Faust (see `services.router.app`) owns the consumer group and hands each batch of intake records to
`RouterCore.handle`. Everything after that is here: quoting both venues concurrently, committing each
partition's transaction, submitting swaps after the commit, applying settlements, retrying quotes with
backoff, and, when a partition is assigned, restoring its orders and reconciling the submitted ones with
the venues by client order id (a swap is looked up, never guessed, and never submitted twice).

Nothing here waits on a venue's execution inside the stream: a partition's intake keeps flowing while its
swaps settle, so thousands of orders can be in flight on one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from events.topics import Topics
from services.router import flow, statestore
from services.router.flow import Tracked
from services.router.worker import Outbox, PartitionWorker, Record, utcnow
from services.venue.interface import (
    SubmitOutcomeUnknown,
    SwapStatus,
    Venue,
    VenueError,
    VenueQuote,
    VenueRejected,
    VenueUnavailable,
)

log = logging.getLogger("oee.router")


@dataclass(frozen=True)
class RouterOptions:
    quote_timeout_s: float = 2.0
    submit_retry_s: float = 0.5  # first wait before resubmitting after VenueUnavailable; doubles, capped
    submit_retry_cap_s: float = 5.0
    reconcile_after_s: float = 10.0  # a submitted order without news this long is looked up
    reconcile_every_s: float = 2.0
    backoff: tuple[float, ...] | None = None  # quote retry delays; None: the seed's 1 s, 2 s
    offsets_every_s: float = 1.0  # how often a partition's group offset follows its position (worker.py)


class RouterCore:
    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        state_topic: str,
        group_id: str,
        venues: Mapping[str, Venue],
        options: RouterOptions | None = None,
        producer_factory: Callable[[str], AIOKafkaProducer] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.state_topic = state_topic
        self.group_id = group_id
        self.venues = dict(venues)
        self.options = options or RouterOptions()
        self.workers: dict[int, PartitionWorker] = {}
        self.owner: dict[str, PartitionWorker] = {}  # order id -> worker, for settlements
        self.submitted_at: dict[str, float] = {}
        self._producer_factory = producer_factory or self._producer
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready: dict[int, asyncio.Event] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._crashed: asyncio.Future[BaseException] | None = None
        self.extra_loops: list[Callable[[], Awaitable[None]]] = []  # e.g. settlement feeds

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _producer(self, transactional_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            # The broker answers CONCURRENT_TRANSACTIONS while the previous transaction of this id finishes;
            # aiokafka's default 100 ms wait before retrying would add itself to most commits.
            retry_backoff_ms=5,
            request_timeout_ms=30_000,
            transaction_timeout_ms=60_000,
        )

    async def start(self) -> None:
        self._crashed = asyncio.get_running_loop().create_future()
        self._loops = [
            asyncio.create_task(self._retry_loop(), name="router-retries"),
            asyncio.create_task(self._reconcile_loop(), name="router-reconcile"),
            asyncio.create_task(self._offsets_loop(), name="router-offsets"),
            *(asyncio.create_task(self._forever(loop), name="router-feed") for loop in self.extra_loops),
        ]

    async def _forever(self, loop: Callable[[], Awaitable[None]]) -> None:
        # A feed that breaks (venue restarting) is reopened; reconciliation covers what it missed.
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("settlement feed interrupted, reopening: %r", exc)
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        for task in [*self._loops, *self._tasks]:
            with contextlib.suppress(BaseException):
                await task
        await self.assign(set())

    @property
    def crashed(self) -> asyncio.Future[BaseException]:
        assert self._crashed is not None, "start() first"
        return self._crashed

    def _crash(self, exc: BaseException) -> None:
        """A failed commit or a fenced producer: stop routing; the supervisor restarts the process and the
        restart carries on from the committed state."""
        log.critical("router stopping after a failure it cannot route around: %r", exc)
        if self._crashed is not None and not self._crashed.done():
            self._crashed.set_result(exc)

    def spawn(self, coro: Awaitable[None], name: str) -> None:
        """Run `coro` beside the router; if it fails, the router stops (crash-only)."""
        self._spawn(coro, name)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self._crash(t.exception())  # type: ignore[arg-type]

        task.add_done_callback(done)

    # -- partitions -----------------------------------------------------------------------------------------
    async def assign(self, partitions: set[int]) -> None:
        """Make this router own exactly `partitions` of the intake (Faust's eager rebalance hands over the
        whole assignment): close the workers of lost partitions, open and restore the new ones."""
        for p in [p for p in self.workers if p not in partitions]:
            worker = self.workers.pop(p)
            self._ready.pop(p, None)
            worker.closed = True
            async with worker.lock:
                for order_id in list(worker.active):
                    self.owner.pop(order_id, None)
                    self.submitted_at.pop(order_id, None)
                await worker.producer.stop()
        new = [p for p in partitions if p not in self.workers]
        for p in new:
            self._ready[p] = asyncio.Event()
        await asyncio.gather(*(self._open(p) for p in new))

    async def _open(self, p: int) -> None:
        producer = self._producer_factory(f"{self.group_id}.{self.topics.requests}.{p}")
        # init_transactions fences a previous owner and aborts its open transaction, so the restore below
        # reads a state topic with nothing left undecided.
        await producer.start()
        worker = PartitionWorker(
            p,
            producer,
            self.topics,
            self.state_topic,
            self.group_id,
            offsets_every_s=self.options.offsets_every_s,
        )
        restored = await statestore.restore(self.bootstrap, self.state_topic, p, self.topics.requests)
        worker.next_offset = restored.next_offset
        # The group's offset may be behind the position: bring it up soon, quiet partitions included.
        if restored.next_offset:
            worker.offsets_pending = restored.next_offset
        for tracked in restored.orders.values():
            worker.remember(tracked)
            if tracked.phase != "done":
                self.owner[tracked.order_id] = worker
        self.workers[p] = worker
        self._ready[p].set()
        submitted = [t for t in worker.active.values() if t.phase == "submitted"]
        log.info(
            "partition assigned",
            extra={"partition": p, "active": len(worker.active), "submitted": len(submitted)},
        )
        if submitted:
            self._spawn(self._reconcile(worker, submitted), f"reconcile-{p}")

    # -- intake ---------------------------------------------------------------------------------------------
    async def handle(self, records: Sequence[Record]) -> None:
        """Route one batch of intake records. If any partition's transaction fails, this never returns:
        the process stops, and no later batch can commit offsets past the records that failed."""
        by_partition: dict[int, list[Record]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        try:
            await asyncio.gather(*(self._handle_partition(p, recs) for p, recs in by_partition.items()))
        except Exception as exc:
            self._crash(exc)
            await asyncio.get_running_loop().create_future()  # until the process is stopped

    async def _handle_partition(self, p: int, records: list[Record]) -> None:
        ready = self._ready.get(p)
        if ready is None:
            # Fetched before a rebalance took the partition away: its new owner reads them again from the
            # offset our last transaction committed (nothing of ours commits offsets outside one).
            log.info("records of partition %s left to its new owner (rebalance)", p)
            return
        await ready.wait()
        worker = self.workers[p]
        async with worker.lock:
            out, to_quote = worker.accept(records, utcnow())
            steps = await self._quote(to_quote)
            for tracked in to_quote:
                self.owner[tracked.order_id] = worker
            out = _merge(out, steps)
            # Settlements waiting for this partition ride along: one transaction instead of two.
            waiting, worker.settlements = worker.settlements, []
            settled = self._settle_into(worker, out, waiting)
            await worker.commit(out, consumed_up_to=max(r.offset for r in records) + 1)
        self._forget(settled)
        self._after_commit(worker, steps)

    async def _quote(self, orders: Sequence[Tracked]) -> list[flow.Step]:
        if not orders:
            return []
        now_quotes = await asyncio.gather(*(self._quotes_for(t) for t in orders))
        now = utcnow()
        return [
            flow.quoted(t, quotes, errors, now, self.options.backoff)
            for t, (quotes, errors) in zip(orders, now_quotes, strict=True)
        ]

    async def _quotes_for(self, tracked: Tracked) -> tuple[list[VenueQuote], list[str]]:
        req = tracked.request
        results = await asyncio.gather(
            *(
                asyncio.wait_for(
                    venue.quote(req.base_token, req.quote_token, req.side, req.amount_in),
                    self.options.quote_timeout_s,
                )
                for venue in self.venues.values()
            ),
            return_exceptions=True,
        )
        quotes: list[VenueQuote] = []
        errors: list[str] = []
        for name, result in zip(self.venues, results, strict=True):
            if isinstance(result, VenueQuote):
                quotes.append(result)
            elif isinstance(result, TimeoutError):
                errors.append(f"{name}: no quote within {self.options.quote_timeout_s:g} s")
            elif isinstance(result, VenueError):
                errors.append(f"{name}: {result.reason}")
            elif isinstance(result, BaseException):
                errors.append(f"{name}: {type(result).__name__}: {result}")
        return quotes, errors

    def _after_commit(self, worker: PartitionWorker, steps: Iterable[flow.Step]) -> None:
        for step in steps:
            tracked = step.tracked
            if tracked.phase == "done":
                self.owner.pop(tracked.order_id, None)
            elif step.submit:
                self.submitted_at[tracked.order_id] = time.monotonic()
                self._spawn(self._submit(worker, tracked), f"submit-{tracked.order_id}")

    # -- venues ---------------------------------------------------------------------------------------------
    async def _submit(self, worker: PartitionWorker, tracked: Tracked) -> None:
        """Hand a recorded swap to its venue; keep trying until the venue has it (same client order id: a
        repeat cannot execute twice). An unknown outcome is looked up before anything else."""
        assert tracked.venue is not None and tracked.limit_price is not None
        venue = self.venues[tracked.venue]
        req = tracked.request
        delay = self.options.submit_retry_s
        while not worker.closed and tracked.order_id in worker.active:
            try:
                await venue.submit(
                    tracked.order_id,
                    req.base_token,
                    req.quote_token,
                    req.side,
                    req.amount_in,
                    tracked.limit_price,
                )
                return  # the settlement arrives through on_settlement (or reconciliation)
            except VenueRejected as exc:
                await self._apply(worker, [(tracked.order_id, _rejected(tracked, exc))])
                return
            except SubmitOutcomeUnknown:
                status = await self._lookup(venue, tracked.order_id)
                if status is not None and status.state != "unknown":
                    self.on_settlement(status)
                    return
            except VenueUnavailable:
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.submit_retry_cap_s)

    async def _lookup(self, venue: Venue, order_id: str) -> SwapStatus | None:
        try:
            return (await venue.status_many([order_id]))[0]
        except VenueError:
            return None

    def on_settlement(self, status: SwapStatus) -> None:
        """A venue settled a swap (pushed or looked up). Settlements are batched per partition: one
        transaction carries every settlement that arrived while the previous one committed. Orders this
        router does not own are ignored: their owner learns of them by its own reconciliation."""
        worker = self.owner.get(status.client_order_id)
        if worker is None or not status.terminal:
            return
        worker.settlements.append((status.client_order_id, status))
        if not worker.settling:
            worker.settling = True
            self._spawn(self._drain_settlements(worker), f"settle-{worker.partition}")

    async def _drain_settlements(self, worker: PartitionWorker) -> None:
        try:
            while worker.settlements and not worker.closed:
                batch, worker.settlements = worker.settlements, []
                await self._apply(worker, batch)
        finally:
            worker.settling = False

    async def _apply(self, worker: PartitionWorker, settlements: Sequence[tuple[str, SwapStatus]]) -> None:
        async with worker.lock:
            if worker.closed:
                return
            out = Outbox()
            settled = self._settle_into(worker, out, settlements)
            if not out:
                return
            await worker.commit(out)
        self._forget(settled)

    def _settle_into(
        self, worker: PartitionWorker, out: Outbox, settlements: Sequence[tuple[str, SwapStatus]]
    ) -> list[str]:
        """Add the terminal events of these settlements to `out`; return the orders they end."""
        now = utcnow()
        settled: list[str] = []
        for order_id, status in settlements:
            tracked = worker.active.get(order_id)
            # The feed and a reconciliation can report the same swap in one batch: settle it once.
            if tracked is None or order_id in settled:
                continue
            step = flow.settled(tracked, status, now)
            if step.events:
                out.add(step)
                settled.append(order_id)
        return settled

    def _forget(self, order_ids: Iterable[str]) -> None:
        for order_id in order_ids:
            self.owner.pop(order_id, None)
            self.submitted_at.pop(order_id, None)

    async def _reconcile(self, worker: PartitionWorker, orders: Sequence[Tracked]) -> None:
        """Ask each venue where these submitted swaps stand; settle the finished ones and resubmit the ones
        the venue never saw (same client order id, so never a second execution)."""
        by_venue: dict[str, list[Tracked]] = {}
        for tracked in orders:
            by_venue.setdefault(tracked.venue or "", []).append(tracked)
        for name, group in by_venue.items():
            venue = self.venues.get(name)
            if venue is None:
                for tracked in group:
                    log.error("order routed to unknown venue %s", name, extra={"order_id": tracked.order_id})
                continue
            try:
                statuses = await venue.status_many([t.order_id for t in group])
            except VenueError as exc:
                log.warning("reconciliation with %s failed, will retry: %s", name, exc)
                continue
            for status in statuses:
                self.on_settlement(status)
            for tracked, status in zip(group, statuses, strict=True):
                self.submitted_at[tracked.order_id] = time.monotonic()
                if status.state == "unknown":
                    self._spawn(self._submit(worker, tracked), f"resubmit-{tracked.order_id}")

    async def _reconcile_loop(self) -> None:
        """A safety net under the settlement feed: submitted orders with no news for a while are looked up."""
        while True:
            await asyncio.sleep(self.options.reconcile_every_s)
            cutoff = time.monotonic() - self.options.reconcile_after_s
            for worker in list(self.workers.values()):
                stale = [
                    t
                    for t in worker.active.values()
                    if t.phase == "submitted" and self.submitted_at.get(t.order_id, 0.0) < cutoff
                ]
                if stale:
                    await self._reconcile(worker, stale)

    async def _offsets_loop(self) -> None:
        """Bring the group's offsets up to the processed position of partitions that went quiet (busy ones
        carry theirs in their next transaction), so lag reads zero once the router caught up."""
        while True:
            await asyncio.sleep(self.options.offsets_every_s / 2)
            for worker in list(self.workers.values()):
                if worker.offsets_due(time.monotonic()) and not worker.lock.locked():
                    try:
                        async with worker.lock:
                            if not worker.closed:
                                await worker.commit(Outbox(), flush_offsets=True)
                    except Exception as exc:  # a fenced or failed producer: stop, like any failed commit
                        self._crash(exc)
                        return

    async def _retry_loop(self) -> None:
        """Quote again the orders whose venues were all down, when their backoff is over."""
        while True:
            now = time.time()
            due_at = [w.next_retry_at() for w in self.workers.values()]
            pending = [t for t in due_at if t is not None]
            await asyncio.sleep(min(max(min(pending) - now, 0.0), 0.25) if pending else 0.1)
            for worker in list(self.workers.values()):
                due = worker.due_retries(time.time())
                if due:
                    self._spawn(self._requote(worker, due), f"requote-{worker.partition}")

    async def _requote(self, worker: PartitionWorker, orders: list[Tracked]) -> None:
        async with worker.lock:
            if worker.closed:
                return
            steps = await self._quote(orders)
            out = _merge(Outbox(), steps)
            await worker.commit(out)
        self._after_commit(worker, steps)


def _merge(out: Outbox, steps: Sequence[flow.Step]) -> Outbox:
    for step in steps:
        out.add(step)
    return out


def _rejected(tracked: Tracked, exc: VenueRejected) -> SwapStatus:
    return SwapStatus(venue=exc.venue, client_order_id=tracked.order_id, state="failed", reason=exc.reason)
