"""Run the API under uvicorn, configured as every process that serves HTTP is (`services.serving`: uvloop,
httptools, bounded protocols, the `HTTP_*` limits, WebSocket messages capped like the gateway's).

Like Redis's protected mode, the API refuses to start with `AUTH=off` on an address other than loopback:
without keys anyone who reaches the port could trade and read every order.
"""

from __future__ import annotations

import uvicorn

from services.accounts.options import AccountsOptions
from services.api.app import create_app
from services.config import Settings
from services.gateway.options import GatewayOptions
from services.serving.limits import HttpLimits
from services.serving.server import serve_until_stopped, uvicorn_config


def server(settings: Settings, accounts: AccountsOptions | None = None) -> uvicorn.Server:
    """A configured uvicorn server for the API (not started); raises `ConfigError` before binding anything."""
    accounts = accounts or AccountsOptions.from_env()
    accounts.check_exposure("HOST", settings.host)
    config = uvicorn_config(
        create_app(settings, accounts=accounts),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        limits=HttpLimits.from_env(),
        # The API serves the gateway's WebSockets too (`/ws`, `/ws/orders/{id}`): the same message bound.
        ws_max_size=GatewayOptions.from_env().max_message_bytes,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; the lifespans flush the producer and close the pools on the way out."""
    serve_until_stopped(settings, "oee.api", lambda: server(settings))
