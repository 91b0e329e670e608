"""One uvicorn configuration for every process that serves HTTP and WebSockets (`oee api`, `oee gateway`).

uvloop, httptools and the sans-I/O websockets protocol (each bounded, `services.serving.protocols`), no
access log, no Server header; WebSocket messages capped at `ws_max_size` (uvicorn closes 1009 past it).
"""

from __future__ import annotations

from typing import Any

import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from services.serving.limits import HttpLimits
from services.serving.protocols import protocols

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
