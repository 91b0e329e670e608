"""The bulk phase of a rebuild: replay the log into a fresh schema, in parallel over partitions.

An order's events all live in one partition, so partitions fold independently: the log's partitions are
dealt to `workers` processes (spawned; each with its own consumer, fold and COPY connection) that write into
the same tables. One process per core keeps Python's per-event work (decode, fold, row encoding: about two
thirds of the CPU a rebuild needs) off a single core while Postgres ingests on the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from events.topics import Topics
from projections import migrations
from projections.bulk import BulkWriter
from projections.db import dsn
from projections.logscan import LogScan
from projections.progress import Progress
from projections.replay import Replayer, ReplayStats
from projections.store import ProjectionStore
from services.config import Settings


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Plan:
    """What to replay: the log range per partition and how."""

    schema: str
    topic: str
    starts: dict[int, int]
    ends: dict[int, int]
    until: datetime | None
    batch_max: int
    max_open: int

    @property
    def total(self) -> int:
        return sum(self.ends[p] - self.starts.get(p, 0) for p in self.ends)


async def connect(settings: Settings, name: str = "oee-rebuild") -> asyncpg.Connection:
    return await asyncpg.connect(dsn(settings.database_url), server_settings={"application_name": name})


async def fresh_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Create and migrate `schema`; refuse one that already holds a projection (never overwrite data)."""
    has_tables = await conn.fetchval(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'orders'",
        schema,
    )
    if has_tables:
        raise BuildError(f"schema {schema} already holds a projection; drop it or choose another name")
    await migrations.apply(conn, schema)


_DEFERRABLE_INDEXES = """
SELECT c.relname AS index, t.relname AS table, pg_get_indexdef(i.indexrelid) AS indexdef,
       con.conname, pg_get_constraintdef(con.oid) AS condef
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype IN ('p', 'u')
WHERE n.nspname = $1 AND t.relname IN ('orders', 'order_events') AND c.relname <> 'orders_pkey'
ORDER BY c.relname
"""


async def defer_indexes(conn: asyncpg.Connection, schema: str) -> list[str]:
    """Drop the indexes a bulk load does not use; return the statements that build them again.

    Maintaining a B-tree on random UUIDs row by row costs Postgres more than the rows themselves (and a
    full-page image in the WAL for nearly every insert); building it once at the end is a sort. `orders_pkey`
    stays: the replay looks orders up by id.
    """
    q = migrations.quote_ident(schema)
    restore: list[str] = []
    for r in await conn.fetch(_DEFERRABLE_INDEXES, schema):
        if r["conname"]:
            await conn.execute(f'ALTER TABLE {q}.{r["table"]} DROP CONSTRAINT "{r["conname"]}"')
            restore.append(f'ALTER TABLE {q}.{r["table"]} ADD CONSTRAINT "{r["conname"]}" {r["condef"]}')
        else:
            await conn.execute(f'DROP INDEX {q}."{r["index"]}"')
            restore.append(r["indexdef"])
    return restore


async def replay(
    settings: Settings, plan: Plan, partitions: Sequence[int], report: Callable[[int], None] = lambda _: None
) -> ReplayStats:
    """Replay `partitions` of the plan in this process; `report(offsets done)` after every batch."""
    store = ProjectionStore(plan.schema, plan.topic)
    writer_conn, lookup = await connect(settings), await connect(settings)
    try:
        # Nothing needs to be durable before the end: a rebuild that dies is started again, and the final
        # synchronous commit of the positions flushes all the WAL before it.
        await writer_conn.execute("SET synchronous_commit = off")
        async with LogScan(
            settings.bootstrap_servers, plan.topic, batch_max=plan.batch_max, partitions=partitions
        ) as scan:
            starts = {p: plan.starts.get(p, 0) for p in partitions}
            ends = {p: plan.ends[p] for p in partitions}
            async with BulkWriter(writer_conn, store) as writer:
                replayer = Replayer(store, lookup, writer, until=plan.until, max_open=plan.max_open)
                reached = dict(starts)
                async for records, at in scan.read(starts, ends):
                    await replayer.feed(records)
                    reached.update(at)
                    report(sum(reached[p] - starts[p] for p in reached))
                await replayer.finish()
        return replayer.stats
    finally:
        await writer_conn.close()
        await lookup.close()


