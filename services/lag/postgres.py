"""What the projections say about themselves in Postgres: their stored positions, and orders standing still.

`projector_positions` is the projector's tracking table (one row per projection, topic and partition, written
in the same transaction as the rows). Its `updated_at` is when the position last moved; `checked_at`
(migration 0002) is the projector's proof of life, refreshed while idle, so its age says whether a projector
process is running. Ages are computed by Postgres from its own clock, so host clocks do not matter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

log = logging.getLogger("oee.lag")

_TIMEOUT_S = 5.0  # a database that does not answer must not hold up the Kafka half of a sample
_MISSING = (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError, asyncpg.UndefinedColumnError)


@dataclass(frozen=True, slots=True)
class StoredPosition:
    projection: str
    topic: str
    partition: int
    next_offset: int
    updated_age_s: float  # seconds since the position last moved
    checked_age_s: float | None  # seconds since the projector last looked (None: not recorded)


@dataclass(frozen=True, slots=True)
class StillOrder:
    """An order whose projected row has not changed for a while (`updated_at` is its last event's time)."""

    order_id: str
    status: str
    updated_at: float  # epoch seconds
    partition: int
    seq: int


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def stored_positions(
    pool: asyncpg.Pool, schema: str, topics: Sequence[str] | None = None
) -> list[StoredPosition]:
    """Every stored position (of `topics` when given); none when the table does not exist (yet)."""
    # to_jsonb reads `checked_at` when the column exists and yields NULL when it does not (0001 only).
    sql = (
        "SELECT projection, topic, partition, next_offset,"
        " extract(epoch FROM clock_timestamp() - updated_at)::float8 AS updated_age,"
        " extract(epoch FROM clock_timestamp() - (to_jsonb(p) ->> 'checked_at')::timestamptz)::float8"
        " AS checked_age"
        f" FROM {quote_ident(schema)}.projector_positions p"
    )
    args: list[object] = []
    if topics is not None:
        sql += " WHERE topic = ANY($1::text[])"
        args.append(list(topics))
    try:
        async with pool.acquire(timeout=_TIMEOUT_S) as conn:
            rows = await conn.fetch(sql + " ORDER BY projection, topic, partition", *args, timeout=_TIMEOUT_S)
    except _MISSING:
        return []
    return [
        StoredPosition(
            r["projection"],
            r["topic"],
            r["partition"],
            r["next_offset"],
            max(0.0, r["updated_age"]),
            None if r["checked_age"] is None else max(0.0, r["checked_age"]),
        )
        for r in rows
    ]


async def still_orders(
    pool: asyncpg.Pool, schema: str, statuses: Sequence[str], older_than_s: float, limit: int = 1000
) -> list[StillOrder]:
    """Orders in `statuses` whose last event is older than `older_than_s`, oldest first."""
    sql = (
        "SELECT id::text AS id, status, extract(epoch FROM updated_at)::float8 AS updated_at,"
        " last_partition, last_seq"
        f" FROM {quote_ident(schema)}.orders"
        " WHERE status = ANY($1::text[]) AND updated_at < clock_timestamp() - make_interval(secs => $2)"
        " ORDER BY updated_at LIMIT $3"
    )
    try:
        async with pool.acquire(timeout=_TIMEOUT_S) as conn:
            rows = await conn.fetch(sql, list(statuses), older_than_s, limit, timeout=_TIMEOUT_S)
    except _MISSING:
        return []
    return [
        StillOrder(r["id"], r["status"], r["updated_at"], r["last_partition"], r["last_seq"]) for r in rows
    ]
