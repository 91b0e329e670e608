"""Rebuild the order projection by replaying the event log from offset 0, while the live projector serves.

1. **Build** into a fresh schema (`rebuild_<UTC timestamp>`, migrated like any other) up to a snapshot of the
   log's end offsets, streaming: bounded batches, open orders in memory, COPY, one process per core over the
   partitions (see `projections.build` and `projections.replay`).
2. **Catch up** the rebuilt schema to the live projector's positions with the live projector's own batch
   code, then, holding the projection's advisory lock (no live batch in flight), catch up the last records,
   **verify** (row counts, per-order last seq, row checksums: `projections.verify`) and **swap** the tables in
   the same transaction (`projections.swap`). `dry_run` reports the differences and swaps nothing; without
   `force`, differences also stop the swap.

Point in time: `until` keeps the events that occurred at or before it, and the dead letters of records
written at or before it (a record that does not decode has no occurred_at: its log timestamp decides), and
builds into a named schema for inspection (no verify, no swap). Records are read up to the first one stamped `until + slack` in each
partition (Kafka's time index), so an early instant does not read the whole log.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import asyncpg

from events.topics import Topics
from projections import migrations
from projections.batch import apply_batch
from projections.build import BuildError, build, connect, default_workers
from projections.logscan import LogScan
from projections.replay import ReplayStats
from projections.store import ProjectionStore
from projections.swap import lock_exclusive, swap_tables
from projections.verify import Comparison, compare
from services.config import Settings

Mode = Literal["swap", "dry-run", "inspect"]


class RebuildError(BuildError):
    pass


@dataclass(frozen=True, slots=True)
class RebuildOptions:
    live_schema: str = "public"
    schema: str | None = None
    """Build into this schema for inspection (no verify, no swap); default for a swap: rebuild_<timestamp>."""
    until: datetime | None = None
    dry_run: bool = False
    force: bool = False
    keep: bool = False
    batch_max: int = 5000
    max_open: int = 20_000
    until_slack_s: float = 600.0
    wait_live_s: float = 30.0
    progress: bool = True
    workers: int = field(default_factory=default_workers)

    @property
    def mode(self) -> Mode:
        if self.schema is not None or self.until is not None:
            return "inspect"
        return "dry-run" if self.dry_run else "swap"


@dataclass(slots=True)
class RebuildReport:
    mode: Mode
    schema: str
    stats: ReplayStats
    build_seconds: float
    positions: dict[int, int]
    caught_up: int = 0
    comparison: Comparison | None = None
    swapped: bool = False
    retired: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.stats.records / self.build_seconds if self.build_seconds > 0 else 0.0

    def summary(self) -> str:
        s = self.stats
        head = (
            f"rebuild ({self.mode}) into {self.schema}: {s.records:,} records in {self.build_seconds:.1f} s "
            f"({self.rate:,.0f} events/s); {s.applied:,} applied, {s.duplicates:,} duplicates, "
            f"{s.dead:,} dead letters"
        )
        if s.after_until:
            head += f", {s.after_until:,} after the point in time"
        if self.caught_up:
            head += f"; caught up {self.caught_up:,} more to the live positions"
        if self.comparison is not None:
            head += "; identical to live" if self.comparison.identical else "; DIFFERS from live"
        if self.mode == "swap":
            head += "; swapped in" if self.swapped else "; NOT swapped"
        return head


def _stamp() -> str:
    """UTC time to the second and a random suffix: two rebuilds in the same second get different schemas."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + "_" + os.urandom(2).hex()


async def _connect(settings: Settings) -> asyncpg.Connection:
    return await connect(settings)