def _worker(settings: Settings, plan: Plan, partitions: list[int], out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """A spawned process: replay its partitions, telling the parent how far it is and how it ended."""
    import uvloop

    last = [0.0]

    def report(done: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.25:
            last[0] = now
            out.put(("progress", partitions[0], done))

    try:
        stats = uvloop.run(replay(settings, plan, partitions, report))
        out.put(("done", partitions[0], stats))
    except BaseException as exc:
        out.put(("error", partitions[0], f"{type(exc).__name__}: {exc}"))
        raise


async def _replay_in_workers(settings: Settings, plan: Plan, workers: int, shown: Progress) -> ReplayStats:
    parts = sorted(plan.ends)
    groups = [parts[i::workers] for i in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_worker, args=(settings, plan, g, out), daemon=True) for g in groups if g]
    for proc in procs:
        proc.start()
    done: dict[int, int] = {}
    total = ReplayStats()
    finished = 0
    try:
        while finished < len(procs):
            try:
                kind, key, value = out.get_nowait()
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise BuildError(
                        "a rebuild worker died: " + ", ".join(str(p.exitcode) for p in procs)
                    ) from None
                await asyncio.sleep(0.05)
                continue
            if kind == "progress":
                done[key] = value
                shown.update(sum(done.values()))
            elif kind == "done":
                total.add(value)
                finished += 1
            else:
                raise BuildError(f"a rebuild worker failed: {value}")
        for proc in procs:
            await asyncio.to_thread(proc.join, 30)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
    return total


def default_workers() -> int:
    """One per core, at most 4: beyond that Postgres, not Python, is the limit."""
    return max(1, min(4, os.cpu_count() or 1))


async def build(
    settings: Settings,
    schema: str,
    *,
    until: datetime | None = None,
    batch_max: int = 5000,
    max_open: int = 20_000,
    until_slack_s: float = 600.0,
    progress: bool = True,
    workers: int = 1,
) -> tuple[ReplayStats, dict[int, int], float]:
    """Replay the log from its beginning into the fresh `schema`; (stats, positions reached, seconds)."""
    topic = Topics.with_prefix(settings.topic_prefix).events
    conn = await connect(settings)
    try:
        await fresh_schema(conn, schema)
        restore = await defer_indexes(conn, schema)
        async with LogScan(settings.bootstrap_servers, topic) as scan:
            starts = await scan.beginning_offsets()
            ends = await scan.end_offsets()
            if until is not None and until_slack_s >= 0:
                cut = await scan.offsets_after(until + timedelta(seconds=until_slack_s))
                # (offset 0 is a cut too: a partition whose first record is past it has nothing to read)
                ends = {p: n if (c := cut[p]) is None else min(n, c) for p, n in ends.items()}
        ends = {p: max(n, starts.get(p, 0)) for p, n in ends.items()}
        plan = Plan(schema, topic, starts, ends, until, batch_max, max_open)
        shown = Progress(plan.total, f"rebuild {schema}")
        shown.enabled = shown.enabled and progress
        started = time.monotonic()
        try:
            workers = max(1, min(workers, len([p for p in ends if ends[p] > starts.get(p, 0)])))
            if workers == 1:
                stats = await replay(settings, plan, sorted(ends), shown.update)
            else:
                stats = await _replay_in_workers(settings, plan, workers, shown)
        finally:
            shown.close()
        store = ProjectionStore(schema, topic)
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for statement in restore:
            await conn.execute(statement)
        async with conn.transaction():
            await store.write_positions(conn, ends, ends)
        seconds = time.monotonic() - started
        for table in ("orders", "order_events"):
            await conn.execute(f"ANALYZE {store.qualified}.{table}")
        return stats, ends, seconds
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
