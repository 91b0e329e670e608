"""Compare two copies of the projection (live and rebuilt): row counts, per-order last seq, row checksums.

The checksum of a table is computed in SQL over a canonical text of each row: `ROW(columns in name order)::text`
with the session in UTC and shortest-exact float output, hashed with md5 and summed as 64-bit integers (an
order-independent sum, so no sort of a million rows and no giant string). Columns that record when this
machine did something (`updated_at`, `checked_at`, `end_offset` of positions, `recorded_at` of dead letters)
are not part of it: they are not derived from the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from projections.migrations import quote_ident
from projections.store import PROJECTION_TABLES

WALL_CLOCK_COLUMNS = frozenset({"updated_at", "checked_at", "end_offset", "recorded_at"})
_NOT_FROM_THE_LOG = {
    "projector_positions": WALL_CLOCK_COLUMNS,
    "projector_dead_letters": WALL_CLOCK_COLUMNS,
}


@dataclass(frozen=True, slots=True)
class Digest:
    rows: int
    checksum: str


@dataclass(slots=True)
class Comparison:
    live: str
    shadow: str
    digests: dict[str, tuple[Digest, Digest]] = field(default_factory=dict)
    last_seq_differs: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.last_seq_differs == 0 and all(a == b for a, b in self.digests.values())

    def lines(self) -> list[str]:
        out = []
        for table, (a, b) in self.digests.items():
            same = "same" if a == b else "DIFFERENT"
            out.append(f"{table:<24} live {a.rows:>10} rows  rebuilt {b.rows:>10} rows  checksum {same}")
        if self.last_seq_differs:
            out.append(f"orders whose last seq differs: {self.last_seq_differs}")
        out.extend(f"  e.g. {e}" for e in self.examples)
        return out


async def columns(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    """The columns of a table that come from the log, in name order (the canonical order)."""
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2"
        " ORDER BY column_name",
        schema,
        table,
    )
    skip = _NOT_FROM_THE_LOG.get(table, frozenset())
    return [r["column_name"] for r in rows if r["column_name"] not in skip]


def row_text(cols: list[str]) -> str:
    return "ROW(" + ", ".join(f'"{c}"' for c in cols) + ")::text"


async def digest(conn: asyncpg.Connection, schema: str, table: str) -> Digest:
    """Row count and checksum of one table (the caller's transaction sets the canonical output settings)."""
    cols = await columns(conn, schema, table)
    if not cols:
        raise ValueError(f"{schema}.{table} does not exist")
    row = await conn.fetchrow(
        f"SELECT count(*) AS n, coalesce(sum(('x' || left(md5({row_text(cols)}), 16))::bit(64)::bigint"
        f"::numeric), 0)::text AS h FROM {quote_ident(schema)}.{table}"
    )
    assert row is not None
    return Digest(row["n"], row["h"])


async def canonical_output(conn: asyncpg.Connection) -> None:
    """Inside a transaction: print rows the same way whatever the session's settings."""
    await conn.execute("SET LOCAL TimeZone = 'UTC'")
    await conn.execute("SET LOCAL extra_float_digits = 1")
    await conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")


async def compare(conn: asyncpg.Connection, live: str, shadow: str, examples: int = 10) -> Comparison:
    """Compare every projection table of two schemas (call inside a transaction)."""
    await canonical_output(conn)
    out = Comparison(live, shadow)
    for table in PROJECTION_TABLES:
        out.digests[table] = (await digest(conn, live, table), await digest(conn, shadow, table))
    a, b = quote_ident(live), quote_ident(shadow)
    join = f"FROM {a}.orders l FULL JOIN {b}.orders s ON l.id = s.id WHERE l.last_seq IS DISTINCT FROM s.last_seq"
    out.last_seq_differs = await conn.fetchval(f"SELECT count(*) {join}")
    for r in await conn.fetch(
        f"SELECT coalesce(l.id, s.id) AS id, l.last_seq AS a, s.last_seq AS b {join} LIMIT $1", examples
    ):
        out.examples.append(f"order {r['id']}: last seq live {r['a']}, rebuilt {r['b']}")
    if out.digests["orders"][0] != out.digests["orders"][1] and len(out.examples) < examples:
        cols = await columns(conn, live, "orders")
        text = row_text(cols)
        differing = await conn.fetch(
            f"SELECT id FROM (SELECT id, {text} AS r FROM {a}.orders EXCEPT SELECT id, {text} AS r FROM {b}.orders)"
            " AS d ORDER BY id LIMIT $1",
            examples - len(out.examples),
        )
        out.examples.extend(f"order {r['id']}: row differs" for r in differing)
    return out
