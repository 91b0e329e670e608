"""Run the ingress under uvicorn programmatically (`oee api` runs it), configured as every process that
serves HTTP is (`services.serving`: uvloop, httptools, bounded protocols, the `HTTP_*` limits)."""

from __future__ import annotations

from collections.abc import Sequence

import uvicorn
from starlette.routing import BaseRoute

from services import logs
from services.config import Settings
from services.gateway.options import GatewayOptions
from services.ingress.app import Lifespan, create_app
from services.ingress.options import IngressOptions
from services.serving.limits import HttpLimits
from services.serving.server import uvicorn_config


def server(
    settings: Settings,
    options: IngressOptions | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    extra_lifespans: Sequence[Lifespan] = (),
) -> uvicorn.Server:
    """A configured uvicorn server for the ingress app (not started)."""
    app = create_app(settings, options=options, extra_routes=extra_routes, extra_lifespans=extra_lifespans)
    config = uvicorn_config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        limits=HttpLimits.from_env(),
        # The API serves the gateway's WebSockets too (`/ws`, `/ws/orders/{id}`): the same message bound.
        ws_max_size=GatewayOptions.from_env().max_message_bytes,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def run(
    settings: Settings,
    options: IngressOptions | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    extra_lifespans: Sequence[Lifespan] = (),
) -> None:
    """Serve until SIGINT/SIGTERM; the lifespan flushes the producer on the way out."""
    logs.setup(settings.log_level, settings.log_format, "oee.ingress")
    server(settings, options, extra_routes, extra_lifespans).run()
