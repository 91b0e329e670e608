"""The projection's SQL, for one schema: read order states and positions, write a folded batch.

Bulk statements use `unnest($n::type[])` (one round trip per table per batch, whatever the batch size).
Every write is idempotent: events `ON CONFLICT DO NOTHING` on (order_id, seq), orders only move forward
(`WHERE last_seq < EXCLUDED.last_seq`), dead letters keyed by their log position. The caller wraps a batch and
its positions in one transaction; that, not these guards, is what makes application exactly-once. The guards
keep a replayed batch harmless if a bug ever got past the position check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from events.lifecycle import OrderState
from projections.fold import DeadLetter, Folded
from projections.migrations import quote_ident
from projections.rows import (
    DEAD_LETTER_COLUMNS,
    DEAD_LETTER_TYPES,
    EVENT_COLUMNS,
    EVENT_TYPES,
    ORDER_COLUMNS,
    ORDER_TYPES,
    event_row,
    order_row,
    state_from_row,
)
from projections.settings import NOTIFY_CHANNEL, PROJECTION_NAME

PROJECTION_TABLES: tuple[str, ...] = (
    "orders",
    "order_events",
    "projector_positions",
    "projector_dead_letters",
)
"""The tables one projection owns in its schema; a rebuild swaps exactly these."""


def lock_key(schema: str) -> int:
    """The advisory lock of a projection schema: batches take it shared, a rebuild's swap exclusively."""
    digest = hashlib.sha256(f"oee.projection.{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def column(name: str) -> str:
    return f'"{name}"' if name == "offset" else name


def unnest_insert(table: str, columns: Sequence[str], types: Sequence[str], tail: str = "") -> str:
    """INSERT ... SELECT * FROM unnest($1::t1[], $2::t2[], ...): a whole batch in one statement."""
    params = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, 1))
    cols = ", ".join(column(c) for c in columns)
    return f"INSERT INTO {table} AS t ({cols}) SELECT * FROM unnest({params}) {tail}".rstrip()


