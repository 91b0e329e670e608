"""`/ready`'s checks, cached: the broker and the database are asked at most once per `min_interval_s`,
however often and however concurrently `/ready` is called (callers in between share the last answer, and
callers during a probe wait for that one probe)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Checks:
    broker: bool
    database: bool


class Readiness:
    def __init__(
        self,
        probe: Callable[[], Awaitable[Checks]],
        min_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._last: Checks | None = None
        self._at = 0.0
        self._running: asyncio.Task[Checks] | None = None
        self.probes = 0  # how many times the broker and the database were actually asked

    async def check(self) -> Checks:
        if self._last is not None and self._clock() - self._at < self.min_interval_s:
            return self._last
        if self._running is None:
            self._running = asyncio.create_task(self._run(), name="ready-probe")
        return await asyncio.shield(self._running)

    async def _run(self) -> Checks:
        try:
            self.probes += 1
            checks = await self._probe()
            self._last, self._at = checks, self._clock()
            return checks
        finally:
            self._running = None