async def catch_up(
    conn: asyncpg.Connection,
    store: ProjectionStore,
    scan: LogScan,
    current: dict[int, int],
    target: dict[int, int],
) -> int:
    """Apply the records between `current` and `target` (where target is ahead) with the live batch code;
    updates `current`; returns the number of events applied."""
    goal = {p: n for p, n in target.items() if n > current.get(p, 0)}
    applied = 0
    if not goal:
        return 0
    async for records, reached in scan.read({p: current.get(p, 0) for p in goal}, goal):
        moved = {p: n for p, n in reached.items() if n != current.get(p)}
        if not moved:
            continue
        outcome = await apply_batch(conn, store, records, dict(current), moved, {})
        if outcome.moved:
            raise RebuildError(f"positions of {store.schema} changed under the rebuild: {outcome.moved}")
        current.update(outcome.written)
        applied += outcome.applied
    return applied


async def rebuild(settings: Settings, options: RebuildOptions) -> RebuildReport:
    """Build, and unless inspecting: catch up, verify and (unless a dry run) swap. See the module doc."""
    mode = options.mode
    target = options.schema or (f"pit_{_stamp()}" if options.until is not None else f"rebuild_{_stamp()}")
    if mode != "inspect":
        conn = await _connect(settings)
        try:  # the live tables must exist to be compared with and swapped out
            await migrations.apply(conn, options.live_schema)
        finally:
            await conn.close()
    stats, positions, seconds = await build(
        settings,
        target,
        until=options.until,
        batch_max=options.batch_max,
        max_open=options.max_open,
        until_slack_s=options.until_slack_s,
        progress=options.progress,
        workers=options.workers,
    )
    report = RebuildReport(mode, target, stats, seconds, positions)
    if mode == "inspect":
        return report
    try:
        await _verify_and_swap(settings, options, report)
    finally:
        conn = await _connect(settings)
        try:
            if not options.keep:
                await conn.execute(f"DROP SCHEMA IF EXISTS {migrations.quote_ident(target)} CASCADE")
                if report.retired:
                    await conn.execute(
                        f"DROP SCHEMA IF EXISTS {migrations.quote_ident(report.retired)} CASCADE"
                    )
        finally:
            await conn.close()
    return report


async def _verify_and_swap(settings: Settings, options: RebuildOptions, report: RebuildReport) -> None:
    topic = Topics.with_prefix(settings.topic_prefix).events
    live, shadow = ProjectionStore(options.live_schema, topic), ProjectionStore(report.schema, topic)
    conn = await _connect(settings)
    try:
        async with LogScan(settings.bootstrap_servers, topic, batch_max=options.batch_max) as scan:
            starts = await scan.beginning_offsets()
            current = await shadow.positions(conn)
            # Unlocked first: follow the live projector until it is at or past the snapshot everywhere.
            deadline = time.monotonic() + options.wait_live_s
            while True:
                live_at = await live.positions(conn)
                report.caught_up += await catch_up(conn, shadow, scan, current, live_at)
                behind = {p: (live_at.get(p, starts.get(p, 0)), n) for p, n in current.items()
                          if live_at.get(p, starts.get(p, 0)) < n}  # fmt: skip
                if not behind or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            if behind:
                report.notes.append(
                    "the live projection is behind the log (partition: live, rebuilt): "
                    + ", ".join(f"{p}: {a}, {b}" for p, (a, b) in sorted(behind.items()))
                )
            tx = conn.transaction()
            await tx.start()
            try:
                await lock_exclusive(conn, options.live_schema)
                report.caught_up += await catch_up(conn, shadow, scan, current, await live.positions(conn))
                report.comparison = await compare(conn, options.live_schema, report.schema)
                if options.dry_run or not (report.comparison.identical or options.force):
                    await tx.rollback()
                    return
                report.retired = f"retired_{_stamp()}"
                await swap_tables(conn, options.live_schema, report.schema, report.retired)
                await live.notify(
                    conn, current
                )  # readers waiting on a position look again, at the new tables
            except BaseException:
                await tx.rollback()
                raise
            await tx.commit()
            report.swapped = True
    finally:
        await conn.close()
