"""Run the ingress under uvicorn programmatically: uvloop, httptools, no access log (`oee api` runs it)."""

from __future__ import annotations

from collections.abc import Sequence

import uvicorn
from starlette.routing import BaseRoute

from services import logs
from services.config import Settings
from services.ingress.app import Lifespan, create_app
from services.ingress.options import IngressOptions


def server(
    settings: Settings,
    options: IngressOptions | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    extra_lifespans: Sequence[Lifespan] = (),
) -> uvicorn.Server:
    """A configured uvicorn server for the ingress app (not started)."""
    app = create_app(settings, options=options, extra_routes=extra_routes, extra_lifespans=extra_lifespans)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        lifespan="on",
        access_log=False,
        log_config=None,  # `services.logs` already configured the root logger
        log_level=settings.log_level.lower(),
        server_header=False,
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
