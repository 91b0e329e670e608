"""The ingress as a part of the API: `POST /api/orders/execute`, `DELETE /api/orders/{id}`, `/health`, `/ready`,
and what they need.

Nothing connects in `part()`. The lifespan starts the producer in the background (the app serves /health
and answers 503 while the broker is down) and builds the intake on the app's shared database pool
(`app.state.db`, opened by `services.http.app`): durable Idempotency-Keys and /ready's database check.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route

from events.topics import Topics
from services.config import Settings
from services.http.parts import Access, Part
from services.ingress import routes
from services.ingress.cancel import cancel
from services.ingress.idempotency import IdempotencyStore
from services.ingress.intake import EventPublisher, Intake
from services.ingress.keystore import DurableKeys
from services.ingress.options import IngressOptions
from services.ingress.publisher import Position, Publisher
from services.metrics import ingress as ingress_metrics

ORDER_PATH = "/api/orders/execute"
CANCEL_PATH = "/api/orders/{order_id}"  # DELETE here; GET of the same path is the reads'  (services.query)


def part(
    settings: Settings,
    *,
    publisher: EventPublisher | None = None,
    options: IngressOptions | None = None,
    schema: str | None = None,
) -> Part:
    """The ingress part. `publisher` replaces the Kafka producer (tests); `schema` is the order projection's
    (whose an order is, for cancels; default `PROJECTION_SCHEMA`)."""
    from projections.settings import schema_from_env

    projection = schema or schema_from_env()
    options = options or IngressOptions.from_env()
    if publisher is None:
        publisher = Publisher(
            settings.bootstrap_servers,
            Topics.with_prefix(settings.topic_prefix).requests,
            send_timeout_s=options.send_timeout_s,
            request_timeout_ms=options.request_timeout_ms,
            linger_ms=options.linger_ms,
        )
    the_publisher = publisher

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await the_publisher.start()
        try:
            cache: IdempotencyStore[Position] = IdempotencyStore(
                options.idempotency_ttl_s, options.idempotency_max_keys
            )
            durable = DurableKeys(app.state.db, lease_s=options.idempotency_lease_s)
            app.state.ingress = routes.IngressContext(
                options,
                settings.tokens,
                the_publisher,
                Intake(the_publisher, cache, durable),
                routes.probe(the_publisher, app.state.db, options.ready_timeout_s),
                pool=app.state.db,
                schema=projection,
            )
            yield
        finally:
            await the_publisher.stop()

    return Part(
        "ingress",
        [
            Route(ORDER_PATH, ingress_metrics.instrument(routes.execute), methods=["POST"]),
            Route(CANCEL_PATH, cancel, methods=["DELETE"]),
            Route("/health", routes.health, methods=["GET"]),
            Route("/ready", routes.ready, methods=["GET"]),
        ],
        lifespan,
        access={"/health": Access.PUBLIC, "/ready": Access.PUBLIC},
        orders=frozenset({ORDER_PATH}),
    )
