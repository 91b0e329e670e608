"""The gateway as a part of the API, and the standalone app `oee gateway` serves.

Both sit behind the same edge (`services.http`): `/ws/orders/{orderId}` and `/ws` need an account's key
(`Authorization: Bearer`, or a browser's `bearer.<key>` subprotocol) and stream only that account's orders;
`/gateway/stats` needs an operator key; `/health` is open.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route, WebSocketRoute

from services.accounts.options import AccountsOptions
from services.config import Settings
from services.gateway.endpoints import gateway_stats, health, multiplexed, order_stream
from services.gateway.gateway import lifespan
from services.gateway.options import GatewayOptions
from services.http.app import build_app
from services.http.parts import Access, Part

__all__ = ["create_app", "lifespan", "part", "routes"]


def routes() -> list[BaseRoute]:
    """`/ws/orders/{orderId}`, `/ws` and `/gateway/stats`; they need `lifespan` entered on the same app."""
    return [
        WebSocketRoute("/ws/orders/{order_id}", order_stream),
        WebSocketRoute("/ws", multiplexed),
        Route("/gateway/stats", gateway_stats, methods=["GET"]),
    ]


def part(settings: Settings, options: GatewayOptions | None = None) -> Part:
    return Part("gateway", routes(), lifespan(settings, options), access={"/gateway/stats": Access.OPERATOR})


def create_app(
    settings: Settings, options: GatewayOptions | None = None, accounts: AccountsOptions | None = None
) -> Starlette:
    """The standalone gateway: the WebSocket routes, `/health` and `/gateway/stats`, behind the edge."""
    health_part = Part(
        "health", [Route("/health", health, methods=["GET"])], access={"/health": Access.PUBLIC}
    )
    return build_app(
        settings,
        [part(settings, options or GatewayOptions.from_env()), health_part],
        accounts=accounts,
        db_pool_max=2,
    )
