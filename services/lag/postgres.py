"""What the projections say about themselves in Postgres: their stored positions, orders standing still, and
the resting orders.

`projector_positions` is the projector's tracking table (one row per projection, topic and partition, written
in the same transaction as the rows). Its `updated_at` is when the position last moved; `checked_at`
(migration 0002) is the projector's proof of life, refreshed while idle, so its age says whether a projector
process is running. Ages are computed by Postgres from its own clock, so host clocks do not matter.

The statements are SQLAlchemy Core `select()`s over `projections.tables`, compiled for asyncpg by the read
API's `compile_for` (decision 0026) once per projection schema and kept; asyncpg runs them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Interval,
    Text,
    any_,
    bindparam,
    cast,
    extract,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION, JSONB, TIMESTAMP

from events.lifecycle import RESTING
from projections.tables import orders
from projections.tables import projector_positions as positions
from services.lag.model import RestingOrders
from services.query.statements import Compiled, compile_for

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


def _age_s(at: ColumnElement[Any]) -> ColumnElement[float]:
    """Seconds from `at` to Postgres' clock now."""
    return cast(extract("epoch", func.clock_timestamp() - at), DOUBLE_PRECISION)


def _positions_select(of_topics: bool) -> Any:
    p = positions
    # to_jsonb of the whole row reads `checked_at` when the column exists and yields NULL when it does not
    # (a schema migrated to 0001 only): naming the column would fail the statement there.
    row = func.to_jsonb(p.table_valued(), type_=JSONB)
    checked_at = cast(row.op("->>")(literal_column("'checked_at'")), TIMESTAMP(timezone=True))
    statement = select(
        p.c.projection,
        p.c.topic,
        p.c.partition,
        p.c.next_offset,
        _age_s(p.c.updated_at).label("updated_age"),
        _age_s(checked_at).label("checked_age"),
    )
    if of_topics:
        statement = statement.where(p.c.topic == any_(bindparam("topics", type_=ARRAY(Text))))
    return statement.order_by(p.c.projection, p.c.topic, p.c.partition)


def _still_select() -> Any:
    o = orders
    return (
        select(
            cast(o.c.id, Text).label("id"),
            o.c.status,
            cast(extract("epoch", o.c.updated_at), DOUBLE_PRECISION).label("updated_at"),
            o.c.last_partition,
            o.c.last_seq,
        )
        .where(
            o.c.status == any_(bindparam("statuses", type_=ARRAY(Text))),
            o.c.updated_at < func.clock_timestamp() - bindparam("older_than", type_=Interval()),
        )
        .order_by(o.c.updated_at)
        .limit(bindparam("limit"))
    )


def _resting_select() -> Any:
    # `status = ANY(...)` is answered from the `orders_status_created` index.
    o = orders
    return (
        select(o.c.type, func.count().label("n"), _age_s(func.min(o.c.updated_at)).label("oldest_age"))
        .where(o.c.status == any_(bindparam("statuses", type_=ARRAY(Text))))
        .group_by(o.c.type)
    )


@dataclass(frozen=True, slots=True)
class Statements:
    """The lag views' statements for one projection schema."""

    positions: Compiled
    positions_of: Compiled  # of the given topics only
    still: Compiled
    resting: Compiled


@functools.lru_cache(maxsize=16)  # one schema per monitor; tests use a few
def statements(schema: str) -> Statements:
    return Statements(
        compile_for(_positions_select(False), schema),
        compile_for(_positions_select(True), schema),
        compile_for(_still_select(), schema),
        compile_for(_resting_select(), schema),
    )


async def _fetch(pool: asyncpg.Pool, statement: Compiled, values: Mapping[str, Any]) -> list[asyncpg.Record]:
    async with pool.acquire(timeout=_TIMEOUT_S) as conn:
        return await conn.fetch(statement.sql, *statement.args(values), timeout=_TIMEOUT_S)  # type: ignore[no-any-return]


async def stored_positions(
    pool: asyncpg.Pool, schema: str, topics: Sequence[str] | None = None
) -> list[StoredPosition]:
    """Every stored position (of `topics` when given); none when the table does not exist (yet)."""
    s = statements(schema)
    statement, values = (s.positions, {}) if topics is None else (s.positions_of, {"topics": list(topics)})
    try:
        rows = await _fetch(pool, statement, values)
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
    values = {"statuses": list(statuses), "older_than": timedelta(seconds=older_than_s), "limit": limit}
    try:
        rows = await _fetch(pool, statements(schema).still, values)
    except _MISSING:
        return []
    return [
        StillOrder(r["id"], r["status"], r["updated_at"], r["last_partition"], r["last_seq"]) for r in rows
    ]


async def resting_orders(pool: asyncpg.Pool, schema: str) -> RestingOrders | None:
    """The resting orders the projection holds now, by type; None when there is no orders table (yet)."""
    try:
        rows = await _fetch(pool, statements(schema).resting, {"statuses": sorted(RESTING)})
    except _MISSING:
        return None
    return RestingOrders(
        {r["type"]: r["n"] for r in sorted(rows, key=lambda r: r["type"])},
        max((max(0.0, r["oldest_age"]) for r in rows), default=0.0),
    )
