"""Build one Starlette app from parts: the shared resources, every part's routes and lifespans, the edge.

The lifespan opens what the parts share, in this order, and closes it in reverse: a small asyncpg pool
(`app.state.db`, lazy: a database that is down delays nothing), the accounts directory under `AUTH=keys`
(`app.state.accounts`) and the per-account order limits (`app.state.order_limits`); then each part's own
lifespan, in the order given. The `Edge` middleware authenticates every request before any route runs; the
`AccessLog` around it gives each request its id (`X-Request-Id`) and logs one line per request.
Nothing connects at import or in `build_app`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware

from projections.db import dsn
from services.accounts.directory import Directory
from services.accounts.limits import OrderLimits
from services.accounts.options import AccountsOptions
from services.config import Settings
from services.http.access import AccessLog
from services.http.edge import Edge
from services.http.lifespans import chain
from services.http.parts import Part, Policy
from services.http.responses import EXCEPTION_HANDLERS


def build_app(
    settings: Settings,
    parts: Sequence[Part],
    *,
    accounts: AccountsOptions | None = None,
    projection_schema: str = "public",
    db_pool_max: int = 10,
) -> Starlette:
    """An app serving `parts` behind the edge. `projection_schema` is where open orders are counted."""
    options = accounts or AccountsOptions.from_env()
    parts_lifespan = chain([p.lifespan for p in parts if p.lifespan is not None])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            dsn(settings.database_url),
            min_size=0,
            max_size=db_pool_max,
            server_settings={"application_name": "oee-api"},
        )
        app.state.db = pool
        directory: Directory | None = None
        try:
            if options.auth == "keys":
                directory = Directory(
                    pool,
                    dsn(settings.database_url),
                    ttl_s=options.cache_ttl_s,
                    max_keys=options.cache_max_keys,
                )
                await directory.start()
            app.state.accounts = directory
            app.state.order_limits = _order_limits(options, pool, projection_schema)
            async with parts_lifespan(app):
                yield
        finally:
            try:
                if directory is not None:
                    await directory.stop()
            finally:
                await pool.close()

    policy = Policy.of(parts)
    app = Starlette(
        routes=[route for part in parts for route in part.routes],
        exception_handlers=EXCEPTION_HANDLERS,
        # The access log outermost: it gives every request its id and logs the edge's refusals too.
        middleware=[
            Middleware(AccessLog, enabled=settings.access_log),
            Middleware(Edge, policy=policy, options=options),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.accounts_options = options
    app.state.policy = policy  # the OpenAPI document states it (services.spec)
    return app


def _order_limits(options: AccountsOptions, pool: asyncpg.Pool, schema: str) -> OrderLimits:
    from services.query.reads import open_orders_counter

    return OrderLimits(
        options.order_rate,
        options.order_burst,
        options.max_open_orders,
        open_orders_counter(pool, schema),
    )
