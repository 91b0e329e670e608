"""Deadlines fired by one background task: how 10,000 pending swaps settle without 10,000 sleeping tasks.

A heap of (due, seq, key); the task sleeps until the earliest due time (or until an earlier one arrives),
then fires the keys that are due in batches of at most `chunk` (one settlement batch is one journal write),
awaiting each batch before the next and yielding to the event loop in between, so a burst of settlements
never starves the loop. The clock is injected so tests move time by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable

from .clock import Clock

log = logging.getLogger(__name__)


class DueQueue:
    def __init__(
        self,
        clock: Clock,
        fire: Callable[[list[str]], Awaitable[None]],
        *,
        name: str = "due-queue",
        chunk: int = 512,
    ):
        self._clock, self._fire, self._name, self._chunk = clock, fire, name, chunk
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._next_due = math.inf
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, key: str, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), key))
        if due < self._next_due:  # only an earlier deadline needs to wake the task
            self._next_due = due
            self._wake.set()

    def start(self) -> None:
        """Start the task if it is not running (needs a running event loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            while self._heap and self._heap[0][0] <= self._clock.now():
                now = self._clock.now()
                keys: list[str] = []
                while self._heap and self._heap[0][0] <= now and len(keys) < self._chunk:
                    keys.append(heapq.heappop(self._heap)[2])
                try:
                    await self._fire(keys)
                except Exception:  # one bad batch must not stop every later deadline
                    log.exception("%s: firing %d keys failed", self._name, len(keys))
                await asyncio.sleep(0)
            self._next_due = self._heap[0][0] if self._heap else math.inf
            if not self._heap:
                await self._wake.wait()
                continue
            sleeper = asyncio.ensure_future(self._clock.sleep(self._next_due - self._clock.now()))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
