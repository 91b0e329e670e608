"""The lag views' Postgres half on the real database: the resting-order count follows limit orders placed,
cancelled and triggered through the API, a router core and the projector; and the stored positions of a
schema migrated to 0001 only (no `checked_at`) are still read."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from events.topics import Topics
from projections import migrations
from services.config import Settings
from services.lag import postgres
from services.lag.config import LagOptions
from services.lag.model import LagReport
from services.lag.monitor import LagMonitor
from tests.integration.router_harness import close_venues, sim_venues
from tests.integration.test_orders_api import LIMIT, status_of, system
from tests.integration.trigger_harness import publish
from tests.projection_fixtures import wait_until
from tests.router_fakes import FaultyVenue
from tests.samples import trigger_command

pytestmark = pytest.mark.integration


@pytest.fixture
async def venues() -> AsyncIterator[dict[str, FaultyVenue]]:
    made = sim_venues(latency=1.0)
    yield made
    await close_venues(made)


@pytest.fixture
async def pool(infra: Settings) -> AsyncIterator[asyncpg.Pool]:
    made = await asyncpg.create_pool(infra.database_url, min_size=0, max_size=2)
    yield made
    await made.close()


async def resting_in(monitor: LagMonitor, want: int) -> LagReport:
    """A sample whose resting count is `want` (the projector applies the events in its own time)."""
    last: list[LagReport] = []

    async def counted() -> bool:
        last[:] = [await monitor.sample()]
        return last[0].resting is not None and last[0].resting.count == want

    await wait_until(counted, 30, f"{want} resting orders", lambda: str(last[0].to_json() if last else None))
    return last[0]


async def test_resting_orders_are_counted_until_cancelled_or_triggered(
    infra: Settings,
    topics: Topics,
    schema: str,
    venues: dict[str, FaultyVenue],
    pool: asyncpg.Pool,
) -> None:
    settings = dataclasses.replace(infra, topic_prefix=topics.events.removesuffix("orders.events"))
    monitor = LagMonitor(settings, LagOptions(), pool, schema)
    try:
        empty = await monitor.sample()
        assert empty.resting is not None and (empty.resting.count, empty.resting.by_type) == (0, {})
        async with system(infra, topics, schema, venues) as client:
            ids = []
            for _ in range(3):  # a sell at 500 when SOL is ~150: they rest
                placed = await client.post("/api/orders/execute", json=LIMIT)
                assert placed.status_code == 201, placed.text
                ids.append(placed.json()["orderId"])
            for order_id in ids:
                await status_of(client, order_id, "open")
            report = await resting_in(monitor, 3)
            assert report.resting is not None and report.resting.by_type == {"limit": 3}
            assert report.to_json()["resting"]["count"] == 3
            assert report.orders is None or report.orders.stuck == ()  # resting is never stuck

            assert (await client.delete(f"/api/orders/{ids[0]}")).status_code == 202
            await status_of(client, ids[0], "cancelled")
            await resting_in(monitor, 2)

            # The trigger engine's request for the second one: it leaves `open` for routing.
            await publish(
                infra.bootstrap_servers, topics, [trigger_command(ids[1], price=501.0, bound=500.0)]
            )
            report = await resting_in(monitor, 1)
            assert report.resting is not None and report.resting.oldest_age_s >= 0.0
    finally:
        await monitor.stop()


async def test_a_schema_without_an_orders_table_has_no_resting_count(pool: asyncpg.Pool, unique: str) -> None:
    assert await postgres.resting_orders(pool, f"absent_{unique}") is None


async def test_positions_of_a_schema_migrated_to_0001_only_have_no_check_age(
    infra: Settings, pool: asyncpg.Pool, unique: str, tmp_path: Path
) -> None:
    first = sorted(migrations.SQL_DIR.glob("0001_*.sql"))[0]
    shutil.copy(first, tmp_path / first.name)
    schema = f"lag1_{unique}"
    async with pool.acquire() as conn:
        await migrations.apply(conn, schema, tmp_path)
        columns = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_schema = $1 AND table_name = 'projector_positions' AND column_name = 'checked_at'",
            schema,
        )
        assert columns == 0
        await conn.execute(
            f'INSERT INTO "{schema}".projector_positions (projection, topic, partition, next_offset)'
            " VALUES ('orders', 't.events', 0, 7), ('orders', 't.other', 0, 1)"
        )
    try:
        began = time.monotonic()
        rows = await postgres.stored_positions(pool, schema, ["t.events"])
        assert [(r.projection, r.topic, r.partition, r.next_offset, r.checked_age_s) for r in rows] == [
            ("orders", "t.events", 0, 7, None)
        ]
        assert 0.0 <= rows[0].updated_age_s <= time.monotonic() - began + 5.0
        assert len(await postgres.stored_positions(pool, schema)) == 2
        assert await postgres.still_orders(pool, schema, ["pending"], 0.0) == []
        assert await postgres.resting_orders(pool, schema) is not None  # 0001's orders has a status
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
