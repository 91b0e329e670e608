"""The read API as a part of the API: its routes and the lifespan that opens what they need.

`part(settings)` is what the API's bootstrap mounts (`services.api`); nothing connects at import or when the
routes are built. The lifespan opens a small asyncpg pool (lazily:
a database that is down at start makes reads answer 503, it does not stop the app) and the listener that
wakes read-your-writes waits, and puts them on `app.state.query`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from events.topics import Topics
from projections.db import dsn
from projections.settings import schema_from_env
from services.config import Settings
from services.http.lifespans import Lifespan
from services.http.parts import Part
from services.query.reads import Reads
from services.query.routes import QueryContext, get_order, get_order_events, list_orders
from services.query.waits import Waiter


def routes() -> list[BaseRoute]:
    return [
        Route("/api/orders", list_orders, methods=["GET"]),
        Route("/api/orders/{order_id}", get_order, methods=["GET"]),
        Route("/api/orders/{order_id}/events", get_order_events, methods=["GET"]),
    ]


def part(settings: Settings, *, schema: str | None = None, listen: bool = True, pool_max: int = 8) -> Part:
    """The order reads: every route needs an account's key (the edge's default), and answers its orders only."""
    return Part("query", routes(), lifespan(settings, schema=schema, listen=listen, pool_max=pool_max))


def lifespan(
    settings: Settings, *, schema: str | None = None, listen: bool = True, pool_max: int = 8
) -> Lifespan:
    """Open the pool and the position listener for the projection in `schema` (default PROJECTION_SCHEMA)."""
    schema = schema or schema_from_env()
    topic = Topics.with_prefix(settings.topic_prefix).events

    @contextlib.asynccontextmanager
    async def query_lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            dsn(settings.database_url),
            min_size=0,
            max_size=pool_max,
            server_settings={"application_name": "oee-query"},
        )
        waiter = Waiter(settings.database_url, schema, listen=listen)
        await waiter.start()
        app.state.query = QueryContext(pool, Reads(schema, topic), waiter)
        try:
            yield
        finally:
            try:
                await waiter.stop()
            finally:
                await pool.close()

    return query_lifespan
