"""Waiting for the projection to reach a position, for read-your-writes: LISTEN/NOTIFY with polling beneath.

The projector NOTIFYs `oee_projection` in every batch transaction (delivered at COMMIT, so a woken reader
always finds the rows). One listening connection per process wakes every waiter of the schema at once; each
then re-runs its own check (one indexed query). Polling stays underneath as a safety net: slowly (every
`poll_s`) while the listener is connected, fast (`fallback_poll_s`) while it is reconnecting, so a lost
notification costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import orjson

from projections.db import dsn
from projections.settings import NOTIFY_CHANNEL

log = logging.getLogger("oee.query")

T = TypeVar("T")


class Waiter:
    """Wakes waiters when the projection in `schema` commits a batch."""

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        listen: bool = True,
        poll_s: float = 0.5,
        fallback_poll_s: float = 0.05,
    ) -> None:
        self._dsn = dsn(url)
        self.schema = schema
        self.listen = listen
        self.poll_s = poll_s
        self.fallback_poll_s = fallback_poll_s
        self.listening = False
        self.notifications = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.listen:
            self._task = asyncio.create_task(self._listen(), name="projection-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self, check: Callable[[], Awaitable[T | None]], timeout_s: float) -> T | None:
        """Run `check` until it returns something other than None, or `timeout_s` passes (then None)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            changed = self._changed  # taken before the check: a batch committed during it still wakes us
            result = await check()
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            interval = self.poll_s if self.listening else self.fallback_poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, interval))

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        try:
            schema = orjson.loads(payload).get("schema")
        except (orjson.JSONDecodeError, AttributeError):
            schema = None
        if schema == self.schema:
            self.notifications += 1
            self._wake()

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": "oee-query-listen"}
                )
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                self.listening, delay = True, 0.1
                self._wake()  # anything committed while we were not listening
                while not lost.is_set():
                    # A dead peer without a closed socket never ends the session: probe it now and then.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 10)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("projection listener: %r; reconnecting in %.1f s", exc, delay)
            finally:
                self.listening = False
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
