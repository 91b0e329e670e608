"""Swap a rebuilt projection in for the live one: one transaction, under the projection's advisory lock.

The live projector takes the same lock (shared) in every batch transaction, so while the swap holds it
exclusively no batch is half-way: the rebuilt tables are caught up to exactly the live positions, compared,
and moved into the live schema in the same transaction. Readers block only for the moment the tables are
renamed (ACCESS EXCLUSIVE, milliseconds) and then see the new tables; they never see an empty or partial
projection. The projector's next batch finds the positions it expects (the live ones) in the new table.
"""

from __future__ import annotations

import asyncpg

from projections.migrations import quote_ident
from projections.store import PROJECTION_TABLES, lock_key


async def lock_exclusive(conn: asyncpg.Connection, live_schema: str) -> None:
    """Inside a transaction: wait until no projector batch is in flight and hold them off until commit."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(live_schema))


async def swap_tables(conn: asyncpg.Connection, live: str, shadow: str, retired: str) -> None:
    """Inside the locked transaction: live tables -> `retired` schema, shadow tables -> live schema."""
    live_q, shadow_q, retired_q = quote_ident(live), quote_ident(shadow), quote_ident(retired)
    # A reader holding a table for long would make everyone queue behind this; fail and let the operator retry.
    await conn.execute("SET LOCAL lock_timeout = '10s'")
    await conn.execute(f"CREATE SCHEMA {retired_q}")
    for table in PROJECTION_TABLES:  # out first: the rebuilt tables' index names are the same
        await conn.execute(f"ALTER TABLE {live_q}.{table} SET SCHEMA {retired_q}")
    for table in PROJECTION_TABLES:
        await conn.execute(f"ALTER TABLE {shadow_q}.{table} SET SCHEMA {live_q}")
