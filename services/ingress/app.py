"""The ingress's composition root: the Starlette app, its routes, and the clients its lifespan opens.

Nothing connects at import or in `create_app`. The lifespan starts the producer (in the background: the app
serves /health and answers 503 while the broker is down) and a small asyncpg pool that /ready uses (it
connects lazily, so a down database does not stop the start either), and puts them on `app.state`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager

import asyncpg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Route

from events.topics import Topics
from services.config import Settings
from services.ingress import responses, routes
from services.ingress.idempotency import IdempotencyStore
from services.ingress.intake import EventPublisher, Intake
from services.ingress.options import IngressOptions
from services.ingress.publisher import Position, Publisher
from services.metrics import ingress as ingress_metrics
from services.metrics import metrics_route

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
"""What an extra route needs opened for it: `lifespan(app)` is entered with the app's own resources up."""


def create_app(
    settings: Settings,
    *,
    publisher: EventPublisher | None = None,
    options: IngressOptions | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    extra_lifespans: Sequence[Lifespan] = (),
) -> Starlette:
    """The ingress app. `publisher` replaces the Kafka producer (tests); `extra_routes` mounts other
    services' endpoints (order queries, WebSockets) on the same app, and `extra_lifespans` open what those
    need, entered in order once `app.state.db` and `app.state.publisher` are up, left before those close.
    """
    options = options or IngressOptions.from_env()
    if publisher is None:
        publisher = Publisher(
            settings.bootstrap_servers,
            Topics.with_prefix(settings.topic_prefix).requests,
            send_timeout_s=options.send_timeout_s,
            request_timeout_ms=options.request_timeout_ms,
            linger_ms=options.linger_ms,
        )
    keys: IdempotencyStore[Position] = IdempotencyStore(
        options.idempotency_ttl_s, options.idempotency_max_keys
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await publisher.start()
        db = await asyncpg.create_pool(_dsn(settings.database_url), min_size=0, max_size=2)
        app.state.db = db
        try:
            async with contextlib.AsyncExitStack() as stack:
                for extra in extra_lifespans:
                    await stack.enter_async_context(extra(app))
                yield
        finally:
            try:
                await publisher.stop()
            finally:
                await db.close()

    app = Starlette(
        routes=[
            Route("/api/orders/execute", ingress_metrics.instrument(routes.execute), methods=["POST"]),
            Route("/health", routes.health, methods=["GET"]),
            Route("/ready", routes.ready, methods=["GET"]),
            metrics_route(),  # GET /metrics (Prometheus): this process's metrics, lag gauges included
            *extra_routes,
        ],
        exception_handlers={HTTPException: responses.http_exception, Exception: responses.server_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.options = options
    app.state.tokens = settings.tokens
    app.state.publisher = publisher
    app.state.keys = keys
    app.state.intake = Intake(publisher, keys)
    return app


def _dsn(url: str) -> str:
    """asyncpg wants postgresql://; accept SQLAlchemy's driver-qualified spelling too."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url
