"""`oee gateway`: the WebSocket gateway alone under uvicorn, for scaling it apart from the API.

Same uvicorn configuration as the API (`services.serving`: bounded protocols, `HTTP_*` limits, client
messages of `GATEWAY_MAX_MESSAGE_BYTES` at most) plus a larger accept backlog, since thousands of clients
may reconnect at once after a restart.
"""

from __future__ import annotations

import gc

import uvicorn

from services import logs
from services.accounts.options import AccountsOptions
from services.config import Settings
from services.gateway.app import create_app
from services.gateway.options import GatewayOptions
from services.serving.limits import HttpLimits
from services.serving.server import uvicorn_config


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
    logs.setup(settings.log_level, settings.log_format, "oee.gateway")
    tune_gc()
    server(settings, options).run()


def tune_gc() -> None:
    """Make CPython's cyclic garbage collector stop the event loop rarely.

    Each connection keeps ~150 tracked objects (uvicorn's protocol, the ASGI coroutine stack, ours), so at
    5,000 connections a full collection walks ~800,000 objects. With the default thresholds the objects of
    short-lived subscriptions get promoted to the old generation and full collections follow every second
    or so under load, each stopping the loop for 0.5-1.5 s (measured: 12 of them, ~9 s in all, during a
    20 s fan-out run). Freezing what start-up created (modules, classes: it lives forever) and collecting
    the young generation every 50,000 allocations instead of 700 lets most objects die by reference count
    before a collection sees them; full collections become rare (none in the same run).
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
