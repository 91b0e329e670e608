"""A small runner for the ordered plain-SQL migrations in `sql/` (NNNN_name.sql).

Each file runs once per schema, in its own transaction, recorded in `schema_migrations`. An advisory lock
keeps two starting processes (the stack and a projector, say) from applying the same file twice.
A schema other than `public` lets tests and point-in-time rebuilds have their own copy of the tables.

Two sets of migrations, two kinds of tables (docs/decisions/0007):

- `sql/NNNN_*.sql`: the **projections**, derived from the event log; a rebuild creates them afresh in a new
  schema and swaps it in.
- `sql/state/NNNN_*.sql`: **command-side state** in schema `oee_state` (durable dedup of order ids and
  Idempotency-Keys, accounts): written by the services before they act, never derived from the log, never
  rebuilt or swapped. `migrate_state` applies them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
STATE_SQL_DIR = SQL_DIR / "state"
STATE_SCHEMA = "oee_state"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x0EE_5C4E


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def discover(directory: Path = SQL_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_case.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version number in {directory}")
    return found


def quote_ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise MigrationError(f"schema name {name!r} must be lower-case letters, digits and underscores")
    return f'"{name}"'


async def apply(conn: asyncpg.Connection, schema: str = "public", directory: Path = SQL_DIR) -> list[str]:
    """Apply the migrations this schema lacks; return the names applied. Safe to call concurrently."""
    ident = quote_ident(schema)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {ident}.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["version"]: r
            for r in await conn.fetch(f"SELECT version, name, checksum FROM {ident}.schema_migrations")
        }
        for migration in discover(directory):
            if migration.version in done:
                if done[migration.version]["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"{migration.name} changed after it was applied to schema {schema}; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {ident}")
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO {ident}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def migrate(url: str, schema: str = "public") -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await apply(conn, schema)
    finally:
        await conn.close()


async def migrate_state(url: str) -> list[str]:
    """Apply the command-side state migrations (`sql/state/`) to schema `oee_state`."""
    conn = await asyncpg.connect(url)
    try:
        return await apply(conn, STATE_SCHEMA, STATE_SQL_DIR)
    finally:
        await conn.close()
