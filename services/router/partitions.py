"""Which intake partitions this router owns, their workers, and recovering one whose commit failed.

Faust's (eager) rebalance hands over the whole assignment: `assign` closes the workers of lost partitions
and opens the new ones. Opening a partition starts its transactional producer (`init_transactions` fences
the previous owner and aborts its open transaction), then restores that partition of the state topic — so
the restore reads a topic with nothing left undecided — and looks every submitted order up at its venue.

A commit that fails does not stop the process. The partition's worker is closed and the partition
recovered in-process: after a backoff, a new producer (a new `init_transactions`, which also aborts whatever
the failed transaction left open) and a restore, which says whether the failed commit landed or not (the
state topic is read `read_committed`, and the intake position is in it). The caller then hands the records
of its batch back (those below the restored position are skipped) and outcomes it held go to the new
worker. Two exceptions: a *fenced* producer means another router owns the partition now — it is dropped,
the others carry on; and more than `recovery_limit` failures within `recovery_window_s` stop the process
(its supervisor restarts it), so a persistent fault is loud, not a quiet loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

from events.topics import Topics
from services.metrics import router as router_metrics
from services.router.flow import Outcome
from services.router.options import RouterOptions
from services.router.statestore import Restored
from services.router.supervision import RecoveryBudget, Supervisor
from services.router.txn import TxnProducer, is_fenced
from services.router.worker import CommitFailed, PartitionWorker

log = logging.getLogger("oee.router")

ProducerFactory = Callable[[str], TxnProducer]
Restore = Callable[[int], Awaitable[Restored]]


class RecoveryExhausted(RuntimeError):
    """Commits failed more often than the budget allows: the process stops (and is restarted)."""


class Partitions:
    def __init__(
        self,
        topics: Topics,
        state_topic: str,
        group_id: str,
        options: RouterOptions,
        producer_factory: ProducerFactory,
        restore: Restore,
        supervisor: Supervisor,
        on_opened: Callable[[PartitionWorker], None] = lambda w: None,
        on_recovered: Callable[[Sequence[Outcome]], None] = lambda o: None,
        rewind: Callable[[int, int], Awaitable[bool]] | None = None,
    ) -> None:
        self.topics = topics
        self.state_topic = state_topic
        self.group_id = group_id
        self.options = options
        self._factory = producer_factory
        self._restore = restore
        self._supervisor = supervisor
        self._on_opened = on_opened
        self._on_recovered = on_recovered
        self._rewind = rewind
        self.assigned: set[int] = set()
        self.workers: dict[int, PartitionWorker] = {}
        self._ready: dict[int, asyncio.Event] = {}  # set: open (or gone); clear: opening or recovering
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._recovering: dict[int, asyncio.Task[None]] = {}
        self.budget = RecoveryBudget(
            options.recovery_limit, options.recovery_window_s, options.recovery_backoff_s
        )

    def transactional_id(self, p: int) -> str:
        return f"{self.group_id}.{self.topics.requests}.{p}"

    def find(self, order_id: str) -> PartitionWorker | None:
        """The live worker holding this unfinished order (a dozen dict probes: cheaper than a second map)."""
        for worker in self.workers.values():
            if not worker.closed and order_id in worker.memory.active:
                return worker
        return None

    async def worker(self, p: int) -> PartitionWorker | None:
        """The live worker of partition p, waiting while it opens or recovers; None when p is not ours."""
        while True:
            ready = self._ready.get(p)
            if ready is None:
                return None
            await ready.wait()
            worker = self.workers.get(p)
            if worker is not None and not worker.closed:
                return worker
            if self._ready.get(p) is ready:
                # Its commit failed a moment ago and `failed` is about to replace it: look again shortly.
                await asyncio.sleep(0.01)

    # -- assignment -----------------------------------------------------------------------------------------
    async def assign(self, partitions: set[int]) -> None:
        """Make this router own exactly `partitions` of the intake."""
        lost = (self.assigned | set(self.workers)) - partitions
        self.assigned = set(partitions)
        for p in lost:
            await self.close(p)
        new = [p for p in partitions if p not in self.workers and p not in self._recovering]
        for p in new:
            self._ready[p] = asyncio.Event()
        await asyncio.gather(*(self._open(p, announce=False) for p in new))
        # Announced together once the whole assignment is open (its look-ups start then, in one sweep),
        # not partition by partition while the others still restore.
        for p in new:
            if (worker := self.workers.get(p)) is not None:
                self._on_opened(worker)

    async def close(self, p: int) -> None:
        async with self._locks[p]:
            worker = self.workers.pop(p, None)
            ready = self._ready.pop(p, None)
            if ready is not None:
                ready.set()  # waiters wake up to find the partition gone
            if worker is not None:
                worker.closed = True
                async with worker.lock:
                    await _stop(worker.producer)

    async def _open(self, p: int, *, announce: bool = True) -> None:
        async with self._locks[p]:
            ready = self._ready.get(p)
            if ready is None or p not in self.assigned:
                return  # revoked meanwhile
            producer = self._factory(self.transactional_id(p))
            await producer.start()
            try:
                restored = await self._restore(p)
            except BaseException:
                await _stop(producer)
                raise
            worker = PartitionWorker(
                p,
                producer,
                self.topics,
                self.state_topic,
                self.group_id,
                memory=restored.memory,
                offsets_every_s=self.options.offsets_every_s,
            )
            # A partition with no position starts at its first record (a rebalance may have moved the
            # consumer past records nobody processed: nothing committed an offset for them).
            worker.next_offset = restored.next_offset or restored.intake_start
            # The group's offset may be behind the position: bring it up soon, quiet partitions included.
            if restored.next_offset:
                worker.offsets_pending = restored.next_offset
            submitted = [t for t in restored.memory.active.values() if t.phase == "submitted"]
            for tracked in submitted:
                restored.memory.look_later(tracked.order_id, 0.0)  # every one is looked up at once
            self.workers[p] = worker
            ready.set()
            if self._rewind is not None:
                # The consumer reads on from the position, not from the group's offset (which may be ahead of
                # it when none was committed for the partition). In the background: this runs inside Faust's
                # rebalance callback, and the consumer's thread seeks only once that callback returns.
                self._supervisor.spawn(self._rewind_quietly(p, worker.next_offset), f"rewind-{p}")
        log.info(
            "partition assigned",
            extra={"partition": p, "active": len(worker.active), "submitted": len(submitted)},
        )
        if announce:
            self._on_opened(worker)

    async def _rewind_quietly(self, p: int, offset: int) -> None:
        assert self._rewind is not None
        await self._rewind(p, offset)

    # -- recovery -------------------------------------------------------------------------------------------
    def failed(self, failure: CommitFailed, requeue: Sequence[Outcome] = ()) -> asyncio.Task[None] | None:
        """A commit of `failure.worker` failed: take the worker out now (synchronously, so nobody uses it
        again) and recover its partition in the background. Returns the recovery to wait for (the one
        already running when another failure of the same partition got here first), None if the partition
        is not ours any more."""
        worker = failure.worker
        p = worker.partition
        worker.closed = True
        if p in self._recovering:
            if requeue:
                self._recovering[p].add_done_callback(lambda _: self._on_recovered(requeue))
            return self._recovering[p]
        if self.workers.get(p) is not worker:
            return None  # closed by a rebalance, or replaced already
        del self.workers[p]
        self._ready[p] = asyncio.Event()
        task = self._supervisor.spawn(self._recover(p, worker, failure.cause, requeue), f"recover-{p}")
        self._recovering[p] = task
        return task

    async def _recover(
        self, p: int, worker: PartitionWorker, cause: BaseException, requeue: Sequence[Outcome]
    ) -> None:
        try:
            await _stop(worker.producer)
            while True:
                if is_fenced(cause):
                    log.error("partition %d: producer fenced, another router owns the partition: dropped", p)
                    router_metrics.RECOVERIES.labels("fenced").inc()
                    await self.close(p)
                    return
                if not self.budget.spend(time.monotonic()):
                    router_metrics.RECOVERIES.labels("gave_up").inc()
                    raise RecoveryExhausted(
                        f"partition {p}: more than {self.budget.limit} failed commits within "
                        f"{self.budget.window_s:g} s, the last: {cause!r}"
                    ) from cause
                wait = self.budget.backoff()
                log.warning("partition %d failed (%r); reopening it in %.1f s", p, cause, wait)
                await asyncio.sleep(wait)
                if p not in self.assigned:
                    return  # revoked while it waited: nothing to recover
                self._ready.setdefault(p, asyncio.Event())  # revoked and assigned again meanwhile
                try:
                    await self._open(p)
                except Exception as exc:
                    cause = exc
                    continue
                if p not in self.workers:  # revoked while it opened: nothing to recover
                    return
                router_metrics.RECOVERIES.labels("recovered").inc()
                log.warning("partition %d recovered in-process from its committed state", p)
                break
        finally:
            self._recovering.pop(p, None)
        if requeue:
            self._on_recovered(requeue)

    async def stop(self) -> None:
        for task in list(self._recovering.values()):
            task.cancel()
        await self.assign(set())


async def _stop(producer: TxnProducer) -> None:
    """Stop a producer that may be broken: its failure was reported already, and nothing uncommitted of it
    matters (the next `init_transactions` on its id aborts whatever it left open)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), 10)
