"""Natural batching of intake records between Faust's stream and the router core.

Faust's `take()` fills a batch only for its `within` window, and every event costs Faust ~0.25 ms to hand
over, so a short window yields batches of a few orders (one transaction each: slow) and a long one adds its
whole length to every order's latency. Here the agent only appends; the core gets, as one batch, everything
that arrived while it was busy with the previous one: a lone order goes at once, a burst goes in large
batches. Offsets are committed by the core's transactions alone, so acking on hand-over loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from services.router.worker import Record


class Batcher:
    def __init__(
        self, handle: Callable[[Sequence[Record]], Awaitable[None]], batch_max: int, pending_max: int
    ) -> None:
        self._handle = handle
        self.batch_max = batch_max
        self.pending_max = max(pending_max, batch_max)
        self._pending: list[Record] = []
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, record: Record) -> None:
        """Queue a record; waits (so Faust stops fetching) while `pending_max` records are waiting."""
        while len(self._pending) >= self.pending_max:
            self._room.clear()
            await self._room.wait()
        self._pending.append(record)
        self._arrived.set()

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget queued records of partitions this router lost: their new owner reads them again."""
        self._pending = [r for r in self._pending if r.partition not in partitions]
        self._room.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._pending:
                batch, self._pending = self._pending[: self.batch_max], self._pending[self.batch_max :]
                self._room.set()
                await self._handle(batch)
