"""The read API's queries of one projection schema. Every query is a single statement (one snapshot).

Built with SQLAlchemy Core over `projections.tables` and compiled once for asyncpg (`services.query.statements`);
the list query once per combination of filters, on first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, Text, and_, any_, bindparam, cast, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from events.lifecycle import is_terminal
from projections.settings import PROJECTION_NAME
from projections.tables import OPEN_ORDERS, order_events, orders
from projections.tables import projector_positions as positions
from services.query.params import ListQuery
from services.query.statements import Compiled, OrderPages, compile_for
from services.query.waits import Progress

_FRESHNESS = (
    positions.c.next_offset,
    positions.c.end_offset,
    positions.c.updated_at.label("applied_at"),
    positions.c.checked_at,
)
_OF_THE_LOG = and_(positions.c.projection == bindparam("projection"), positions.c.topic == bindparam("topic"))


class Reads:
    """Queries of the order projection in `schema`, for event-log topic `topic`."""

    def __init__(self, schema: str, topic: str, projection: str = PROJECTION_NAME) -> None:
        self.schema = schema
        self.topic = topic
        self.projection = projection
        o, p = orders, positions
        self._order = compile_for(
            select(o, *_FRESHNESS)
            .select_from(
                o.outerjoin(
                    p,
                    and_(
                        p.c.projection == bindparam("projection"),
                        p.c.topic == o.c.last_topic,
                        p.c.partition == o.c.last_partition,
                    ),
                )
            )
            .where(o.c.id == bindparam("order_id"), o.c.account_id == bindparam("account")),
            schema,
        )
        self._events = compile_for(
            order_events.select()
            .where(order_events.c.order_id == bindparam("order_id"))
            .order_by(order_events.c.seq),
            schema,
        )
        self._position = compile_for(
            select(p.c.partition, *_FRESHNESS).where(_OF_THE_LOG, p.c.partition == bindparam("partition")),
            schema,
        )
        # What the read-your-writes checker needs of every waiting read at once (services.query.waits).
        self._seqs = compile_for(
            select(cast(o.c.id, Text).label("id"), o.c.last_seq, o.c.status).where(
                o.c.id == any_(bindparam("order_ids", type_=ARRAY(UUID(as_uuid=False))))
            ),
            schema,
        )
        self._positions = compile_for(select(p.c.partition, p.c.next_offset).where(_OF_THE_LOG), schema)
        lag = func.greatest(p.c.end_offset - p.c.next_offset, literal_column("0"))
        self._summary = compile_for(
            select(
                func.count().label("partitions"),
                cast(func.sum(lag), BigInteger).label("lag"),
                func.min(p.c.updated_at).label("oldest_applied"),
                func.min(p.c.checked_at).label("oldest_check"),
            ).where(_OF_THE_LOG),
            schema,
        )
        self.pages = OrderPages(schema)
        self._log = {"projection": projection, "topic": topic}

    async def _fetch(
        self, conn: asyncpg.Connection, statement: Compiled, **values: Any
    ) -> list[asyncpg.Record]:
        return await conn.fetch(statement.sql, *statement.args(self._log | values))

    async def _fetchrow(
        self, conn: asyncpg.Connection, statement: Compiled, **values: Any
    ) -> asyncpg.Record | None:
        return await conn.fetchrow(statement.sql, *statement.args(self._log | values))

    async def order(self, conn: asyncpg.Connection, order_id: str, account: str) -> asyncpg.Record | None:
        """The order's row with the freshness of its partition, or None: unknown and another account's
        order are the same None, so an answer never tells whether an id exists."""
        return await self._fetchrow(conn, self._order, order_id=order_id, account=account)

    async def events(self, conn: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
        return await self._fetch(conn, self._events, order_id=order_id)

    async def position(self, conn: asyncpg.Connection, partition: int) -> asyncpg.Record | None:
        return await self._fetchrow(conn, self._position, partition=partition)

    async def progress(self, conn: asyncpg.Connection, order_ids: Sequence[str], positions: bool) -> Progress:
        """The last seq of each of these orders that has a row and which have ended; each partition's next
        offset (if asked)."""
        seqs: dict[str, int] = {}
        ended: frozenset[str] = frozenset()
        if order_ids:
            rows = await self._fetch(conn, self._seqs, order_ids=list(order_ids))
            seqs = {r["id"]: r["last_seq"] for r in rows}
            ended = frozenset(r["id"] for r in rows if is_terminal(r["status"]))
        applied: dict[int, int] = {}
        if positions:
            rows = await self._fetch(conn, self._positions)
            applied = {r["partition"]: r["next_offset"] for r in rows if r["next_offset"] is not None}
        return Progress(seqs, applied, ended)

    async def summary(self, conn: asyncpg.Connection) -> asyncpg.Record | None:
        return await self._fetchrow(conn, self._summary)

    async def page(self, conn: asyncpg.Connection, query: ListQuery, account: str) -> list[asyncpg.Record]:
        """Up to `limit + 1` of the account's orders, newest first (the extra row: is there a next page)."""
        sql, args = self.pages.statement(query, account)
        return await conn.fetch(sql, *args)


def open_orders_statement(schema: str) -> Compiled:
    """How many of an account's orders are not yet ended: one index-only count on `orders_account_open`,
    whose predicate `OPEN_ORDERS` is, word for word (sql/0004)."""
    return compile_for(
        select(func.count()).where(orders.c.account_id == bindparam("account"), text(OPEN_ORDERS)), schema
    )


def open_orders_counter(
    pool: asyncpg.Pool, schema: str, timeout_s: float = 2.0
) -> Callable[[str], Awaitable[int]]:
    """account -> how many of its orders the projection in `schema` holds not yet ended: in flight or resting
    (the per-account open-orders limit)."""
    statement = open_orders_statement(schema)

    async def count(account: str) -> int:
        async with asyncio.timeout(timeout_s):
            return int(await pool.fetchval(statement.sql, *statement.args({"account": account})))

    return count
