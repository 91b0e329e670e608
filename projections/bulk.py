"""Bulk writes into a projection schema that is being built from scratch: COPY, off the decoding path.

A rebuild folds the log in memory and hands each batch's rows here. `BulkWriter` writes them with binary
COPY (one transaction per batch) in a task of its own with a short queue, so Postgres ingests batch N on the
other core while Python decodes batch N+1; `put` waits when the queue is full, which bounds memory.
Rows of orders that may already be in the table (reloaded after eviction) go through the idempotent upsert.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from projections.rows import DEAD_LETTER_COLUMNS, EVENT_COLUMNS, ORDER_COLUMNS
from projections.store import ProjectionStore


@dataclass(slots=True)
class Job:
    """One batch's rows; `order_ids` are the orders whose row this job writes (pending until it commits)."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    new_orders: list[tuple[Any, ...]] = field(default_factory=list)
    upsert_orders: list[tuple[Any, ...]] = field(default_factory=list)
    dead: list[tuple[Any, ...]] = field(default_factory=list)
    order_ids: set[str] = field(default_factory=set)


class BulkWriter:
    """Writes `Job`s into `store`'s schema in the background, in order, one transaction each."""

    def __init__(self, conn: asyncpg.Connection, store: ProjectionStore, depth: int = 2) -> None:
        self._conn = conn
        self._store = store
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=depth)
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self.pending_ids: set[str] = set()
        """Orders whose row is queued but not committed yet (a lookup in the table would miss them)."""
        self.rows_written = 0

    async def __aenter__(self) -> BulkWriter:
        self._task = asyncio.create_task(self._run(), name="bulk-writer")
        return self

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        if self._task is None:
            return
        if exc_type is None:
            await self._queue.put(None)
            await self._task
        else:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._raise()

    async def put(self, job: Job) -> None:
        self._raise()
        self.pending_ids |= job.order_ids
        await self._queue.put(job)

    async def drain(self) -> None:
        """Return once every job queued so far is committed."""
        await self._queue.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError("bulk write failed") from self._error

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    await self._write(job)
                    self.pending_ids -= job.order_ids
            except Exception as exc:  # reported to the producer side at its next put/drain
                self._error = exc
            finally:
                self._queue.task_done()

    async def _write(self, job: Job) -> None:
        store, conn = self._store, self._conn
        async with conn.transaction():
            await _copy(conn, store.schema, "order_events", EVENT_COLUMNS, job.events)
            await _copy(conn, store.schema, "orders", ORDER_COLUMNS, job.new_orders)
            await store.upsert_orders(conn, job.upsert_orders)
            await _copy(conn, store.schema, "projector_dead_letters", DEAD_LETTER_COLUMNS, job.dead)
        self.rows_written += len(job.events) + len(job.new_orders) + len(job.upsert_orders) + len(job.dead)


async def _copy(
    conn: asyncpg.Connection, schema: str, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    if rows:
        await conn.copy_records_to_table(table, records=rows, columns=list(columns), schema_name=schema)
