"""The read API's SQL against one projection schema. Every query is a single statement (one snapshot)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from projections.migrations import quote_ident
from projections.settings import PROJECTION_NAME
from services.query.params import ListQuery

_FRESHNESS = "p.next_offset, p.end_offset, p.updated_at AS applied_at, p.checked_at"


class Reads:
    """Queries of the order projection in `schema`, for event-log topic `topic`."""

    def __init__(self, schema: str, topic: str, projection: str = PROJECTION_NAME) -> None:
        self.schema = schema
        self.topic = topic
        self.projection = projection
        q = self.q = quote_ident(schema)
        self._order = (
            f"SELECT o.*, {_FRESHNESS} FROM {q}.orders o LEFT JOIN {q}.projector_positions p"
            " ON p.projection = $2 AND p.topic = o.last_topic AND p.partition = o.last_partition"
            " WHERE o.id = $1 AND o.account_id = $3"
        )
        self._events = f"SELECT * FROM {q}.order_events WHERE order_id = $1 ORDER BY seq"
        self._position = (
            f"SELECT p.partition, {_FRESHNESS} FROM {q}.projector_positions p"
            " WHERE p.projection = $1 AND p.topic = $2 AND p.partition = $3"
        )
        # What the read-your-writes checker needs of every waiting read at once (services.query.waits).
        self._seqs = f"SELECT id::text AS id, last_seq FROM {q}.orders WHERE id = ANY($1::uuid[])"
        self._positions = (
            f"SELECT partition, next_offset FROM {q}.projector_positions WHERE projection = $1 AND topic = $2"
        )
        self._summary = (
            "SELECT count(*) AS partitions, sum(greatest(end_offset - next_offset, 0))::int8 AS lag,"
            " min(updated_at) AS oldest_applied, min(checked_at) AS oldest_check"
            f" FROM {q}.projector_positions WHERE projection = $1 AND topic = $2"
        )

    async def order(self, conn: asyncpg.Connection, order_id: str, account: str) -> asyncpg.Record | None:
        """The order's row with the freshness of its partition, or None: unknown and another account's
        order are the same None, so an answer never tells whether an id exists."""
        return await conn.fetchrow(self._order, order_id, self.projection, account)

    async def events(self, conn: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
        return await conn.fetch(self._events, order_id)

    async def position(self, conn: asyncpg.Connection, partition: int) -> asyncpg.Record | None:
        return await conn.fetchrow(self._position, self.projection, self.topic, partition)

    async def progress(
        self, conn: asyncpg.Connection, order_ids: Sequence[str], positions: bool
    ) -> tuple[dict[str, int], dict[int, int]]:
        """The last seq of each of these orders that has a row; each partition's next offset (if asked)."""
        seqs: dict[str, int] = {}
        if order_ids:
            seqs = {r["id"]: r["last_seq"] for r in await conn.fetch(self._seqs, list(order_ids))}
        applied: dict[int, int] = {}
        if positions:
            rows = await conn.fetch(self._positions, self.projection, self.topic)
            applied = {r["partition"]: r["next_offset"] for r in rows if r["next_offset"] is not None}
        return seqs, applied

    async def summary(self, conn: asyncpg.Connection) -> asyncpg.Record | None:
        return await conn.fetchrow(self._summary, self.projection, self.topic)

    async def page(self, conn: asyncpg.Connection, query: ListQuery, account: str) -> list[asyncpg.Record]:
        """Up to `limit + 1` of the account's orders, newest first (the extra row: is there a next page)."""
        sql, args = list_sql(self.q, query, account)
        return await conn.fetch(sql, *args)


def list_sql(table_schema: str, query: ListQuery, account: str) -> tuple[str, list[Any]]:
    """One account's orders, keyset-paginated on (created_at, id) descending; only the filters given, so
    the planner can use the (account_id[, status], created_at, id) indexes."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where.append(f"account_id = {arg(account)}")
    if query.status is not None:
        where.append(f"status = {arg(query.status)}")
    if query.side is not None:
        where.append(f"side = {arg(query.side)}")
    if query.order_type is not None:
        where.append(f"type = {arg(query.order_type)}")
    if query.venue is not None:
        where.append(f"selected_dex = {arg(query.venue)}")
    if query.since is not None:
        where.append(f"created_at >= {arg(query.since)}")
    if query.until is not None:
        where.append(f"created_at < {arg(query.until)}")
    if query.cursor is not None:
        c = query.cursor
        where.append(f"(created_at, id) < ({arg(c.created_at)}, {arg(c.order_id)}::uuid)")
    clause = f"WHERE {' AND '.join(where)} "
    sql = f"SELECT * FROM {table_schema}.orders {clause}ORDER BY created_at DESC, id DESC LIMIT {arg(query.limit + 1)}"
    return sql, args


OPEN_ORDERS = "status NOT IN ('cancelled', 'confirmed', 'expired', 'failed')"
"""An order not yet ended (`events.lifecycle.TERMINAL`, alphabetical), as the partial index says it."""


def open_orders_counter(
    pool: asyncpg.Pool, schema: str, timeout_s: float = 2.0
) -> Callable[[str], Awaitable[int]]:
    """account -> how many of its orders the projection in `schema` holds not yet ended: in flight or resting
    (the per-account open-orders limit; one index-only count on `orders_account_open`, whose predicate
    this must repeat word for word: sql/0004)."""
    sql = f"SELECT count(*) FROM {quote_ident(schema)}.orders WHERE account_id = $1 AND {OPEN_ORDERS}"

    async def count(account: str) -> int:
        async with asyncio.timeout(timeout_s):
            return int(await pool.fetchval(sql, account))

    return count
