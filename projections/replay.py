"""Fold the whole log into a fresh schema, fast and in bounded memory: the bulk phase of a rebuild.

It gives exactly the rows the live projector writes (same fold, same row mapping), but keeps the states of
open orders in memory instead of reading them back per batch, and writes each order's row once, when it
becomes terminal (or when it is evicted to keep at most `max_open` open orders in memory, or at the end).

An order not in memory is either new or has a row already (written, or queued to be). Its first event in
the batch tells which case to check: seq 1 is almost always a new order, but a redelivered seq 1 of an order
finished long ago is possible, so those ids are checked against the table in one query per batch; any other
first event means the state must come from the row (after the queued writes are committed). So the result
does not depend on what memory could hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from events.lifecycle import OrderState, is_terminal
from projections.bulk import BulkWriter, Job
from projections.fold import Decoded, Record, decode_records, fold, written_by
from projections.rows import event_row, order_row
from projections.store import ProjectionStore


@dataclass(slots=True)
class ReplayStats:
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    after_until: int = 0
    reloaded: int = 0
    evicted: int = 0

    def add(self, other: ReplayStats) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Replayer:
    """Feeds log batches through the fold into `writer`; call `finish` after the last one."""

    def __init__(
        self,
        store: ProjectionStore,
        lookup: asyncpg.Connection,
        writer: BulkWriter,
        *,
        until: datetime | None = None,
        max_open: int = 20_000,
    ) -> None:
        self.store = store
        self.writer = writer
        self.until = until
        self.max_open = max_open
        self.stats = ReplayStats()
        self._lookup = lookup
        self._exists = f"SELECT id FROM {store.qualified}.orders WHERE id = ANY($1::uuid[])"
        self._open: dict[str, OrderState] = {}  # insertion order = eviction order (longest open first)
        self._where: dict[str, tuple[int, int]] = {}  # order id -> (partition, offset) of its last event
        self._has_row: set[str] = set()  # open orders that already have a row (reloaded): upsert, not COPY

    async def feed(self, records: list[Record]) -> None:
        decoded, undecodable = decode_records(records)
        undecodable_after = 0
        if self.until is not None:  # (the events after it are left out by the fold, by their occurred_at)
            undecodable, undecodable_after = written_by(undecodable, self.until)
        reloaded = await self._load_missing(decoded)
        folded = fold(decoded, self._open, until=self.until)
        topic = self.store.topic
        job = Job(events=[event_row(d.event, topic, d.partition, d.offset) for d in folded.applied])
        for oid in reloaded - folded.touched.keys():  # reloaded for nothing (duplicates): forget again
            self._open.pop(oid, None)
            self._has_row.discard(oid)
        for oid, t in folded.touched.items():
            self._where[oid] = (t.partition, t.offset)
            if is_terminal(t.state.status):
                self._retire(oid, job)
        while len(self._open) > self.max_open:
            self._retire(next(iter(self._open)), job)
            self.stats.evicted += 1
        job.dead = [self.store.dead_row(d) for d in (*folded.dead, *undecodable)]
        s = self.stats
        s.records += len(records)
        s.applied += len(folded.applied)
        s.duplicates += folded.duplicates
        s.dead += len(job.dead)
        s.after_until += folded.after_until + undecodable_after
        await self.writer.put(job)

    async def finish(self) -> None:
        """Write the orders still open and wait for every write to commit."""
        job = Job()
        for oid in list(self._open):
            self._retire(oid, job)
        await self.writer.put(job)
        await self.writer.drain()

    def _retire(self, oid: str, job: Job) -> None:
        state = self._open.pop(oid)
        partition, offset = self._where.pop(oid)
        row = order_row(state, self.store.topic, partition, offset)
        if oid in self._has_row:
            self._has_row.discard(oid)
            job.upsert_orders.append(row)
        else:
            job.new_orders.append(row)
        job.order_ids.add(oid)

    async def _load_missing(self, decoded: list[Decoded]) -> set[str]:
        """Bring into memory the state of every order of the batch that has a row but is not in memory."""
        first: dict[str, int] = {}
        for d in decoded:
            oid = d.event.order_id
            if oid not in self._open and oid not in first:
                first[oid] = d.event.seq
        if not first:
            return set()
        pending = self.writer.pending_ids
        known = [oid for oid, seq in first.items() if seq != 1 or oid in pending]
        maybe_new = [oid for oid, seq in first.items() if seq == 1 and oid not in pending]
        if maybe_new:
            # Rows of jobs committed before this query are visible; the ones still queued were in `pending`.
            known += [str(r["id"]) for r in await self._lookup.fetch(self._exists, maybe_new)]
        if not known:
            return set()
        await self.writer.drain()
        rows = await self.store.states(self._lookup, known)
        self._open.update(rows)
        self._has_row.update(rows)
        self.stats.reloaded += len(rows)
        return set(rows)
