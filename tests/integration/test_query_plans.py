"""The read API's compiled statements use the indexes made for them, as prepared statements (generic plans).

asyncpg prepares every statement and Postgres switches to a generic plan after five runs: the plan must use
the per-account indexes with the parameters SQLAlchemy casts (`$1::VARCHAR` against a text column), not only
with the values of one request. Sequential scans are switched off so the empty test tables cannot hide an
index that does not apply.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.query.params import encode_cursor, list_query, params_of
from services.query.reads import open_orders_statement
from services.query.statements import OrderPages

pytestmark = pytest.mark.integration

CURSOR_FREE = [
    ([], "orders_account_created"),
    ([("status", "failed")], "orders_account_status_created"),
    ([("status", "open"), ("from", "2025-03-14T09:00:00Z")], "orders_account_status_created"),
    ([("type", "limit")], "orders_account_type_created"),
    ([("venue", "raydium"), ("side", "buy")], "orders_account_created"),
]


def _literal(value: Any) -> str:
    return f"'{value.isoformat()}'" if hasattr(value, "isoformat") else f"'{value}'"


async def _generic_plan(conn: asyncpg.Connection, name: str, sql: str, args: list[Any]) -> str:
    await conn.execute(f"PREPARE {name} AS {sql}")
    rows = await conn.fetch(f"EXPLAIN EXECUTE {name}({', '.join(_literal(a) for a in args)})")
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize(("items", "index"), CURSOR_FREE)
async def test_a_page_uses_the_account_s_index(
    schema: str, db: asyncpg.Connection, items: list[tuple[str, str]], index: str
) -> None:
    sql, args = OrderPages(schema).statement(list_query(params_of(items)), "alice")
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")
        await db.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        plan = await _generic_plan(db, "page", sql, args)
        await db.execute("DEALLOCATE page")
    assert f"Index Scan Backward using {index} on orders" in plan, plan
    assert "Sort" not in plan, "newest first straight from the index"
    assert "account_id = ($1)::text" in plan, plan


async def test_the_next_page_starts_in_the_index_after_the_cursor(
    schema: str, db: asyncpg.Connection
) -> None:
    first = list_query(params_of([("status", "confirmed")]))
    cursor = encode_cursor(first, datetime.now(UTC), "7c9e6679-7425-40de-944b-e07fc1f90ae7")
    query = list_query(params_of([("status", "confirmed"), ("cursor", cursor)]))
    sql, args = OrderPages(schema).statement(query, "alice")
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")
        await db.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        plan = await _generic_plan(db, "next_page", sql, args)
        await db.execute("DEALLOCATE next_page")
    assert "Index Scan Backward using orders_account_status_created on orders" in plan, plan
    assert "ROW(created_at, id) < ROW(" in plan, "the cursor bounds the index scan, not a filter after it"


async def test_the_open_orders_count_is_index_only_on_the_partial_index(
    schema: str, db: asyncpg.Connection
) -> None:
    sql = open_orders_statement(schema).sql
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")
        await db.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        plan = await _generic_plan(db, "open_count", sql, ["alice"])
        await db.execute("DEALLOCATE open_count")
    assert "Index Only Scan using orders_account_open on orders" in plan, plan
