"""The router's timers: quote retries when their backoff ends, resting orders when they expire, status
look-ups when they are due, the group's offsets of quiet partitions, and the venues' settlement feeds
(reopened when they break)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from services.router.flow import Tracked
from services.router.options import RouterOptions
from services.router.partitions import Partitions
from services.router.reconcile import Reconciler
from services.router.worker import CommitFailed, Outbox, PartitionWorker, WorkerClosed

log = logging.getLogger("oee.router")


async def retries(
    partitions: Partitions,
    requote: Callable[[PartitionWorker, list[Tracked]], Awaitable[None]],
    spawn: Callable[[Awaitable[None], str], object],
) -> None:
    """Quote again the orders whose venues were all down, when their backoff is over."""
    while True:
        now = time.time()
        pending = [t for w in partitions.workers.values() if (t := w.next_retry_at()) is not None]
        await asyncio.sleep(min(max(min(pending) - now, 0.0), 0.25) if pending else 0.1)
        for worker in list(partitions.workers.values()):
            due = worker.due_retries(time.time())
            if due:
                spawn(requote(worker, due), f"requote-{worker.partition}")


async def expiries(
    partitions: Partitions,
    expire: Callable[[PartitionWorker, list[Tracked]], Awaitable[None]],
    spawn: Callable[[Awaitable[None], str], object],
) -> None:
    """Expire the resting orders whose `expires_at` came (checked at least every 0.25 s)."""
    while True:
        now = time.time()
        pending = [t for w in partitions.workers.values() if (t := w.memory.next_expiry_at()) is not None]
        await asyncio.sleep(min(max(min(pending) - now, 0.0), 0.25) if pending else 0.25)
        for worker in list(partitions.workers.values()):
            due = worker.memory.due_expiries(time.time())
            if due:
                spawn(expire(worker, due), f"expire-{worker.partition}")


async def lookups(
    partitions: Partitions, reconciler: Reconciler, options: RouterOptions, wake: asyncio.Event
) -> None:
    """Look up the submitted swaps that are due: every one after a (re)assignment, those without news for
    `reconcile_after_s`, those whose deadline (plus grace) passed, those whose venue did not answer before."""
    while True:
        # Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives as the wake-up
        # completes, and this loop would then outlive the router's stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(options.reconcile_every_s):
                await wake.wait()
        wake.clear()
        now = time.time()
        for worker in list(partitions.workers.values()):
            due = worker.memory.due_lookups(now)
            if due and not worker.closed:
                await reconciler.reconcile(worker, due)


async def offsets(partitions: Partitions, options: RouterOptions) -> None:
    """Bring the group's offsets up to the processed position of partitions that went quiet (busy ones
    carry theirs in their next transaction), so lag reads zero once the router caught up."""
    while True:
        await asyncio.sleep(options.offsets_every_s / 2)
        for worker in list(partitions.workers.values()):
            if worker.offsets_due(time.monotonic()) and not worker.lock.locked():
                try:
                    async with worker.lock:
                        if not worker.closed:
                            await worker.commit(Outbox(), flush_offsets=True)
                except CommitFailed as exc:
                    partitions.failed(exc)
                except WorkerClosed:
                    pass


async def forever(loop: Callable[[], Awaitable[None]]) -> None:
    """A feed that breaks (venue restarting) is reopened; reconciliation covers what it missed."""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("settlement feed interrupted, reopening: %r", exc)
        await asyncio.sleep(0.5)
