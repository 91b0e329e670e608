"""The durable record of every order id the router has admitted: at most one lifecycle per order id, forever.

The router's memory of finished orders is a bounded cache; this record is the truth behind it. Before a
batch's new orders start (before the Kafka transaction that writes their first events), their ids are
recorded with the intake (partition, offset) of the admitting record, in one statement per batch:

- a new id is recorded: the order starts;
- an id already recorded by this very record (same partition and offset) is that record read again after
  a transaction that did not commit: the order starts (its first attempt left nothing in the log);
- an id recorded by another record is a duplicate request: ignored (logged and counted).

The PostgreSQL store (schema `oee_state`, decision 0007) fails closed: while the database cannot be reached,
`admit` retries with backoff and never answers, so nothing is admitted unchecked; it carries on by itself
when the database is back. `InMemoryAdmissions` is the same contract in a dict, for unit tests and for
benchmarks without a database (it forgets everything at exit).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from projections.db import Reconnecting
from projections.migrations import STATE_SCHEMA, STATE_SQL_DIR, apply

log = logging.getLogger("oee.router")

TABLE = f"{STATE_SCHEMA}.router_seen_orders"
STATEMENT_TIMEOUT_S = 10.0  # a database that stopped answering counts as unavailable: retry on a new link

_INSERT = f"""
INSERT INTO {TABLE} (scope, order_id, intake_partition, intake_offset)
SELECT $1, t.order_id, t.p, t.o FROM unnest($2::uuid[], $3::integer[], $4::bigint[]) AS t(order_id, p, o)
ON CONFLICT (scope, order_id) DO NOTHING
RETURNING order_id::text, intake_partition, intake_offset
"""
_EXISTING = f"""
SELECT order_id::text, intake_partition, intake_offset FROM {TABLE}
WHERE scope = $1 AND order_id = ANY($2::uuid[])
"""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A request that would start order `order_id`, read at intake (`partition`, `offset`)."""

    order_id: str
    partition: int
    offset: int


class Admissions(Protocol):
    async def admit(self, scope: str, candidates: Sequence[Candidate]) -> set[Candidate]:
        """Record the candidates' order ids; return the candidates that may start (see the module docstring). Two
        candidates with one id (different keys put it in two partitions): only the first is recorded.
        Waits, retrying, while the store is unreachable."""
        ...

    async def prepare(self) -> None:
        """Get ready before the first admission (the router calls it at start); waits like `admit`."""
        ...

    async def aclose(self) -> None: ...


def verdict(candidates: Sequence[Candidate], recorded: Mapping[str, tuple[int, int]]) -> set[Candidate]:
    """Which candidates may start: those whose id is recorded with their own (partition, offset), whether
    this attempt recorded it or an earlier read of the same record did. Pure: both stores decide with it."""
    return {c for c in candidates if recorded.get(c.order_id) == (c.partition, c.offset)}


class PgAdmissions:
    """`Admissions` in PostgreSQL: one INSERT ... ON CONFLICT DO NOTHING RETURNING per batch, and a look-up
    of the conflicting rows only when there are some."""

    def __init__(self, url: str, *, backoff_s: tuple[float, float] = (0.1, 5.0)) -> None:
        self._db = Reconnecting(url, application_name="oee-router", backoff_s=backoff_s)
        self._lock = asyncio.Lock()  # one connection: one statement at a time
        self._migrated = False

    async def prepare(self) -> None:
        """Connect and apply the `oee_state` migrations (idempotent, safe beside other processes)."""

        async def work(conn: asyncpg.Connection) -> None:
            await self._migrate(conn)

        async with self._lock:
            await self._db.run(work)

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        if not self._migrated:
            applied = await apply(conn, STATE_SCHEMA, STATE_SQL_DIR)
            if applied:
                log.info("applied %s to schema %s", ", ".join(applied), STATE_SCHEMA)
            self._migrated = True

    async def admit(self, scope: str, candidates: Sequence[Candidate]) -> set[Candidate]:
        if not candidates:
            return set()

        async def work(conn: asyncpg.Connection) -> set[Candidate]:
            await self._migrate(conn)
            ids = [c.order_id for c in candidates]
            rows = await conn.fetch(
                _INSERT,
                scope,
                ids,
                [c.partition for c in candidates],
                [c.offset for c in candidates],
                timeout=STATEMENT_TIMEOUT_S,
            )
            recorded = {r[0]: (r[1], r[2]) for r in rows}
            if len(recorded) < len(candidates):
                others = [i for i in ids if i not in recorded]
                for r in await conn.fetch(_EXISTING, scope, others, timeout=STATEMENT_TIMEOUT_S):
                    recorded[r[0]] = (r[1], r[2])
            return verdict(candidates, recorded)

        async with self._lock:
            return await self._db.run(work)

    async def aclose(self) -> None:
        await self._db.close()


class InMemoryAdmissions:
    """`Admissions` in a dict: the same verdicts, kept only as long as the process (tests, benchmarks)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[int, int]] = {}

    async def admit(self, scope: str, candidates: Sequence[Candidate]) -> set[Candidate]:
        recorded = {
            c.order_id: self.rows.setdefault((scope, c.order_id), (c.partition, c.offset)) for c in candidates
        }
        return verdict(candidates, recorded)

    async def prepare(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
