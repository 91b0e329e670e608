"""Helpers the projection tests share: a schema of their own, the log's end, table dumps, a reference replay.

A test gets its own topics (the `topics` fixture) and its own Postgres schema (the `schema` fixture of
`tests/projection_plugin.py`), so tests neither see each other's rows nor need cleanup beyond dropping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import asyncpg
from aiokafka import AIOKafkaProducer

from events.codec import encode, headers_for, key_for
from events.envelope import Event
from events.lifecycle import OrderState
from events.topics import Topics
from projections.fold import LogRecord, decode_records, fold
from projections.logscan import LogScan
from projections.projector import Projector
from projections.settings import ProjectorOptions
from projections.store import ProjectionStore
from services.config import Settings

TABLE_KEYS = {
    "orders": "id",
    "order_events": "order_id, seq",
    "projector_positions": "projection, topic, partition",
    "projector_dead_letters": 'projection, topic, partition, "offset"',
}
# Columns that say when something happened on this machine, not what the log says: not part of equality.
VOLATILE = {"updated_at", "checked_at", "end_offset", "recorded_at"}


def settings_for(infra: Settings, topics: Topics) -> Settings:
    return dataclasses.replace(infra, topic_prefix=topics.events.removesuffix("orders.events"))


async def produce(
    bootstrap: str,
    topic: str,
    items: Iterable[Event | tuple[bytes, bytes | None] | tuple[bytes, bytes | None, int]],
    *,
    linger_ms: int = 5,
    stamped: bool = False,
) -> None:
    """Write events (keyed by order id) or raw (key, value[, timestamp ms]) records, in this order, acks=all.

    `stamped`: each event's record carries its occurred_at as its log timestamp (history as if written when
    it happened), instead of the time of writing."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=linger_ms
    )
    await producer.start()
    try:
        futures = []
        for item in items:
            if isinstance(item, tuple):
                key, value, *at = item
                futures.append(await producer.send(topic, value, key=key, timestamp_ms=at[0] if at else None))
            else:
                at_ms = int(item.occurred_at.timestamp() * 1000) if stamped else None
                futures.append(
                    await producer.send(
                        topic, encode(item), key=key_for(item), headers=headers_for(item), timestamp_ms=at_ms
                    )
                )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def log_end(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> end offset as read_committed sees it (the last stable offset)."""
    async with LogScan(bootstrap, topic) as scan:
        return await scan.end_offsets()


async def read_log(bootstrap: str, topic: str) -> list[LogRecord]:
    """Every record of the topic up to its current end, in partition then offset order."""
    records: list[LogRecord] = []
    async with LogScan(bootstrap, topic) as scan:
        async for batch, _ in scan.read(await scan.beginning_offsets(), await scan.end_offsets()):
            records.extend(batch)
    return sorted(records, key=lambda r: (r.partition, r.offset))


async def reference_replay(
    conn: asyncpg.Connection, schema: str, topic: str, records: list[LogRecord], ends: dict[int, int]
) -> None:
    """The pure fold of the whole log, written once into `schema` (already migrated): the expected tables."""
    store = ProjectionStore(schema, topic)
    decoded, dead = decode_records(records)
    states: dict[str, OrderState] = {}
    folded = fold(decoded, states)
    folded.dead.extend(dead)
    async with conn.transaction():
        await store.write_rows(conn, folded)
        await store.write_dead(conn, folded.dead)
        await store.write_positions(conn, ends, {})


async def dump(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    """The table's rows as Postgres prints them, ordered by key, without the wall-clock columns."""
    cols = [
        r["column_name"]
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2"
            " ORDER BY column_name",
            schema,
            table,
        )
        if r["column_name"] not in VOLATILE
    ]
    assert cols, f"{schema}.{table} does not exist"
    quoted = ", ".join(f'"{c}"' for c in cols)
    async with conn.transaction():
        await conn.execute("SET LOCAL TimeZone = 'UTC'")
        rows = await conn.fetch(
            f'SELECT ROW({quoted})::text AS r FROM "{schema}".{table} ORDER BY {TABLE_KEYS[table]}'
        )
    return [r["r"] for r in rows]


async def dump_all(
    conn: asyncpg.Connection, schema: str, tables: Iterable[str] = TABLE_KEYS
) -> dict[str, list[str]]:
    return {t: await dump(conn, schema, t) for t in tables}


async def positions(conn: asyncpg.Connection, schema: str, topic: str) -> dict[int, int]:
    rows = await conn.fetch(
        f'SELECT partition, next_offset FROM "{schema}".projector_positions WHERE topic = $1', topic
    )
    return {r["partition"]: r["next_offset"] for r in rows}


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, on_fail: Callable[[], str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}" + (f"\n{on_fail()}" if on_fail else "")
            )
        await asyncio.sleep(0.05)


async def wait_caught_up(
    conn: asyncpg.Connection,
    schema: str,
    topic: str,
    ends: dict[int, int],
    timeout: float = 60.0,
    on_fail: Callable[[], str] | None = None,
) -> None:
    """Until the stored positions reach `ends` on every partition."""

    async def done() -> bool:
        at = await positions(conn, schema, topic)
        return all(at.get(p, -1) >= n for p, n in ends.items())

    await wait_until(done, timeout, f"projection {schema} to reach {ends}", on_fail)


@contextlib.asynccontextmanager
async def running_projector(settings: Settings, schema: str, **options: object) -> AsyncIterator[Projector]:
    """A projector in this process (a task), stopped cleanly on exit; its failure fails the test."""
    opts = ProjectorOptions(schema=schema, poll_s=0.1, heartbeat_s=0.2, **options)  # type: ignore[arg-type]
    projector = Projector(settings, opts)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        yield projector
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
