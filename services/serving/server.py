"""One uvicorn configuration, and one way to run it, for every process that serves HTTP and WebSockets
(`oee api`, `oee gateway`).

uvloop, httptools and the sans-I/O websockets protocol (each bounded, `services.serving.protocols`), no
access log, no Server header; WebSocket messages capped at `ws_max_size` (uvicorn closes 1009 past it).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from services import logs
from services.serving.limits import HttpLimits
from services.serving.protocols import protocols

if TYPE_CHECKING:
    from services.config import Settings

__all__ = ["QuietDisconnects", "uvicorn_config"]


class QuietDisconnects:
    """A client that left while its request body was read (or was cut off by the request timeout) is not
    an error of ours: nothing can be answered, and nothing is logged with a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            if scope["type"] != "http":
                raise


def uvicorn_config(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    log_level: str,
    limits: HttpLimits,
    ws_max_size: int,
    **overrides: Any,
) -> uvicorn.Config:
    """The server's configuration; `overrides` are further `uvicorn.Config` arguments (backlog, ...)."""
    http, ws = protocols(limits)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": http,
        "ws": ws,
        "ws_max_size": ws_max_size,
        "ws_per_message_deflate": False,
        "lifespan": "on",
        "access_log": False,
        "log_config": None,  # `services.logs` already configured the root logger
        "log_level": log_level.lower(),
        "server_header": False,
        **overrides,
    }
    return uvicorn.Config(QuietDisconnects(app), **options)


def serve_until_stopped(settings: Settings, service: str, server: Callable[[], uvicorn.Server]) -> None:
    """Log as `service`, build the server (a configuration error stops here, before anything binds), keep the
    garbage collector off the event loop's back, and serve until SIGINT/SIGTERM."""
    logs.setup(settings.log_level, settings.log_format, service)
    configured = server()
    tune_gc()  # both serve WebSockets: thousands of long-lived connections
    configured.run()


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
