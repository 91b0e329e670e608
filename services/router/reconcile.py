"""Looking submitted swaps up at their venue by client order id: after a restart or a recovery (every
submitted order), and as a safety net under the settlement feed (orders without news for a while, and
swaps whose landing deadline passed). What each answer means is `services.router.landing`'s; this module
asks, in chunks of `MAX_STATUS_BATCH` ids, and backs off per venue while a venue does not answer: the
orders wait (never guessed) and end when it answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from services.router import landing
from services.router.flow import Expiry, Outcome, Tracked
from services.router.options import RouterOptions
from services.router.worker import PartitionWorker
from services.venue.interface import MAX_STATUS_BATCH, Venue, VenueError

log = logging.getLogger("oee.router")


def chunks(items: Sequence[Tracked], size: int = MAX_STATUS_BATCH) -> list[Sequence[Tracked]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Reconciler:
    def __init__(
        self,
        venues: Mapping[str, Venue],
        options: RouterOptions,
        deliver: Callable[[Outcome], None],
        resubmit: Callable[[PartitionWorker, Tracked], None],
    ) -> None:
        self.venues = venues
        self.options = options
        self._deliver = deliver
        self._resubmit = resubmit
        self._failures: dict[str, int] = {}  # venue -> look-ups failed in a row

    async def reconcile(self, worker: PartitionWorker, orders: Sequence[Tracked]) -> None:
        by_venue: dict[str, list[Tracked]] = {}
        for tracked in orders:
            by_venue.setdefault(tracked.venue or "", []).append(tracked)
        for name, group in by_venue.items():
            venue = self.venues.get(name)
            if venue is None:
                for tracked in group:
                    log.error("order routed to unknown venue %s", name, extra={"order_id": tracked.order_id})
                    worker.memory.look_later(tracked.order_id, time.time() + self.options.lookup_retry_cap_s)
                continue
            for chunk in chunks(group):
                if worker.closed:
                    return
                await self._look_up(worker, name, venue, chunk)

    async def _look_up(
        self, worker: PartitionWorker, name: str, venue: Venue, chunk: Sequence[Tracked]
    ) -> None:
        opts = self.options
        asked_at = time.time()
        try:
            statuses = await venue.status_many([t.order_id for t in chunk])
            if len(statuses) != len(chunk):
                raise VenueError(name, f"{len(statuses)} statuses for {len(chunk)} ids")
        except Exception as exc:
            # A venue error, or an answer the client could not make sense of: either way nothing is known
            # about these swaps yet, so they wait and are asked again (never guessed).
            failures = self._failures[name] = self._failures.get(name, 0) + 1
            wait = min(opts.submit_retry_s * 2 ** (failures - 1), opts.lookup_retry_cap_s)
            reason = exc.reason if isinstance(exc, VenueError) else repr(exc)
            log.warning(
                "status look-up at %s failed (%s); %d swaps wait %.1f s", name, reason, len(chunk), wait,
                exc_info=not isinstance(exc, VenueError),
            )  # fmt: skip
            for tracked in chunk:
                worker.memory.look_later(tracked.order_id, time.time() + wait)
            return
        self._failures.pop(name, None)
        for tracked, status in zip(chunk, statuses, strict=True):
            verdict = landing.judge(tracked, status, asked_at, opts.status_grace_s, opts.reconcile_after_s)
            if verdict.action == "settle":
                worker.memory.look_later(tracked.order_id, time.time() + opts.reconcile_after_s)
                self._deliver(status)
            elif verdict.action == "expire":
                worker.memory.look_later(tracked.order_id, time.time() + opts.reconcile_after_s)
                self._deliver(Expiry(tracked.order_id, verdict.why))
            elif verdict.action == "resubmit":
                self._resubmit(worker, tracked)
            else:
                worker.memory.look_later(tracked.order_id, verdict.look_at or asked_at)
