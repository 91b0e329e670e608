"""One Postgres connection that survives the database going away: reopened with backoff, work retried whole.

A unit of work is one transaction (a batch and its positions), so retrying it after the connection broke is
safe: either its COMMIT happened and the position check of the retry notices (see `projections.batch`), or it
did not and nothing of it exists. Errors that are not about availability are the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

log = logging.getLogger("oee.projector.db")

T = TypeVar("T")

UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncpg.PostgresConnectionError,  # 08xxx, the connection dropped
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: admin/crash shutdown, starting up, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections, disk full
)


def dsn(url: str) -> str:
    """asyncpg wants postgresql://; accept SQLAlchemy's driver-qualified spelling too."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def is_unavailable(exc: BaseException, conn: asyncpg.Connection | None) -> bool:
    if isinstance(exc, UNAVAILABLE):
        return True
    # A server that ends the session while it is idle (pg_terminate_backend, a restart) leaves asyncpg's
    # protocol in a state it reports as InternalClientError on next use; a closed one as InterfaceError.
    # Either way the connection is unusable and a new one is the cure (every use is one whole transaction).
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and (conn is None or conn.is_closed())


class Reconnecting:
    """A lazily opened connection; `run(work)` retries `work` on a fresh one until the database answers."""

    def __init__(
        self,
        url: str,
        *,
        application_name: str = "oee",
        backoff_s: tuple[float, float] = (0.1, 5.0),
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._dsn = dsn(url)
        self._settings = {"application_name": application_name}
        self._conn: asyncpg.Connection | None = None
        self._backoff = backoff_s
        self._connect_timeout = connect_timeout_s
        self.reconnects = 0

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        delay = self._backoff[0]
        while True:
            try:
                if self._conn is not None and self._conn.is_closed():
                    # The server ended the session while it was idle (a restart, pg_terminate_backend): asyncpg
                    # noticed before we used it, so no error reaches us, but it is a lost connection all the same.
                    log.warning("database connection was closed by the server; reopening")
                    self._conn = None
                    self.reconnects += 1
                if self._conn is None:
                    self._conn = await asyncpg.connect(
                        self._dsn, timeout=self._connect_timeout, server_settings=self._settings
                    )
                return await work(self._conn)
            except Exception as exc:
                if not is_unavailable(exc, self._conn):
                    raise
                log.warning(
                    "database unavailable (%s: %s); retrying in %.1f s", type(exc).__name__, exc, delay
                )
                await self._drop()
                self.reconnects += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            if not conn.is_closed():
                conn.terminate()

    async def close(self) -> None:
        await self._drop()
