"""The gateway as a part of the API, and the standalone app `oee gateway` serves.

Both sit behind the same edge (`services.http`): `/ws/orders/{orderId}` and `/ws` need an account's key
(`Authorization: Bearer`, or a browser's `bearer.<key>` subprotocol) and stream only that account's orders;
`/gateway/stats` needs an operator key; `/health` is open. The standalone app also serves `/metrics`
(operators only, like the API's): its connections, slow closes and the delivery lag of live frames.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from services.accounts.options import AccountsOptions
from services.config import Settings
from services.gateway.endpoints import gateway_stats, health, multiplexed, order_stream
from services.gateway.gateway import lifespan
from services.gateway.options import GatewayOptions
from services.http.app import build_app
from services.http.parts import Access, Part
from services.metrics import metrics_part
from services.spec.operation import (
    FORBIDDEN,
    ORDER_ID,
    UNAUTHORIZED,
    Operation,
    Param,
    Reply,
    error,
    route,
    websocket,
)
from services.spec.wire import GATEWAY_STATS

__all__ = ["create_app", "lifespan", "part", "routes"]


_HANDSHAKE = {
    101: Reply("switching protocols: frames follow (AsyncAPI document, /asyncapi.json)"),
    401: UNAUTHORIZED,
    403: error("a foreign Origin, or the key's account is disabled"),
}
ORDER_STREAM = Operation(
    "Stream an order's events (WebSocket)",
    "History first, then live, in seq order with no gap and no duplicate; closes 1000 after the terminal "
    "event. A browser offers the subprotocols `oee.v1` and `bearer.<key>`. Frames and close codes: "
    "docs/gateway.md and the AsyncAPI document.",
    tag="streams",
    params=[
        ORDER_ID,
        Param("fromSeq", "query", "the last seq the client has (frames with a greater seq are sent)",
              {"type": "integer", "minimum": 0}),
        Param("keepOpen", "query", "1: stay open after the terminal event", {"type": "string", "enum": ["1", "true"]}),
    ],
    replies=_HANDSHAKE,
)  # fmt: skip
MULTIPLEXED = Operation(
    "Stream many orders on one socket (WebSocket)",
    "`subscribe` / `unsubscribe` / `ping` messages; the orders' frames, heartbeats, `end` and `error` frames.",
    tag="streams",
    replies=_HANDSHAKE,
)
STATS = Operation(
    "Gateway statistics",
    tag="operations",
    replies={200: Reply("counters", GATEWAY_STATS), 401: UNAUTHORIZED, 403: FORBIDDEN},
)


def routes() -> list[BaseRoute]:
    """`/ws/orders/{orderId}`, `/ws` and `/gateway/stats`; they need `lifespan` entered on the same app."""
    return [
        websocket("/ws/orders/{order_id}", order_stream, ORDER_STREAM),
        websocket("/ws", multiplexed, MULTIPLEXED),
        route("/gateway/stats", gateway_stats, get=STATS),
    ]


def part(settings: Settings, options: GatewayOptions | None = None) -> Part:
    return Part("gateway", routes(), lifespan(settings, options), access={"/gateway/stats": Access.OPERATOR})


def create_app(
    settings: Settings, options: GatewayOptions | None = None, accounts: AccountsOptions | None = None
) -> Starlette:
    """The standalone gateway: the WebSocket routes, `/health`, `/gateway/stats` and `/metrics`, behind the
    edge."""
    health_part = Part(
        "health", [Route("/health", health, methods=["GET"])], access={"/health": Access.PUBLIC}
    )
    return build_app(
        settings,
        [part(settings, options or GatewayOptions.from_env()), health_part, metrics_part()],
        accounts=accounts,
        db_pool_max=2,
    )
