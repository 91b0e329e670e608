"""Time as the simulator sees it, injectable so tests drive latency and drift without sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds: due times and drift are measured with it."""
        ...

    def utcnow(self) -> datetime:
        """Wall-clock time (UTC) for timestamps in quotes, receipts and statuses."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """An awaitable done after `seconds`. A plain method returning an awaitable, so a test clock can
        register the deadline at call time, before the awaiting task first runs."""
        ...


class SystemClock:
    """The real thing: `time.monotonic` and `asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    def utcnow(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(max(seconds, 0.0))


class ManualClock:
    """A clock that only moves when a test calls `advance`; sleepers wake when their deadline passes."""

    def __init__(self, start: float = 0.0, epoch: datetime = datetime(2025, 1, 1, tzinfo=UTC)) -> None:
        self._now = start
        self._epoch = epoch - timedelta(seconds=start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._added: asyncio.Future[None] | None = None

    def now(self) -> float:
        return self._now

    def utcnow(self) -> datetime:
        return self._epoch + timedelta(seconds=self._now)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (cancelled ones included until the next `advance`)."""
        return len(self._sleepers)

    def sleep(self, seconds: float) -> Awaitable[None]:
        if seconds <= 0:
            return asyncio.sleep(0)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        if self._added is not None and not self._added.done():
            self._added.set_result(None)
        return future

    async def wait_for_sleepers(self, count: int) -> None:
        """Wait until `count` sleeps are pending: a test knows every task it started is parked on time."""
        while len(self._sleepers) < count:
            self._added = asyncio.get_running_loop().create_future()
            await self._added

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed (they run at the next await)."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
