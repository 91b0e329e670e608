"""The gateway's routes, to mount beside the API, and the standalone app `oee gateway` serves."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route, WebSocketRoute

from services.config import Settings
from services.gateway.endpoints import gateway_stats, health, multiplexed, order_stream
from services.gateway.gateway import lifespan
from services.gateway.options import GatewayOptions

__all__ = ["create_app", "lifespan", "routes"]


def routes() -> list[BaseRoute]:
    """`/ws/orders/{orderId}`, `/ws` and `/gateway/stats`; they need `lifespan` entered on the same app."""
    return [
        WebSocketRoute("/ws/orders/{order_id}", order_stream),
        WebSocketRoute("/ws", multiplexed),
        Route("/gateway/stats", gateway_stats, methods=["GET"]),
    ]


def create_app(settings: Settings, options: GatewayOptions | None = None) -> Starlette:
    """The standalone gateway: the WebSocket routes, `/health` and `/gateway/stats`."""
    return Starlette(
        routes=[*routes(), Route("/health", health, methods=["GET"])],
        lifespan=lifespan(settings, options or GatewayOptions.from_env()),
    )