def transpose(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to one list per column (what `unnest` takes); `width` empty columns when there are no rows."""
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


class ProjectionStore:
    """The SQL of the order projection in `schema` for event-log topic `topic`."""

    def __init__(self, schema: str, topic: str, projection: str = PROJECTION_NAME) -> None:
        self.schema = schema
        self.topic = topic
        self.projection = projection
        self.lock_key = lock_key(schema)
        q = quote_ident(schema)
        self.qualified = q
        cols = ", ".join(column(c) for c in ORDER_COLUMNS)
        self._states = f"SELECT {cols} FROM {q}.orders WHERE id = ANY($1::uuid[])"
        self._positions = (
            f"SELECT partition, next_offset FROM {q}.projector_positions WHERE projection = $1 AND topic = $2"
        )
        self._insert_events = unnest_insert(
            f"{q}.order_events", EVENT_COLUMNS, EVENT_TYPES, "ON CONFLICT (order_id, seq) DO NOTHING"
        )
        updates = ", ".join(f"{column(c)} = EXCLUDED.{column(c)}" for c in ORDER_COLUMNS if c != "id")
        self._upsert_orders = unnest_insert(
            f"{q}.orders",
            ORDER_COLUMNS,
            ORDER_TYPES,
            f"ON CONFLICT (id) DO UPDATE SET {updates} WHERE t.last_seq < EXCLUDED.last_seq",
        )
        self._insert_dead = unnest_insert(
            f"{q}.projector_dead_letters",
            DEAD_LETTER_COLUMNS,
            DEAD_LETTER_TYPES,
            'ON CONFLICT (projection, topic, partition, "offset") DO NOTHING',
        )
        self._upsert_positions = (
            f"INSERT INTO {q}.projector_positions AS t"
            " (projection, topic, partition, next_offset, end_offset, updated_at, checked_at)"
            " SELECT $1, $2, u.p, u.n, u.e, clock_timestamp(), clock_timestamp()"
            " FROM unnest($3::int4[], $4::int8[], $5::int8[]) AS u(p, n, e)"
            " ON CONFLICT (projection, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,"
            " end_offset = coalesce(EXCLUDED.end_offset, t.end_offset),"
            " updated_at = EXCLUDED.updated_at, checked_at = EXCLUDED.checked_at"
        )
        self._heartbeat = (
            f"UPDATE {q}.projector_positions AS t SET end_offset = coalesce(u.e, t.end_offset),"
            " checked_at = clock_timestamp() FROM unnest($3::int4[], $4::int8[]) AS u(p, e)"
            " WHERE t.projection = $1 AND t.topic = $2 AND t.partition = u.p"
        )

    async def lock_shared(self, conn: asyncpg.Connection) -> None:
        """Inside a batch's transaction: many projectors may write at once, but not during a swap."""
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", self.lock_key)

    async def positions(self, conn: asyncpg.Connection) -> dict[int, int]:
        """partition -> next offset to read, as recorded with the last applied batch."""
        rows = await conn.fetch(self._positions, self.projection, self.topic)
        return {r["partition"]: r["next_offset"] for r in rows}

    async def states(self, conn: asyncpg.Connection, order_ids: Iterable[str]) -> dict[str, OrderState]:
        """The current state of each of these orders that has a row, in one query."""
        ids = list(order_ids)
        if not ids:
            return {}
        return {str(r["id"]): state_from_row(r) for r in await conn.fetch(self._states, ids)}

    async def write_rows(self, conn: asyncpg.Connection, folded: Folded) -> None:
        """Write a folded batch's events and order rows (the caller holds the transaction)."""
        topic = self.topic
        if folded.applied:
            rows = [event_row(d.event, topic, d.partition, d.offset) for d in folded.applied]
            await conn.execute(self._insert_events, *transpose(rows, len(EVENT_COLUMNS)))
        if folded.touched:
            await self.upsert_orders(
                conn, [order_row(t.state, topic, t.partition, t.offset) for t in folded.touched.values()]
            )

    async def upsert_orders(self, conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert or move forward these `orders` rows (a row never goes back to an older seq)."""
        if rows:
            await conn.execute(self._upsert_orders, *transpose(rows, len(ORDER_COLUMNS)))

    async def write_dead(self, conn: asyncpg.Connection, dead: Sequence[DeadLetter]) -> None:
        if dead:
            rows = [self.dead_row(d) for d in dead]
            await conn.execute(self._insert_dead, *transpose(rows, len(DEAD_LETTER_COLUMNS)))

    def dead_row(self, d: DeadLetter) -> tuple[Any, ...]:
        # Postgres text cannot hold NUL; a reason quoting a hostile record must still be storable.
        return (self.projection, self.topic, d.partition, d.offset, d.reason.replace("\x00", "\\0"), d.raw)

    async def write_positions(
        self, conn: asyncpg.Connection, positions: Mapping[int, int], ends: Mapping[int, int | None]
    ) -> None:
        if positions:
            parts = sorted(positions)
            await conn.execute(
                self._upsert_positions,
                self.projection,
                self.topic,
                parts,
                [positions[p] for p in parts],
                [ends.get(p) for p in parts],
            )

    async def notify(self, conn: asyncpg.Connection, positions: Mapping[int, int]) -> None:
        """Tell waiting readers (delivered at commit, so they never see a position before its rows)."""
        payload = {
            "schema": self.schema,
            "topic": self.topic,
            "positions": {str(p): n for p, n in positions.items()},
        }
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, orjson.dumps(payload).decode())

    async def heartbeat(self, conn: asyncpg.Connection, ends: Mapping[int, int | None]) -> None:
        """Record how far the log reaches, without moving any position (an idle projector's proof of life)."""
        if ends:
            parts = sorted(ends)
            await conn.execute(self._heartbeat, self.projection, self.topic, parts, [ends[p] for p in parts])
