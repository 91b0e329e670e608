"""Handing recorded swaps to their venues, after the transaction with their `submitted` event committed.

A submit is retried (same client order id: the venue cannot execute it twice) until the venue has it, but
never past the swap's landing deadline: from then on only a status look-up can say what happened
(`services.router.landing`), at the deadline plus the venue's visibility grace. A lost reply is looked up
before anything else. A refusal ends the order: `SubmitExpired` as `expired`, any other rejection (a
`SubmitConflict` included) with the venue's reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from services.router.flow import Expiry, Outcome, Tracked
from services.router.options import RouterOptions
from services.router.supervision import Supervisor
from services.router.worker import PartitionWorker
from services.venue.interface import (
    SubmitExpired,
    SubmitOutcomeUnknown,
    SwapStatus,
    Venue,
    VenueError,
    VenueRejected,
    VenueUnavailable,
)

log = logging.getLogger("oee.router")


class Submissions:
    def __init__(
        self,
        venues: Mapping[str, Venue],
        options: RouterOptions,
        supervisor: Supervisor,
        deliver: Callable[[Outcome], None],
    ) -> None:
        self.venues = venues
        self.options = options
        self._supervisor = supervisor
        self._deliver = deliver

    def start(self, worker: PartitionWorker, tracked: Tracked) -> None:
        """Submit the swap in the background (unless a submit loop already runs for it)."""
        if tracked.order_id in worker.memory.submitting:
            return
        worker.memory.submitting.add(tracked.order_id)
        self._supervisor.spawn(self._run(worker, tracked), f"submit-{tracked.order_id}")

    async def _run(self, worker: PartitionWorker, tracked: Tracked) -> None:
        try:
            await self._submit(worker, tracked)
        finally:
            worker.memory.submitting.discard(tracked.order_id)

    async def _submit(self, worker: PartitionWorker, tracked: Tracked) -> None:
        order_id = tracked.order_id
        venue = self.venues.get(tracked.venue or "")
        if venue is None or tracked.limit_price is None:
            log.error("order routed to unknown venue %s", tracked.venue, extra={"order_id": order_id})
            return
        opts = self.options
        deadline = tracked.valid_until
        valid_until = None if deadline is None else datetime.fromtimestamp(deadline, UTC)
        req = tracked.request
        delay = opts.submit_retry_s
        while worker.holds(order_id):
            if deadline is not None and time.time() >= deadline:
                # Re-sending is pointless now (the venue refuses a late swap): look it up after the grace.
                worker.memory.look_later(order_id, deadline + opts.status_grace_s)
                return
            try:
                await venue.submit(
                    order_id, req.base_token, req.quote_token, req.side, req.amount_in, tracked.limit_price,
                    valid_until,
                )  # fmt: skip
                # The settlement arrives on the venue's feed; a look-up later covers a feed that missed it.
                worker.memory.look_later(order_id, time.time() + opts.reconcile_after_s)
                return
            except SubmitExpired as exc:
                self._deliver(
                    Expiry(order_id, f"{exc.venue} refused the swap after its valid_until: {exc.reason}")
                )
                return
            except VenueRejected as exc:
                self._deliver(SwapStatus(exc.venue, order_id, "failed", reason=exc.reason))
                return
            except SubmitOutcomeUnknown:
                status = await self._lookup(venue, order_id)
                if status is not None and status.state != "unknown":
                    self._deliver(status)  # a pending one is only remembered: its settlement follows
                    worker.memory.look_later(order_id, time.time() + opts.reconcile_after_s)
                    return
            except VenueUnavailable:
                pass
            except Exception:
                # Anything else (a client or venue bug, an answer it could not read) says nothing about
                # whether the swap executed: never guessed, it is retried like a lost reply until the
                # deadline, after which the look-up decides (`expired` if the venue never executed it).
                log.exception("submit to %s raised; retrying until its deadline", venue.name,
                              extra={"order_id": order_id})  # fmt: skip
            wait = delay if deadline is None else min(delay, max(deadline - time.time(), 0.0))
            await asyncio.sleep(wait)
            delay = min(delay * 2, opts.submit_retry_cap_s)

    async def _lookup(self, venue: Venue, order_id: str) -> SwapStatus | None:
        try:
            return (await venue.status_many([order_id]))[0]
        except (VenueError, IndexError):
            return None
        except Exception:
            log.exception("status look-up at %s raised", venue.name, extra={"order_id": order_id})
            return None
