"""One live batch: its rows and its new positions in ONE Postgres transaction, checked against what is stored.

The database is the record of what was applied. Inside the transaction the batch first reads the stored
positions: a partition whose stored position is not the one this process expected (another projector got
there first after a rebalance, a rebuild swapped the tables, or our own previous COMMIT succeeded although
its answer was lost) is left out of the batch, and the caller re-reads it from the stored position. So a
record is applied exactly when its position is, never twice and never skipped.

A value Postgres refuses (a NUL in a string, say) would fail the whole batch forever; when that happens the
batch is applied again one event at a time, each in a savepoint, and the refused events become dead letters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from events.lifecycle import OrderState
from projections.fold import DeadLetter, Decoded, Folded, Record, decode_records, fold
from projections.store import ProjectionStore

log = logging.getLogger("oee.projector")

ROW_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
"""Errors that one bad value causes (classes 22, 23, 54), as opposed to the database being unavailable."""


@dataclass(slots=True)
class BatchOutcome:
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    written: dict[int, int] = field(default_factory=dict)
    """partition -> the position now stored for it by this batch."""
    moved: dict[int, int | None] = field(default_factory=dict)
    """partition -> the position found stored when it was not the expected one (None: no row)."""


async def apply_batch(
    conn: asyncpg.Connection,
    store: ProjectionStore,
    records: Sequence[Record],
    expected: Mapping[int, int | None],
    positions: Mapping[int, int],
    ends: Mapping[int, int | None],
    before_commit: Callable[[], None] | None = None,
) -> BatchOutcome:
    """Apply `records` and move each partition in `positions` there, if its stored position is `expected`.

    Every partition of `records` must be in `positions` (the consumer's position after them).
    """
    decoded, undecodable = decode_records(records)
    try:
        return await _apply(
            conn, store, decoded, undecodable, expected, positions, ends, False, before_commit
        )
    except ROW_ERRORS as exc:
        log.warning(
            "Postgres refused a batch (%s: %s); applying it one event at a time", type(exc).__name__, exc
        )
        return await _apply(conn, store, decoded, undecodable, expected, positions, ends, True, before_commit)


async def _apply(
    conn: asyncpg.Connection,
    store: ProjectionStore,
    decoded: list[Decoded],
    undecodable: list[DeadLetter],
    expected: Mapping[int, int | None],
    positions: Mapping[int, int],
    ends: Mapping[int, int | None],
    isolate: bool,
    before_commit: Callable[[], None] | None,
) -> BatchOutcome:
    out = BatchOutcome()
    async with conn.transaction():
        await store.lock_shared(conn)
        stored = await store.positions(conn)
        out.moved = {p: stored.get(p) for p in positions if stored.get(p) != expected.get(p)}
        if out.moved:
            decoded = [d for d in decoded if d.partition not in out.moved]
            undecodable = [d for d in undecodable if d.partition not in out.moved]
        states = await store.states(conn, {d.event.order_id for d in decoded})
        if isolate:
            folded = await _apply_one_by_one(conn, store, decoded, states)
        else:
            folded = fold(decoded, states)
            await store.write_rows(conn, folded)
        folded.dead.extend(undecodable)
        await store.write_dead(conn, folded.dead)
        out.written = {p: n for p, n in positions.items() if p not in out.moved}
        await store.write_positions(conn, out.written, ends)
        if out.written:
            await store.notify(conn, out.written)
        if before_commit is not None:
            before_commit()
    out.applied = len(folded.applied)
    out.duplicates = folded.duplicates
    out.dead = len(folded.dead)
    return out


async def _apply_one_by_one(
    conn: asyncpg.Connection, store: ProjectionStore, decoded: list[Decoded], states: dict[str, OrderState]
) -> Folded:
    """The slow path: each event and its order row in a savepoint; a refused one is dead-lettered and its
    order keeps the state it had (its later events then show up as gaps, dead-lettered too)."""
    out = Folded()
    for d in decoded:
        oid = d.event.order_id
        before = states.get(oid)
        one = fold([d], states)
        try:
            async with conn.transaction():
                await store.write_rows(conn, one)
        except ROW_ERRORS as exc:
            if before is None:
                states.pop(oid, None)
            else:
                states[oid] = before
            reason = f"refused by Postgres: {type(exc).__name__}: {exc}"
            out.dead.append(DeadLetter(d.partition, d.offset, reason, d.raw))
            continue
        out.applied.extend(one.applied)
        out.touched.update(one.touched)
        out.duplicates += one.duplicates
        out.dead.extend(one.dead)
    return out
