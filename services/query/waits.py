"""Waiting for the projection to reach a position, for read-your-writes: LISTEN/NOTIFY, one shared check per
wake-up, polling beneath, and a bound on how many wait.

The projector NOTIFYs `oee_projection` in every batch transaction (delivered at COMMIT, so a woken reader
always finds the rows). One listening connection per process wakes the checker; the checker runs **one**
`progress` query for every waiting read together (the last seq of each order waited for, the applied offset
of each partition) and releases those whose target it shows reached. Notifications that arrive while a
check runs make one more check after it, not one each: the database sees at most one waiters' query at a
time, however many reads wait. Polling stays underneath as a safety net: slowly (every `poll_s`) while the
listener is connected, fast (`fallback_poll_s`) while it is reconnecting, so a lost notification costs
latency, never correctness.

At most `max_waiters` reads wait at once; one more is refused (`WaitersFull`: the API answers 503 with
Retry-After) rather than queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import orjson

from projections.db import dsn
from projections.settings import NOTIFY_CHANNEL
from services.pglisten import listen_forever

log = logging.getLogger("oee.query")

__all__ = ["Progress", "Target", "Waiter", "WaitersFull", "reached", "seq_reached"]


@dataclass(frozen=True, slots=True)
class Target:
    """What a read waits for: the order's row at `min_seq` or later, and/or the projection past an offset."""

    order_id: str
    min_seq: int | None = None
    min_position: tuple[int, int] | None = None  # (partition, offset) on the event log


@dataclass(frozen=True, slots=True)
class Progress:
    """What one shared check saw: the last seq of each order asked about that has a row, which of those
    have ended (a terminal status: no event follows), and the next offset the projection will apply on each
    partition."""

    seqs: dict[str, int] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)
    ended: frozenset[str] = frozenset()


def seq_reached(last_seq: int | None, ended: bool, min_seq: int | None) -> bool:
    """Whether an order's row answers a read waiting for `min_seq`: it has got there, or it has ended and so
    never will (the order as it ended is all there is to wait for; waiting on would only make the client
    spin on 503s)."""
    return min_seq is None or (last_seq is not None and (last_seq >= min_seq or ended))


def reached(target: Target, progress: Progress) -> bool:
    oid = target.order_id
    if not seq_reached(progress.seqs.get(oid), oid in progress.ended, target.min_seq):
        return False
    if target.min_position is not None:
        partition, offset = target.min_position
        if progress.positions.get(partition, -1) <= offset:
            return False
    return True


ProgressQuery = Callable[[Sequence[str], bool], Awaitable[Progress]]
"""progress(order ids, with positions?): one round trip to the projection for every waiting read."""


class WaitersFull(Exception):
    """As many reads wait as may: this one is refused, not queued."""


@dataclass(eq=False, slots=True)
class _Entry:
    target: Target
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Waiter:
    """Wakes waiting reads when the projection in `schema` reaches what they wait for."""

    def __init__(
        self,
        url: str,
        schema: str,
        progress: ProgressQuery,
        *,
        max_waiters: int = 1000,
        listen: bool = True,
        poll_s: float = 0.5,
        fallback_poll_s: float = 0.05,
    ) -> None:
        self._dsn = dsn(url)
        self.schema = schema
        self.max_waiters = max_waiters
        self.listen = listen
        self.poll_s = poll_s
        self.fallback_poll_s = fallback_poll_s
        self.listening = False
        self.notifications = 0  # NOTIFYs of our schema (and listener reconnects): a read's `since`
        self.checks = 0  # shared progress queries run
        self.refused = 0  # reads refused because `max_waiters` waited already
        self._progress = progress
        self._entries: set[_Entry] = set()
        self._dirty = asyncio.Event()  # something may have moved: check before the next poll
        self._listener: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return len(self._entries)

    async def start(self) -> None:
        if self.listen:
            self._listener = asyncio.create_task(self._listen(), name="projection-listener")
        self._checker = asyncio.create_task(self._check_loop(), name="projection-waiters")

    async def stop(self) -> None:
        for task in (self._listener, self._checker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def wait(self, target: Target, timeout_s: float, since: int) -> bool:
        """True once a shared check shows `target` reached, False after `timeout_s`.

        `since` is `notifications` as it was before the caller's own last look: a commit notified since
        then is checked for at once, so nothing between that look and this wait is missed. Raises
        `WaitersFull` when `max_waiters` reads wait already.
        """
        if timeout_s <= 0:
            return False
        if len(self._entries) >= self.max_waiters:
            self.refused += 1
            raise WaitersFull(f"too many reads waiting for the projection (limit {self.max_waiters})")
        entry = _Entry(target)
        self._entries.add(entry)
        if self.notifications != since:
            self._dirty.set()
        try:
            async with asyncio.timeout(timeout_s):
                await entry.done.wait()
            return True
        except TimeoutError:
            return entry.done.is_set()
        finally:
            self._entries.discard(entry)

    async def _check_loop(self) -> None:
        while True:
            interval = self.poll_s if self.listening else self.fallback_poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), interval)
            self._dirty.clear()  # what changes from here on makes one more check after this one
            if not self._entries:
                continue
            entries = list(self._entries)
            ids = sorted({e.target.order_id for e in entries if e.target.min_seq is not None})
            positions = any(e.target.min_position is not None for e in entries)
            try:
                progress = await self._progress(ids, positions)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # unavailable: the waits run out and answer 503 (or the next check)
                log.warning("checking the projection's progress failed: %r", exc)
                continue
            self.checks += 1
            for entry in entries:
                if reached(entry.target, progress):
                    entry.done.set()
                    self._entries.discard(entry)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        try:
            schema = orjson.loads(payload).get("schema")
        except (orjson.JSONDecodeError, AttributeError):
            schema = None
        if schema == self.schema:
            self.notifications += 1
            self._dirty.set()

    async def _listen(self) -> None:
        def listening() -> None:
            self.listening = True
            self.notifications += 1  # anything committed while we were not listening
            self._dirty.set()

        def lost() -> None:
            self.listening = False

        await listen_forever(
            self._dsn, NOTIFY_CHANNEL, self._on_notify, application_name="oee-query-listen",
            on_listening=listening, on_lost=lost, what="projection listener",
        )  # fmt: skip
