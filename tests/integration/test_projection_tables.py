"""`projections.tables` (SQLAlchemy metadata) against what the migrations in `sql/` create.

One schema is migrated, another created from the metadata's DDL; Postgres' own catalog of both (column types
as `format_type` prints them, nullability, defaults, every constraint and index as `pg_get_*def` prints it)
must be equal. So a migration that changes a table without the metadata, or the reverse, fails here, and so
does a bulk writer (`projections.rows`) whose column or type lists drift from the tables.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Column, MetaData, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from projections import migrations, rows, tables
from projections.store import PROJECTION_TABLES

pytestmark = pytest.mark.integration

_COLUMNS = """
SELECT c.relname AS tbl, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS dflt
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> 'schema_migrations' AND a.attnum > 0
  AND NOT a.attisdropped
"""
_INDEXES = """
SELECT c.relname AS tbl, i.relname AS name, pg_get_indexdef(i.oid) AS def
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname <> 'schema_migrations'
"""
_CONSTRAINTS = """
SELECT c.relname AS tbl, k.conname AS name, pg_get_constraintdef(k.oid) AS def
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname <> 'schema_migrations' AND k.contype <> 'n'
"""
# (contype 'n': PostgreSQL 18 lists NOT NULL as constraints; nullability is compared with the columns)

Catalog = dict[str, str]
"""'orders.status' / 'orders index orders_created' / ... -> how Postgres describes it."""


async def describe(conn: asyncpg.Connection, schema: str) -> Catalog:
    """Every table of `schema` (bar the migrations' own) as Postgres' catalog has it, keyed by what it is."""
    out: Catalog = {}
    for r in await conn.fetch(_COLUMNS, schema):
        not_null = "NOT NULL" if r["not_null"] else "NULL"
        out[f"{r['tbl']}.{r['col']}"] = f"{r['type']} {not_null} DEFAULT {r['dflt']}"
    for r in await conn.fetch(_INDEXES, schema):
        # pg_get_indexdef names the table with its schema: the two schemas differ, the indexes must not
        out[f"{r['tbl']} index {r['name']}"] = r["def"].replace(f" ON {schema}.", " ON ")
    for r in await conn.fetch(_CONSTRAINTS, schema):
        out[f"{r['tbl']} constraint {r['name']}"] = r["def"]
    return out


def ddl(metadata: MetaData, schema: str) -> list[str]:
    """The metadata's CREATE TABLE and CREATE INDEX statements, for `schema`."""
    dialect = postgresql.dialect()
    statements = []
    for table in metadata.sorted_tables:
        for element in [CreateTable(table), *(CreateIndex(i) for i in table.indexes)]:
            compiled = element.compile(
                dialect=dialect, schema_translate_map={None: schema}, render_schema_translate=True
            )
            statements.append(str(compiled))
    return statements


async def from_metadata(conn: asyncpg.Connection, metadata: MetaData, schema: str) -> Catalog:
    await conn.execute(f"CREATE SCHEMA {migrations.quote_ident(schema)}")
    for statement in ddl(metadata, schema):
        await conn.execute(statement)
    return await describe(conn, schema)


def differences(migrated: Catalog, described: Catalog) -> list[str]:
    out = []
    for key in sorted(migrated.keys() | described.keys()):
        a, b = migrated.get(key), described.get(key)
        if a != b:
            out.append(f"{key}: migrations say {a!r}, projections.tables says {b!r}")
    return out


@pytest.fixture
async def scratch(db: asyncpg.Connection, unique: str) -> Any:
    """Names of throw-away schemas for this test, dropped afterwards."""
    made: list[str] = []

    def name(tag: str) -> str:
        made.append(f"t_{unique}_{tag}")
        return made[-1]

    yield name
    for schema in made:
        await db.execute(f"DROP SCHEMA IF EXISTS {migrations.quote_ident(schema)} CASCADE")


async def test_the_metadata_describes_what_the_migrations_create(
    schema: str, db: asyncpg.Connection, scratch: Any
) -> None:
    migrated = await describe(db, schema)
    described = await from_metadata(db, tables.metadata, scratch("md"))
    assert not differences(migrated, described), "\n".join(differences(migrated, described))
    assert {key.split(".")[0].split(" ")[0] for key in migrated} == set(PROJECTION_TABLES), (
        "the projection owns exactly these tables (a rebuild swaps them)"
    )
    assert tuple(sorted(tables.metadata.tables)) == tuple(sorted(PROJECTION_TABLES))
    assert any(" index orders_account_open" in k for k in migrated), "partial indexes are compared too"


async def test_a_migration_the_metadata_does_not_know_is_caught(
    tmp_path: Path, db: asyncpg.Connection, scratch: Any
) -> None:
    for path in migrations.SQL_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "9999_extra.sql").write_text(
        "ALTER TABLE orders ADD COLUMN note text;\n"
        "ALTER TABLE orders ALTER COLUMN tx_hash SET NOT NULL;\n"
        "CREATE INDEX orders_note ON orders (note);\n"
    )
    migrated_schema = scratch("mig")
    await migrations.apply(db, migrated_schema, tmp_path)
    found = differences(
        await describe(db, migrated_schema), await from_metadata(db, tables.metadata, scratch("md"))
    )
    assert [line.split(":")[0] for line in found] == [
        "orders index orders_note",
        "orders.note",
        "orders.tx_hash",
    ]


async def test_metadata_no_migration_creates_is_caught(
    schema: str, db: asyncpg.Connection, scratch: Any
) -> None:
    more = MetaData()
    for table in tables.metadata.sorted_tables:
        table.to_metadata(more)
    more.tables["order_events"].append_column(Column("note", Text))
    found = differences(await describe(db, schema), await from_metadata(db, more, scratch("md")))
    assert [line.split(":")[0] for line in found] == ["order_events.note"]
    assert "None" in found[0], "the migrations do not have it"


async def test_the_bulk_writers_columns_and_types_are_the_tables(schema: str, db: asyncpg.Connection) -> None:
    """`projections.rows` names columns and `unnest` types of its own (the projector and the rebuild do
    not import SQLAlchemy): each must be a column of the table, of exactly that type."""
    catalog = await describe(db, schema)
    for table, columns, types in [
        ("orders", rows.ORDER_COLUMNS, rows.ORDER_TYPES),
        ("order_events", rows.EVENT_COLUMNS, rows.EVENT_TYPES),
        ("projector_dead_letters", rows.DEAD_LETTER_COLUMNS, rows.DEAD_LETTER_TYPES),
    ]:
        assert len(columns) == len(types) == len(set(columns))
        for column, short in zip(columns, types, strict=True):
            named = await db.fetchval("SELECT format_type($1::regtype, NULL)", short)
            assert catalog[f"{table}.{column}"].startswith(f"{named} "), (table, column, short)
    written = {c for c in rows.ORDER_COLUMNS}
    assert written == {c.name for c in tables.orders.columns}, "every orders column is written by the fold"
