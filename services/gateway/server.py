"""`oee gateway`: the WebSocket gateway alone under uvicorn, for scaling it apart from the API.

Same uvicorn configuration as the API (`services.serving`: bounded protocols, `HTTP_*` limits, client
messages of `GATEWAY_MAX_MESSAGE_BYTES` at most) plus a larger accept backlog, since thousands of clients
may reconnect at once after a restart.
"""

from __future__ import annotations

import uvicorn

from services.accounts.options import AccountsOptions
from services.config import Settings
from services.gateway.app import create_app
from services.gateway.options import GatewayOptions
from services.serving.limits import HttpLimits
from services.serving.server import serve_until_stopped, uvicorn_config


def server(
    settings: Settings, options: GatewayOptions | None = None, limits: HttpLimits | None = None
) -> uvicorn.Server:
    options = options or GatewayOptions.from_env()
    accounts = AccountsOptions.from_env()
    accounts.check_exposure("GATEWAY_HOST", options.host)
    config = uvicorn_config(
        create_app(settings, options, accounts),
        host=options.host,
        port=options.port,
        log_level=settings.log_level,
        limits=limits or HttpLimits.from_env(),
        ws_max_size=options.max_message_bytes,  # clients only send small subscribe/ping messages
        ws_per_message_deflate=options.compression,
        backlog=4096,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


def run(settings: Settings, options: GatewayOptions | None = None) -> None:
    """Serve until SIGINT/SIGTERM."""
    serve_until_stopped(settings, "oee.gateway", lambda: server(settings, options))
