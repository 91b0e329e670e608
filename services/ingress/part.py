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
from services.spec.wire import CancelAccepted, Health, OrderAccepted, OrderRequest, Ready

ORDER_PATH = "/api/orders/execute"
CANCEL_PATH = "/api/orders/{order_id}"  # DELETE here; GET of the same path is the reads'  (services.query)

_RATE = {"Retry-After": RETRY_AFTER, "RateLimit": "the account's remaining quota (IETF draft)",
         "RateLimit-Policy": "the account's order rate limit (IETF draft)"}  # fmt: skip
EXECUTE = Operation(
    "Place a market order",
    "Appends an `OrderRequested` to the intake log and answers once the broker acknowledged it (acks=all). "
    "Watch it at `wsUrl`, read it at `Location`. With an `Idempotency-Key`, a repeat gets the first answer "
    "back (`Idempotent-Replayed: true`). Every problem of a 400 is listed in `details`.",
    tag="orders",
    params=[
        Param(
            "Idempotency-Key",
            "header",
            "printable ASCII, 1..255 characters; one order per key and account, forever (use a UUID)",
        )
    ],
    body=OrderRequest,
    replies={
        201: Reply(
            "accepted: durably in the log",
            OrderAccepted,
            headers={"Location": "the order's URL", "Idempotent-Replayed": "`true` on a repeated key"},
        ),
        400: error("invalid request: each problem names its field"),
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        409: error(
            "a request with this Idempotency-Key is still in progress", **{"Retry-After": RETRY_AFTER}
        ),
        413: error("body larger than INGRESS_MAX_BODY_BYTES"),
        415: error("Content-Type is not application/json"),
        422: error("the Idempotency-Key was used with a different request"),
        429: error("the account's order rate or open orders are at their limit", **_RATE),
        503: error(
            "not accepted (broker or database unavailable), or outcome unknown: retry with the same key",
            **{"Retry-After": RETRY_AFTER},
        ),
    },
)
CANCEL = Operation(
    "Cancel an order",
    "Appends an `OrderCancelRequested` to the intake (keyed by the order id) and answers 202: the router "
    "partition that owns the order answers in the log, `OrderCancelled` while nothing was sent to a venue, "
    "`OrderCancelRefused` (reason `submitted`) after. Idempotent: an order that ended is answered with its "
    "status and nothing is appended. Another account's order is a 404 like an unknown one. `waitMs` "
    "(default INGRESS_CANCEL_WAIT_MS) is how long to look for an order the projection has not reached yet.",
    tag="orders",
    params=[
        ORDER_ID,
        Param(
            "waitMs",
            "query",
            "how long to wait for the order to be projected (0..10000)",
            {"type": "integer", "minimum": 0, "maximum": 10_000},
        ),
    ],
    replies={
        202: Reply(
            "the cancel is requested (or there is nothing to cancel: `status` says why)",
            CancelAccepted,
            headers={"Location": "the order's URL"},
        ),
        400: error("the order id or waitMs is invalid: each problem names its field"),
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        404: error("no such order (another account's order is answered the same)"),
        503: error(
            "the database or the broker is unavailable: nothing requested, retry",
            **{"Retry-After": RETRY_AFTER},
        ),
    },
)
HEALTH = Operation(
    "Liveness",
    "200 while the process runs, whatever its dependencies do.",
    tag="operations",
    replies={200: Reply("the process runs", Health)},
)
READY = Operation(
    "Readiness",
    "Whether the broker and the database answer (checked at most once a second).",
    tag="operations",
    replies={
        200: Reply("both answer", Ready),
        503: Reply("which does not", Ready, headers={"Retry-After": RETRY_AFTER}),
    },
)


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
            route(ORDER_PATH, ingress_metrics.instrument(routes.execute), post=EXECUTE),
            route(CANCEL_PATH, cancel, delete=CANCEL),
            route("/health", routes.health, get=HEALTH),
            route("/ready", routes.ready, get=READY),
        ],
        lifespan,
        access={"/health": Access.PUBLIC, "/ready": Access.PUBLIC},
        orders=frozenset({ORDER_PATH}),
    )
