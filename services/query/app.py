"""The read API's composition: its routes and the lifespan that opens what they need.

Mounted on the ingress app (`create_app(settings, extra_routes=routes(), extra_lifespans=[lifespan(settings)])`);
nothing connects at import or when the routes are built. The lifespan opens a small asyncpg pool (lazily:
a database that is down at start makes reads answer 503, it does not stop the app) and the `Waiter` that
wakes read-your-writes waits (its listener, and one shared progress query per wake-up through the pool),
and puts them on `app.state.query`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from events.topics import Topics
from projections.db import dsn
from projections.settings import schema_from_env
from services.config import Settings
from services.ingress.app import Lifespan
from services.query.options import QueryOptions
from services.query.reads import Reads
from services.query.routes import QueryContext, get_order, get_order_events, list_orders
from services.query.waits import Progress, Waiter


def routes() -> list[BaseRoute]:
    return [
        Route("/api/orders", list_orders, methods=["GET"]),
        Route("/api/orders/{order_id}", get_order, methods=["GET"]),
        Route("/api/orders/{order_id}/events", get_order_events, methods=["GET"]),
    ]


def lifespan(
    settings: Settings,
    *,
    schema: str | None = None,
    listen: bool = True,
    pool_max: int = 8,
    options: QueryOptions | None = None,
) -> Lifespan:
    """Open the pool and the position listener for the projection in `schema` (default PROJECTION_SCHEMA)."""
    schema = schema or schema_from_env()
    topic = Topics.with_prefix(settings.topic_prefix).events
    options = options or QueryOptions.from_env()

    @contextlib.asynccontextmanager
    async def query_lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            dsn(settings.database_url),
            min_size=0,
            max_size=pool_max,
            server_settings={"application_name": "oee-query"},
        )
        reads = Reads(schema, topic)

        async def progress(order_ids: Sequence[str], positions: bool) -> Progress:
            async with pool.acquire(timeout=options.acquire_timeout_s) as conn:
                seqs, applied = await reads.progress(conn, order_ids, positions)
            return Progress(seqs, applied)

        waiter = Waiter(
            settings.database_url, schema, progress, max_waiters=options.max_waiters, listen=listen
        )
        await waiter.start()
        app.state.query = QueryContext(pool, reads, waiter, acquire_timeout_s=options.acquire_timeout_s)
        try:
            yield
        finally:
            try:
                await waiter.stop()
            finally:
                await pool.close()

    return query_lifespan
