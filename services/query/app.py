"""The read API as a part of the API: its routes and the lifespan that opens what they need.

`part(settings)` is what the API's bootstrap mounts (`services.api`); nothing connects at import or when the
routes are built. The lifespan opens a small asyncpg pool (lazily: a database that is down at start makes
reads answer 503, it does not stop the app) and the `Waiter` that wakes read-your-writes waits (its listener,
and one shared progress query per wake-up through the pool), and puts them on `app.state.query`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from events.topics import Topics
from projections.db import dsn
from projections.settings import schema_from_env
from services.config import Settings
from services.http.lifespans import Lifespan
from services.http.parts import Part
from services.query.options import QueryOptions
from services.query.params import DEFAULT_LIMIT, MAX_LIMIT, MAX_WAIT_MS
from services.query.reads import Reads
from services.query.routes import QueryContext, get_order, get_order_events, list_orders
from services.query.waits import Progress, Waiter
from services.spec.operation import (
    FORBIDDEN,
    ORDER_ID,
    RETRY_AFTER,
    UNAUTHORIZED,
    Operation,
    Param,
    Reply,
    error,
    route,
)
from services.spec.wire import Order, OrderEvents, OrderPage

_WAIT = [
    Param("minSeq", "query", "answer once the order's lastSeq is at least this (read your writes)",
          {"type": "integer", "minimum": 1}),
    Param("minPosition", "query", "answer once the projection applied this `<partition>:<offset>` of the log",
          {"type": "string", "pattern": "^[0-9]+:[0-9]+$"}),
    Param("waitMs", "query", "how long to wait for minSeq/minPosition (default 2000)",
          {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_MS}),
]  # fmt: skip
_READ_ERRORS = {
    400: error("a parameter or the order id is invalid: each problem names its field"),
    401: UNAUTHORIZED,
    403: FORBIDDEN,
    404: error("no such order (another account's order is answered the same)"),
    503: Reply(
        "the projection did not reach minSeq/minPosition within waitMs (how far it is), or the database "
        "is unavailable",
        {"oneOf": [{"$ref": "#/components/schemas/NotCaughtUp"}, {"$ref": "#/components/schemas/ErrorBody"}]},
        headers={"Retry-After": RETRY_AFTER},
    ),
}
GET_ORDER = Operation(
    "Get an order",
    "The order from the Postgres projection and how fresh its partition is; with `minSeq`/`minPosition` it "
    "waits (up to `waitMs`) until the projection has caught up with what you were told.",
    tag="orders",
    params=[ORDER_ID, *_WAIT],
    replies={200: Reply("the order", Order), 405: error("`/api/orders/execute` takes POST"),
             **_READ_ERRORS},
)  # fmt: skip
GET_EVENTS = Operation(
    "Get an order's events",
    "Every event of the order in seq order, exactly as the log has it, with its status and log position.",
    tag="orders",
    params=[ORDER_ID, *_WAIT],
    replies={200: Reply("the events", OrderEvents), **_READ_ERRORS},
)
LIST_ORDERS = Operation(
    "List orders",
    "The account's orders, newest first, filtered, keyset-paginated (`nextCursor`).",
    tag="orders",
    params=[
        Param("status", "query", "only orders in this status",
              {"type": "string", "enum": ["pending", "routing", "building", "submitted", "confirmed", "failed"]}),
        Param("side", "query", "buy or sell", {"type": "string", "enum": ["buy", "sell"]}),
        Param("venue", "query", "only orders routed to this venue"),
        Param("from", "query", "created at or after (RFC 3339)", {"type": "string", "format": "date-time"}),
        Param("to", "query", "created before (RFC 3339)", {"type": "string", "format": "date-time"}),
        Param("limit", "query", f"page size (default {DEFAULT_LIMIT})",
              {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        Param("cursor", "query", "the previous page's nextCursor (for the same filters)"),
    ],
    replies={
        200: Reply("one page", OrderPage),
        400: error("a parameter is invalid: each problem names its field"),
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        503: error("the database is unavailable", **{"Retry-After": RETRY_AFTER}),
    },
)  # fmt: skip


def routes() -> list[BaseRoute]:
    return [
        route("/api/orders", list_orders, get=LIST_ORDERS),
        route("/api/orders/{order_id}", get_order, get=GET_ORDER),
        route("/api/orders/{order_id}/events", get_order_events, get=GET_EVENTS),
    ]


def part(
    settings: Settings,
    *,
    schema: str | None = None,
    listen: bool = True,
    pool_max: int = 8,
    options: QueryOptions | None = None,
) -> Part:
    """The order reads: every route needs an account's key (the edge's default), and answers its orders only."""
    opened = lifespan(settings, schema=schema, listen=listen, pool_max=pool_max, options=options)
    return Part("query", routes(), opened)


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
                return await reads.progress(conn, order_ids, positions)

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
