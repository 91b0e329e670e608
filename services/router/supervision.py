"""Tasks beside the stream, and when the router gives up.

The router is crash-only beyond what it can recover in-process: a background task that fails with an error
nobody handles resolves `crashed`, and the process exits (its supervisor restarts it, and the restart
carries on from the committed state). A failed commit of one partition is recovered in-process (see
`services.router.partitions`) unless commits fail too often: `RecoveryBudget` says when that is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable

log = logging.getLogger("oee.router")


EX_SOFTWARE = 70
"""The exit status of a router that stopped on a failure (sysexits.h: internal software error), so the
process supervisor and `oee status` see a crash, not a clean stop."""


class Supervisor:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._crashed: asyncio.Future[BaseException] | None = None
        self.cause: BaseException | None = None  # the first failure that stopped the router

    def start(self) -> None:
        self._crashed = asyncio.get_running_loop().create_future()

    @property
    def crashed(self) -> asyncio.Future[BaseException]:
        assert self._crashed is not None, "start() first"
        return self._crashed

    def crash(self, exc: BaseException) -> None:
        """Stop routing; the supervisor restarts the process and the restart carries on from the committed
        state. The first failure is logged with its traceback; later ones (the stop's fallout) in a line."""
        if self.cause is not None:
            log.error("another failure while the router stops: %r", exc)
            return
        self.cause = exc
        log.critical("router stopping after a failure it cannot route around: %r", exc, exc_info=exc)
        if self._crashed is not None and not self._crashed.done():
            self._crashed.set_result(exc)

    def spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        """Run `coro` beside the router; if it fails, the router stops (crash-only)."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.crash(exc)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


class RecoveryBudget:
    """At most `limit` in-process recoveries within any `window_s`; the next failure is one too many.
    Pure: the caller passes the (monotonic) time."""

    def __init__(self, limit: int, window_s: float, backoff_s: tuple[float, float] = (0.5, 8.0)) -> None:
        self.limit, self.window_s = limit, window_s
        self.first_s, self.cap_s = backoff_s
        self._failures: deque[float] = deque()

    def spend(self, now: float) -> bool:
        """Count one failure at `now`; False when it exceeds the budget (stop the process)."""
        while self._failures and self._failures[0] <= now - self.window_s:
            self._failures.popleft()
        self._failures.append(now)
        return len(self._failures) <= self.limit

    def backoff(self) -> float:
        """How long to wait before the next attempt: doubling with the failures in the window."""
        n = max(len(self._failures), 1)
        return float(min(self.first_s * 2 ** (n - 1), self.cap_s))
