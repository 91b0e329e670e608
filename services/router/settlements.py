"""Swaps that ended, into terminal events: settlements from the venues' feeds and look-ups, and expiries.

Outcomes are batched per partition: one transaction carries every outcome that arrived while the previous
one committed (or they ride along in the partition's next intake transaction). An outcome for an order
this router does not hold is dropped: its owner learns of it by its own reconciliation. If the settlement
transaction fails, the partition is recovered and the batch handed back to it afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial

from services.metrics import router as router_metrics
from services.router import flow
from services.router.containment import contain
from services.router.flow import Expiry, Outcome
from services.router.supervision import Supervisor
from services.router.worker import CommitFailed, Outbox, PartitionWorker, WorkerClosed

log = logging.getLogger("oee.router")

Find = Callable[[str], PartitionWorker | None]
Failed = Callable[[CommitFailed, Sequence[Outcome]], object]


def order_of(outcome: Outcome) -> str:
    return outcome.order_id if isinstance(outcome, Expiry) else outcome.client_order_id


def settle_into(worker: PartitionWorker, out: Outbox, outcomes: Sequence[Outcome]) -> int:
    """Add the terminal events of these outcomes to `out`; return how many were expiries. The feed and a
    reconciliation can report the same swap in one batch: each order ends once."""
    now = datetime.now(UTC)
    ended: set[str] = set()
    expiries = 0
    for outcome in outcomes:
        order_id = order_of(outcome)
        tracked = worker.memory.active.get(order_id)
        if tracked is None or order_id in ended:
            continue
        step = contain(tracked, now, partial(flow.concluded, tracked, outcome, now), "execution")
        if step is not None and step.events:
            out.add(step)
            ended.add(order_id)
            expiries += isinstance(outcome, Expiry)
    return expiries


class Settlements:
    def __init__(self, find: Find, supervisor: Supervisor, failed: Failed) -> None:
        self._find = find
        self._supervisor = supervisor
        self._failed = failed

    def deliver(self, outcome: Outcome) -> None:
        """A swap ended (pushed by the venue, looked up, or expired): queue its terminal event."""
        if not isinstance(outcome, Expiry) and not outcome.terminal:
            return
        worker = self._find(order_of(outcome))
        if worker is None:
            return
        worker.outcomes.append(outcome)
        if not worker.settling:
            worker.settling = True
            self._supervisor.spawn(self._drain(worker), f"settle-{worker.partition}")

    async def _drain(self, worker: PartitionWorker) -> None:
        try:
            while worker.outcomes and not worker.closed:
                batch, worker.outcomes = worker.outcomes, []
                try:
                    await self._apply(worker, batch)
                except CommitFailed as exc:
                    leftover, worker.outcomes = worker.outcomes, []
                    self._failed(exc, [*batch, *leftover])
                    return
                except WorkerClosed:
                    worker.outcomes[:0] = batch
        finally:
            worker.settling = False
        if worker.closed and worker.outcomes:
            # Replaced while these waited: hand them to the partition's new worker, if there is one yet
            # (otherwise its reconciliation finds them at the venue).
            leftover, worker.outcomes = worker.outcomes, []
            for outcome in leftover:
                self.deliver(outcome)

    async def _apply(self, worker: PartitionWorker, outcomes: Sequence[Outcome]) -> None:
        async with worker.lock:
            if worker.closed:
                raise WorkerClosed(f"partition {worker.partition}")
            out = Outbox()
            expiries = settle_into(worker, out, outcomes)
            if not out:
                return
            await worker.commit(out)
        if expiries:
            router_metrics.EXPIRATIONS.inc(expiries)
